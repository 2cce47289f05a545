"""Small matching helpers shared by the EXO and gateway decisions (pure, memoised)."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

__all__ = [
    "cert_name_matches",
    "domain_of",
    "domain_pattern_matches",
    "ip_in_ranges",
    "is_subdomain",
    "patterns_match",
    "words_match",
]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def domain_of(address: str) -> str:
    """The lower-case domain of an address; ``""`` for the null sender or no ``@``."""
    return address.rpartition("@")[2].lower() if "@" in address else ""


def is_subdomain(domain: str, parent: str) -> bool:
    """True when ``domain`` is ``parent`` or below it (the rule predicates' semantics)."""
    domain, parent = domain.lower(), parent.lower()
    return domain == parent or domain.endswith("." + parent)


def domain_pattern_matches(pattern: str, domain: str) -> bool:
    """Connector domain patterns: ``*`` (any), ``*.x`` (below x), or an exact domain."""
    pattern, domain = pattern.lower(), domain.lower()
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return domain.endswith(pattern[1:])
    return domain == pattern


def cert_name_matches(pattern: str, name: str) -> bool:
    """``TlsSenderCertificateName`` matching: exact, or ``*.d`` with exactly one more label.

    The one-label reading of the wildcard is the strict choice of section 2.1 (E1).
    """
    pattern, name = pattern.lower(), name.lower()
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and "*" not in head and rest == pattern[2:]
    return pattern == name


@lru_cache(maxsize=1024)
def _networks(spec: str) -> tuple[tuple[int, int], ...]:
    """Integer ``(first, last)`` intervals of one range spec: single, CIDR or ``a-b``."""
    spec = spec.strip()
    if "-" in spec:
        first, _, last = spec.partition("-")
        return ((int(ipaddress.ip_address(first.strip())),
                 int(ipaddress.ip_address(last.strip()))),)
    net: _Network = ipaddress.ip_network(spec, strict=False)
    return ((int(net.network_address), int(net.broadcast_address)),)


@lru_cache(maxsize=4096)
def ip_in_ranges(ip: str | None, ranges: tuple[str, ...]) -> bool:
    """True when ``ip`` lies in one of ``ranges`` (single address, CIDR or ``a-b``)."""
    if not ip or not ranges:
        return False
    try:
        value = int(ipaddress.ip_address(ip))
    except ValueError:
        return False
    for spec in ranges:
        try:
            intervals = _networks(spec)
        except ValueError:
            continue
        if any(first <= value <= last for first, last in intervals):
            return True
    return False


@lru_cache(maxsize=1024)
def _compiled_words(words: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(w) for w in words if w)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def words_match(value: str, words: tuple[str, ...]) -> bool:
    """Case-insensitive match of any word or phrase, delimited by non-word characters."""
    return bool(words) and _compiled_words(words).search(value) is not None


@lru_cache(maxsize=1024)
def _compiled_patterns(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


def patterns_match(value: str, patterns: tuple[str, ...]) -> bool:
    """Unanchored, case-insensitive search of any pattern (.NET ``IsMatch`` semantics)."""
    return any(p.search(value) for p in _compiled_patterns(patterns))
