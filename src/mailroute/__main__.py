"""``python -m mailroute`` runs the command line."""

from mailroute.cli import entry_point

entry_point()
