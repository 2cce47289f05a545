"""The ``mailroute`` subcommands, one module each (see mailroute.cli.COMMANDS)."""
