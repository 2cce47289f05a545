"""The DNS names a DKIM or ARC signature carries: its domain (``d=``) and selector (``s=``)."""

from __future__ import annotations

import re

__all__ = ["domain_ok", "selector_ok"]

_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def domain_ok(domain: str) -> bool:
    """True for a dotted name of two or more labels (letters, digits, ``-``, ``_``)."""
    labels = domain.split(".")
    return len(domain) <= 253 and len(labels) >= 2 and all(_LABEL.fullmatch(p) for p in labels)


def selector_ok(selector: str) -> bool:
    """True for one or more dot-separated labels (RFC 6376 3.1, ``selector``)."""
    return 0 < len(selector) <= 253 and all(_LABEL.fullmatch(p) for p in selector.split("."))
