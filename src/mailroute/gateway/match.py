"""Who is connecting: certificate names and address ranges (the gateway's G1, EXO's E1).

Pure and memoised; the routing model's EXO decision and the gateway decision share them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ipaddress

__all__ = ["cert_name_matches", "check_ranges", "ip_in_ranges"]


@lru_cache(maxsize=1024)
def cert_name_matches(pattern: str, name: str) -> bool:
    """``TlsSenderCertificateName`` matching: exact, or ``*.d`` with exactly one more label.

    The one-label reading of the wildcard is the strict choice of step E1 (docs/routing/steps.md,
    docs/routing/assumptions.md).
    """
    pattern, name = pattern.lower(), name.lower()
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and "*" not in head and rest == pattern[2:]
    return pattern == name


@lru_cache(maxsize=1024)
def _networks(spec: str) -> tuple[tuple[int, int], ...]:
    """Integer ``(first, last)`` intervals of one range spec: single, CIDR or ``a-b``."""
    import ipaddress  # loaded by the first policy or message with an address range

    spec = spec.strip()
    if "-" in spec:
        first, _, last = spec.partition("-")
        return ((int(ipaddress.ip_address(first.strip())),
                 int(ipaddress.ip_address(last.strip()))),)
    net: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.ip_network(spec, strict=False)
    return ((int(net.network_address), int(net.broadcast_address)),)


@lru_cache(maxsize=4096)
def ip_in_ranges(ip: str | None, ranges: tuple[str, ...]) -> bool:
    """True when ``ip`` lies in one of ``ranges`` (single address, CIDR or ``a-b``)."""
    if not ip or not ranges:
        return False
    import ipaddress

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


def check_ranges(ranges: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the first range that is not an address, CIDR or ``a-b``."""
    for spec in ranges:
        try:
            _networks(spec)
        except ValueError:
            raise ValueError(f"not an IP address, network or range: {spec!r}") from None
