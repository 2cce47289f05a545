"""The pieces of the ``disclaimer`` filter, one job per module.

- :mod:`~mailroute.disclaimer.template`: templates with ``{{name}}`` and Exchange-style
  ``%%Name%%`` tokens, rendered with escaped, control-free values; the template fingerprint.
- :mod:`~mailroute.disclaimer.directory`: the sender directory (CSV or TOML keyed by address).
- :mod:`~mailroute.disclaimer.htmlscan`: a linear scan of HTML for insertion points.
- :mod:`~mailroute.disclaimer.htmlparse`: the same points found with beautifulsoup4 + html5lib.
- :mod:`~mailroute.disclaimer.locate`: which of the two to trust, within size and depth limits.
- :mod:`~mailroute.disclaimer.textplace`: insertion points in plain text (bottom, top, reply).
- :mod:`~mailroute.disclaimer.select`: which MIME entities get a disclaimer, which are protected.
- :mod:`~mailroute.disclaimer.insert`: edits one message: decode, insert, re-encode.

The filter itself (options, policy keys) lives in :mod:`mailroute.filters.disclaimer`.
"""
