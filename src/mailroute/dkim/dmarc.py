"""DMARC (RFC 7489): the policy record, identifier alignment and the result.

mailroute's own evaluation on top of its DKIM and SPF results; organisational domains come
from the public suffix list bundled with ``publicsuffixlist`` (no network fetch).
"""

from __future__ import annotations

import email.utils
import functools
import random
from collections.abc import Callable, Iterable, Sequence

from mailroute.dkim.digits import decimal
from mailroute.dkim.keys import parse_tags
from mailroute.dkim.spf import SpfResult
from mailroute.dkim.verify import SignatureResult
from mailroute.errors import MailrouteError
from mailroute.mime.message import Message
from mailroute.records import record
from mailroute.results import AuthResult, AuthStatus

__all__ = ["DmarcPolicy", "DmarcResult", "evaluate", "from_domain", "organizational_domain"]

Lookup = Callable[[str], Sequence[str]]


@functools.cache
def _psl() -> object:
    from publicsuffixlist import PublicSuffixList  # the dkim extra

    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """The registrable domain of ``domain`` (``a.b.example.co.uk`` -> ``example.co.uk``)."""
    domain = domain.lower().rstrip(".")
    found = _psl().privatesuffix(domain)  # type: ignore[attr-defined]
    return found if isinstance(found, str) else domain


@record(frozen=True)
class DmarcPolicy:
    """The tags of a DMARC record that decide: ``p``, ``sp``, ``adkim``, ``aspf``, ``pct``."""

    policy: str
    subdomain_policy: str
    strict_dkim: bool
    strict_spf: bool
    percent: int


@record(frozen=True)
class DmarcResult:
    """``pass``, ``fail``, ``none``, ``temperror`` or ``permerror``, and the policy in force.

    ``aligned`` says whether an aligned DKIM or SPF pass exists (relaxed alignment when the
    domain publishes no policy); ``dns_trouble`` whether a DKIM or SPF check hit a DNS
    failure (so a missing pass may be temporary).
    """

    result: str
    domain: str
    policy: str = "none"
    reason: str = ""
    aligned: bool = False
    dns_trouble: bool = False

    @property
    def enforced(self) -> bool:
        """True when the message failed and the domain asks for quarantine or reject."""
        return self.result == "fail" and self.policy in ("quarantine", "reject")

    def auth_result(self) -> AuthResult:
        """The RFC 8601 ``dmarc`` entry."""
        props = (("header.from", self.domain),) if self.domain else ()
        if self.result == "fail":
            props = (*props, ("policy.dmarc", self.policy))
        return AuthResult("dmarc", AuthStatus(self.result), self.reason, props)


def from_domain(message: Message) -> str | None:
    """The domain of the one address in the one From field, or ``None``."""
    fields = message.headers.get_all("From")
    if len(fields) != 1:
        return None
    addresses = email.utils.getaddresses([fields[0].value])
    if len(addresses) != 1 or "@" not in addresses[0][1]:
        return None
    domain = addresses[0][1].rpartition("@")[2].lower().rstrip(".")
    return domain or None


def _policy(texts: Iterable[str]) -> DmarcPolicy | None:
    records = [t for t in texts if t.replace(" ", "").startswith("v=DMARC1")]
    if len(records) != 1:
        return None
    try:
        tags = parse_tags(records[0])
    except ValueError:
        return None
    policy = tags.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        return None
    sub = tags.get("sp", policy).lower()
    pct = decimal(tags.get("pct", "100"), 3)
    return DmarcPolicy(policy, sub if sub in ("none", "quarantine", "reject") else policy,
                       tags.get("adkim", "r").lower() == "s",
                       tags.get("aspf", "r").lower() == "s",
                       pct if pct is not None and pct <= 100 else 100)


_WEAKER = {"reject": "quarantine", "quarantine": "none"}


def _aligned(domain: str, other: str, strict: bool) -> bool:
    domain, other = domain.lower().rstrip("."), other.lower().rstrip(".")
    if strict:
        return domain == other
    return organizational_domain(domain) == organizational_domain(other)


def evaluate(message: Message, lookup: Lookup | None, dkim: Iterable[SignatureResult],
             spf: SpfResult | None, *, sample: Callable[[], float] = random.random
             ) -> DmarcResult:
    """The DMARC result of ``message`` given its DKIM and SPF results.

    ``pct`` below 100 (RFC 7489 section 6.6.4): a failing message is held to the policy
    only when ``sample()`` (uniform in [0, 1)) falls below ``pct``/100; otherwise the next
    weaker policy applies (``reject`` -> ``quarantine`` -> ``none``). The draw is random,
    not derived from the message, so a sender cannot pick a message that escapes it.
    """
    dkim = list(dkim)
    author = from_domain(message)
    if author is None:
        return DmarcResult("permerror", "", reason="not exactly one From address")
    trouble = any(s.status is AuthStatus.TEMPERROR for s in dkim) or (
        spf is not None and spf.result == "temperror")
    if lookup is None:
        return DmarcResult("temperror", author, reason="no DNS resolver configured",
                           dns_trouble=True)
    org = organizational_domain(author)
    try:
        policy = _policy(lookup(f"_dmarc.{author}"))
        inherited = False
        if policy is None and org != author:
            policy = _policy(lookup(f"_dmarc.{org}"))
            inherited = True
    except (MailrouteError, OSError, TimeoutError):
        return DmarcResult("temperror", author, reason="policy lookup failed",
                           aligned=_any_aligned(author, dkim, spf, None), dns_trouble=True)
    aligned = _any_aligned(author, dkim, spf, policy)
    if policy is None:
        return DmarcResult("none", author, reason="no policy", aligned=aligned,
                           dns_trouble=trouble)
    in_force = policy.subdomain_policy if inherited else policy.policy
    if aligned:
        return DmarcResult("pass", author, in_force, "aligned pass", aligned=True)
    reason = "no aligned pass"
    if policy.percent < 100 and in_force != "none" and sample() * 100 >= policy.percent:
        in_force = _WEAKER[in_force]
        reason = f"no aligned pass (pct={policy.percent}: not sampled)"
    return DmarcResult("fail", author, in_force, reason, dns_trouble=trouble)


def _any_aligned(author: str, dkim: list[SignatureResult], spf: SpfResult | None,
                 policy: DmarcPolicy | None) -> bool:
    strict_dkim = policy is not None and policy.strict_dkim
    strict_spf = policy is not None and policy.strict_spf
    if any(s.valid and _aligned(s.domain, author, strict_dkim) for s in dkim):
        return True
    return spf is not None and spf.result == "pass" and _aligned(spf.domain, author, strict_spf)
