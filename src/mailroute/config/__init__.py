"""Configuration primitives: typed, checked access to option tables.

The policy loader itself (TOML to a pipeline) is :mod:`mailroute.policy`, at the top of the
layers, because it knows every filter.
"""

from mailroute.config.options import Options

__all__ = ["Options"]
