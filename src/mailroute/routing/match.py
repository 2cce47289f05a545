"""Small matching helpers shared by the EXO and gateway decisions (pure, memoised)."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from mailroute.gateway.flow import domain_of, is_subdomain
from mailroute.gateway.match import cert_name_matches, ip_in_ranges

__all__ = [
    "cert_name_matches",
    "domain_of",
    "domain_pattern_matches",
    "ip_in_ranges",
    "is_placeholder_address",
    "is_subdomain",
    "patterns_match",
    "words_match",
]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# RFC 2606 / RFC 6761: names reserved for documentation and tests; mail to them goes nowhere.
_RESERVED_TLDS = frozenset({"example", "invalid", "test", "localhost"})
_RESERVED_DOMAINS = ("example.com", "example.net", "example.org")


def is_placeholder_address(address: str) -> bool:
    """True for an empty address or one in a domain reserved for examples (RFC 2606)."""
    domain = domain_of(address).lower().rstrip(".")
    if not domain:
        return True
    return domain.rpartition(".")[2] in _RESERVED_TLDS or any(
        is_subdomain(domain, d) for d in _RESERVED_DOMAINS)


def domain_pattern_matches(pattern: str, domain: str, *, apex: bool = False) -> bool:
    """Connector domain patterns: ``*`` (any), ``*.x`` (below x; with ``apex`` x itself too),
    or an exact domain.

    The cmdlet reference gives ``*.contoso.com`` "a domain and all subdomains" for an inbound
    connector's SenderDomains (``apex``), and "all subdomains" for an outbound connector's
    RecipientDomains.
    """
    pattern, domain = pattern.lower(), domain.lower()
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return domain.endswith(pattern[1:]) or (apex and domain == pattern[2:])
    return domain == pattern


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
