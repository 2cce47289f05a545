"""Filters: each a pure transform of a MailItem (see mailroute.pipeline.Filter)."""
