"""The ``mailroute`` subcommands, one module each (see mailroute.cli.COMMAND_MODULES)."""
