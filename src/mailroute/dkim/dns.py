"""TXT lookups for DKIM, SPF and DMARC: from a file (tests, the CLI) or DNS with timeouts.

A lookup is a callable ``name -> list of TXT strings`` (:data:`mailroute.item.TxtResolver`):
an empty list means "no such record" (NXDOMAIN or no TXT); a timeout or server failure
raises :class:`~mailroute.errors.TemporaryError`, which verifiers turn into ``temperror``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from pathlib import Path

from mailroute.dkim.digits import decimal
from mailroute.errors import ConfigError, TemporaryError

__all__ = ["DnsFile", "dnspython_lookup", "load_dns_file", "parse_dns_file"]


class DnsFile:
    """Records from a ``--dns-file``: ``NAME TXT-VALUE`` per line (CLI.md).

    A value of ``TIMEOUT`` makes the lookup of that name time out (for tests and drills).
    Address and MX records, for SPF's ``a``, ``mx`` and ``exists``, are written as a zone
    file writes them: ``NAME A 192.0.2.1``, ``NAME AAAA 2001:db8::1``,
    ``NAME MX 10 mx.example.net``; every other value is a TXT record.
    """

    def __init__(self, records: Mapping[str, Sequence[str]]) -> None:
        self._records = {name.lower().rstrip("."): tuple(values)
                         for name, values in records.items()}

    def _values(self, name: str) -> tuple[str, ...]:
        values = self._records.get(name.lower().rstrip("."), ())
        if "TIMEOUT" in values:
            raise TemporaryError("DNS lookup timed out")
        return values

    def __call__(self, name: str) -> list[str]:
        """The TXT values of ``name``.

        Raises:
            TemporaryError: the record is ``TIMEOUT``.
        """
        return [v for v in self._values(name) if _typed(v) is None]

    def addresses(self, name: str) -> list[str]:
        """The A and AAAA addresses of ``name``.

        Raises:
            TemporaryError: the record is ``TIMEOUT``.
        """
        found = (_typed(v) for v in self._values(name))
        return [data for kind, data in filter(None, found) if kind in ("A", "AAAA")]

    def mx(self, name: str) -> list[str]:
        """The MX host names of ``name``, most preferred first.

        Raises:
            TemporaryError: the record is ``TIMEOUT``.
        """
        found = (_typed(v) for v in self._values(name))
        exchanges = [data.split() for kind, data in filter(None, found) if kind == "MX"]
        return [host.rstrip(".") for _, host in sorted(exchanges, key=lambda e: int(e[0]))]


def _typed(value: str) -> tuple[str, str] | None:
    """``(type, data)`` for an A, AAAA or MX record line value; ``None`` for TXT."""
    kind, _, data = value.partition(" ")
    data = data.strip()
    if kind == "MX":
        preference, _, host = data.partition(" ")
        number = decimal(preference, 5)  # RFC 1035 3.3.9: 16 bits
        return ("MX", f"{number} {host.strip()}") if (
            number is not None and number <= 65535 and host.strip()
            and " " not in host.strip()) else None
    if kind not in ("A", "AAAA"):
        return None
    try:
        address = ipaddress.ip_address(data)
    except ValueError:
        return None
    return (kind, str(address)) if address.version == (4 if kind == "A" else 6) else None


def parse_dns_file(text: str, *, source: str = "<dns-file>") -> DnsFile:
    """Parse ``NAME VALUE`` lines (blank lines and ``#`` comments are skipped).

    Raises:
        ConfigError: a line without a value.
    """
    records: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        if not value.strip():
            raise ConfigError("line without a TXT value", source=f"{source}:{number}")
        records.setdefault(name.lower().rstrip("."), []).append(value.strip())
    return DnsFile(records)


def load_dns_file(path: Path) -> DnsFile:
    """:func:`parse_dns_file` of the file at ``path``.

    Raises:
        ConfigError: unreadable or malformed file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read DNS file: {exc.__class__.__name__}",
                          source=str(path)) from exc
    return parse_dns_file(text, source=str(path))


def dnspython_lookup(timeout: float = 5.0) -> DnsLookup:
    """A TXT lookup through the system's resolvers (dnspython), ``timeout`` seconds in all."""
    return DnsLookup(timeout)


class DnsLookup:
    """TXT lookups with dnspython; NXDOMAIN and NODATA give ``[]``, the rest is temporary.

    Args:
        timeout: seconds for one lookup, retries included.
        nameservers: servers to ask instead of the system's (``/etc/resolv.conf``).
        port: their port.
    """

    def __init__(self, timeout: float, *, nameservers: Sequence[str] = (),
                 port: int = 53) -> None:
        import dns.resolver  # the dkim extra

        self._resolver = dns.resolver.Resolver(configure=not nameservers)
        if nameservers:
            self._resolver.nameservers = list(nameservers)
            self._resolver.port = port
        self._timeout = timeout

    def _resolve(self, name: str, rdtype: str) -> list[object]:
        import dns.exception
        import dns.resolver

        try:
            answer = self._resolver.resolve(name, rdtype, lifetime=self._timeout, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise TemporaryError(f"DNS lookup failed: {exc.__class__.__name__}") from exc
        return list(answer)

    def __call__(self, name: str) -> list[str]:
        """The TXT strings of ``name``, each record's character-strings joined.

        Raises:
            TemporaryError: timeout, SERVFAIL or no answering server.
        """
        return [b"".join(r.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
                for r in self._resolve(name, "TXT")]

    def addresses(self, name: str) -> list[str]:
        """The IPv4 and IPv6 addresses of ``name`` (for SPF ``a`` and ``exists``)."""
        return [r.to_text() for rdtype in ("A", "AAAA")  # type: ignore[attr-defined]
                for r in self._resolve(name, rdtype)]

    def mx(self, name: str) -> list[str]:
        """The MX host names of ``name``, most preferred first (for SPF ``mx``)."""
        records = sorted(self._resolve(name, "MX"),
                         key=lambda r: r.preference)  # type: ignore[attr-defined]
        return [r.exchange.to_text().rstrip(".") for r in records]  # type: ignore[attr-defined]
