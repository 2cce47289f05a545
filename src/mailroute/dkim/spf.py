"""SPF (RFC 7208) on injected DNS lookups.

Mailroute's own evaluator rather than pyspf: pyspf does its own DNS (no injectable,
timeout-bounded lookup) and has not been released since 2020. Supported: ``all``,
``include``, ``a``, ``mx``, ``ip4``, ``ip6``, ``exists``, ``redirect``, the lookup limit of
10 and the void-lookup limit of 2, and the macros ``%{s} %{l} %{o} %{d} %{i} %{h}`` without
transformers (a record using transformers is a ``permerror``); ``ptr`` never matches (RFC 7208
5.5: "SHOULD NOT be used"), but counts as a lookup.

Lookups are a :class:`SpfLookups`: ``txt`` is the gateway's TXT resolver; ``addresses``
and ``mx`` are needed only for the ``a`` and ``mx`` mechanisms (without them those are
``temperror``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence

from mailroute.errors import MailrouteError
from mailroute.records import record
from mailroute.results import AuthResult, AuthStatus

__all__ = ["SpfLookups", "SpfResult", "check_host", "spf_auth_result"]

Lookup = Callable[[str], Sequence[str]]
_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_MACRO = re.compile(r"%\{([slodih])\}|%%|%_|%-")
MAX_LOOKUPS = 10
MAX_VOID = 2
_HELO_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]*\.?")


@record(frozen=True)
class SpfLookups:
    """The DNS lookups SPF needs: TXT always, A/AAAA and MX for ``a`` and ``mx``."""

    txt: Lookup
    addresses: Lookup | None = None
    mx: Lookup | None = None


@record(frozen=True)
class SpfResult:
    """``pass``, ``fail``, ``softfail``, ``neutral``, ``none``, ``temperror``, ``permerror``."""

    result: str
    domain: str
    reason: str = ""


class _Stop(Exception):
    def __init__(self, result: str, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


class _Evaluation:
    def __init__(self, lookups: SpfLookups, ip: str, sender: str, helo: str) -> None:
        self.lookups = lookups
        self.ip = ipaddress.ip_address(ip)
        self.sender = sender
        self.helo = helo
        self.count = 0
        self.void = 0

    def dns(self, lookup: Lookup | None, name: str) -> list[str]:
        if lookup is None:
            raise _Stop("temperror", "no resolver for a or mx")
        try:
            found = list(lookup(name))
        except MailrouteError as error:
            raise _Stop("temperror" if error.retryable else "permerror", "DNS failure") from error
        except (OSError, TimeoutError) as exc:
            raise _Stop("temperror", "DNS failure") from exc
        if not found:
            self.void += 1
            if self.void > MAX_VOID:
                raise _Stop("permerror", "too many void lookups")
        return found

    def counted(self) -> None:
        self.count += 1
        if self.count > MAX_LOOKUPS:
            raise _Stop("permerror", "more than 10 DNS lookups")

    def expand(self, spec: str, domain: str) -> str:
        local, _, sender_domain = self.sender.rpartition("@")

        def one(match: re.Match[str]) -> str:
            literal = {"%%": "%", "%_": " ", "%-": "%20"}.get(match.group(0))
            if literal is not None:
                return literal
            return {"s": self.sender, "l": local or "postmaster", "o": sender_domain,
                    "d": domain, "i": _dotted(self.ip), "h": self.helo}[match.group(1)]

        expanded = _MACRO.sub(one, spec)
        if "%" in expanded:
            raise _Stop("permerror", "unsupported macro")
        return expanded.rstrip(".").lower()

    def record(self, domain: str) -> list[str]:
        texts = [t for t in self.dns(self.lookups.txt, domain)
                 if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]
        if not texts:
            raise _Stop("none", "no SPF record")
        if len(texts) > 1:
            raise _Stop("permerror", "more than one SPF record")
        return texts[0].split()[1:]

    def check(self, domain: str, depth: int = 0) -> str:
        if depth > MAX_LOOKUPS:
            raise _Stop("permerror", "include depth")
        terms = self.record(domain)
        redirect: str | None = None
        for term in terms:
            name, eq, value = term.partition("=")
            if eq and re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", name):
                if name.lower() == "redirect":
                    redirect = value
                continue
            qualifier = "+"
            if term[0] in _QUALIFIERS:
                qualifier, term = term[0], term[1:]
            if self.matches(term, domain, depth):
                return _QUALIFIERS[qualifier]
        if redirect is not None:
            self.counted()
            target = self.expand(redirect, domain)
            try:
                return self.check(target, depth + 1)
            except _Stop as stop:
                if stop.result == "none":
                    raise _Stop("permerror", "redirect to a domain without SPF") from stop
                raise
        return "neutral"

    def matches(self, term: str, domain: str, depth: int) -> bool:
        mechanism, _, argument = term.partition(":")
        mechanism = mechanism.lower()
        cidr4, cidr6 = 32, 128
        if mechanism in ("a", "mx") or mechanism.startswith(("a/", "mx/")):
            mechanism, argument, cidr4, cidr6 = _cidrs(mechanism, argument)
        if mechanism == "all":
            return True
        if mechanism in ("ip4", "ip6"):
            try:
                network = ipaddress.ip_network(argument, strict=False)
            except ValueError as exc:
                raise _Stop("permerror", f"invalid {mechanism}") from exc
            return self.ip.version == network.version and self.ip in network
        if mechanism == "include":
            self.counted()
            try:
                inner = self.check(self.expand(argument, domain), depth + 1)
            except _Stop as stop:
                if stop.result == "none":
                    raise _Stop("permerror", "include of a domain without SPF") from stop
                raise
            return inner == "pass"
        if mechanism == "a":
            self.counted()
            return self.in_hosts([self.expand(argument or domain, domain)], cidr4, cidr6)
        if mechanism == "mx":
            self.counted()
            hosts = self.dns(self.lookups.mx, self.expand(argument or domain, domain))
            if len(hosts) > MAX_LOOKUPS:  # RFC 7208 4.6.4: not the first ten, an error
                raise _Stop("permerror", "more than 10 MX records")
            return self.in_hosts(hosts, cidr4, cidr6)
        if mechanism == "exists":
            self.counted()
            return bool(self.dns(self.lookups.addresses, self.expand(argument, domain)))
        if mechanism == "ptr":
            self.counted()
            return False
        raise _Stop("permerror", "unknown mechanism")

    def in_hosts(self, hosts: list[str], cidr4: int, cidr6: int) -> bool:
        for host in hosts:
            for text in self.dns(self.lookups.addresses, host):
                try:
                    address = ipaddress.ip_address(text)
                except ValueError:
                    continue
                prefix = cidr4 if address.version == 4 else cidr6
                network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
                if self.ip.version == address.version and self.ip in network:
                    return True
        return False


def _cidrs(mechanism: str, argument: str) -> tuple[str, str, int, int]:
    text = f"{mechanism}:{argument}" if argument else mechanism
    match = re.fullmatch(r"(a|mx)(?::([^/]+))?(?:/([0-9]{1,3}))?(?://([0-9]{1,3}))?", text,
                         re.IGNORECASE)
    if match is None:
        raise _Stop("permerror", "invalid a or mx")
    four = int(match.group(3) or 32)
    six = int(match.group(4) or 128)
    if four > 32 or six > 128:
        raise _Stop("permerror", "invalid prefix length")
    return match.group(1).lower(), match.group(2) or "", four, six


def _dotted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if ip.version == 4:
        return str(ip)
    return ".".join(ip.exploded.replace(":", ""))


def check_host(lookups: SpfLookups, ip: str, mail_from: str, helo: str = "") -> SpfResult:
    """The SPF result for a client ``ip`` sending as ``mail_from`` (HELO for the null sender)."""
    if "@" in mail_from:
        sender = mail_from
    else:  # RFC 7208 2.3: only a HELO that is a domain name is checked
        sender = f"postmaster@{helo}" if _HELO_DOMAIN.fullmatch(helo) else ""
    domain = sender.rpartition("@")[2].lower().rstrip(".")
    if not domain:
        return SpfResult("none", "", "no sender domain")
    try:
        evaluation = _Evaluation(lookups, ip, sender, helo)
    except ValueError:
        return SpfResult("none", domain, "no client address")
    try:
        return SpfResult(evaluation.check(domain), domain)
    except _Stop as stop:
        return SpfResult(stop.result, domain, stop.reason)


def spf_auth_result(result: SpfResult, *, helo: bool = False) -> AuthResult:
    """The RFC 8601 ``spf`` entry (``smtp.mailfrom``, or ``smtp.helo`` for the null sender)."""
    props: tuple[tuple[str, str], ...] = ()
    if result.domain and re.fullmatch(r"[a-z0-9._-]+", result.domain):
        props = (("smtp.helo" if helo else "smtp.mailfrom", result.domain),)
    return AuthResult("spf", AuthStatus(result.result), result.reason, props)
