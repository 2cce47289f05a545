"""The ``dkim-sign`` and ``dkim-verify`` filters (docs/dkim.md).

dkim-sign options: ``domain``, ``selector``, ``key`` (PEM; RSA or Ed25519), ``algorithm``
(must match the key when given), ``expire_after`` (seconds, optional x= tag),
``from_domains`` (sign only mail whose From domain is one of these or below; default:
``domain``; ``*`` signs whatever the From). One entry per key: a policy signs with RSA
and Ed25519 by listing both.

dkim-verify options: ``dns_file`` (records instead of DNS), ``dns_timeout`` (5 s),
``max_signatures`` (8), ``max_header_entries`` (64), ``allow_length`` (false), ``spf``,
``dmarc``, ``arc`` (all true), ``accepted_domains`` (the organisation's domains: mail from
the internet whose From claims one of them needs an aligned DKIM or SPF pass),
``on_spoof`` (``reject``: 550 5.7.1, ``quarantine``, ``flag`` or ``off``) and
``spoof_requires_policy`` (refuse only when the domain's DMARC policy is quarantine or
reject; default false: the domain is ours and its mail must pass).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import ClassVar

from mailroute.config.options import Options
from mailroute.dkim import arc as arc_engine
from mailroute.dkim import dmarc, spf
from mailroute.dkim.dns import DnsLookup, load_dns_file
from mailroute.dkim.keys import ALGORITHMS, SigningKey, load_signing_key
from mailroute.dkim.names import domain_ok, selector_ok
from mailroute.dkim.sign import sign_message
from mailroute.dkim.verify import TxtLookup, VerifyOptions, verify_message
from mailroute.gateway.spoof import (
    SPOOF_REPLY,
    SpoofAction,
    SpoofFacts,
    SpoofPolicy,
    decide_spoof,
)
from mailroute.item import Context, MailItem
from mailroute.records import record
from mailroute.results import Action, AuthResult, AuthStatus, Outcome

__all__ = ["SKIPPED_NO_FROM", "DkimSignFilter", "DkimVerifyFilter", "build_sign", "build_verify",
           "lookup_option", "signing_key_option", "signing_names"]

log = logging.getLogger("mailroute.dkim")
DEFAULT_VERIFY = VerifyOptions()


def signing_key_option(options: Options) -> SigningKey:
    """``key`` (and ``algorithm``, checked against the key) from ``options``."""
    key = load_signing_key(options.path("key"))
    algorithm = options.optional_string("algorithm")
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise options.error("algorithm", f"must be one of {', '.join(ALGORITHMS)}")
    if algorithm is not None and algorithm != key.algorithm:
        raise options.error("algorithm", f"the key signs {key.algorithm}")
    return key


#: The ``dkim-sign`` annotation of a message without exactly one From field.
SKIPPED_NO_FROM = "skipped-no-from"


@record(frozen=True, kw_only=True)
class DkimSignFilter:
    """Adds one DKIM-Signature at the top of mail from ``from_domains``; nothing else changes."""

    key: SigningKey
    domain: str
    selector: str
    from_domains: tuple[str, ...]
    expire_after: int | None = None
    name: str = "dkim-sign"

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        """Sign when the From domain is one of ours (``*``: any message with one From
        field), else pass the item on unchanged."""
        if item.message.headers.count("From") != 1:
            return item.annotate("dkim-sign", SKIPPED_NO_FROM)
        if "*" not in self.from_domains:
            author = dmarc.from_domain(item.message)
            if author is None or not any(author == d or author.endswith("." + d)
                                         for d in self.from_domains):
                return item.annotate("dkim-sign", "skipped-foreign-from")
        signed = sign_message(item.message, self.key, domain=self.domain,
                              selector=self.selector, timestamp=int(ctx.clock()),
                              expire_after=self.expire_after)
        return item.evolve(message=signed).annotate("dkim-sign", f"signed {self.selector}")


def signing_names(options: Options) -> tuple[str, str]:
    """``domain`` (lower case, no final dot) and ``selector``: DNS names, so that neither
    can carry a ``;`` into the signature's tag list."""
    domain = options.string("domain").lower().rstrip(".")
    if not domain_ok(domain):
        raise options.error("domain", "must be a domain name (two or more labels of letters, "
                            "digits, '-' and '_')")
    selector = options.string("selector")
    if not selector_ok(selector):
        raise options.error("selector", "must be one or more DNS labels separated by dots")
    return domain, selector


def build_sign(options: Options) -> DkimSignFilter:
    """Build ``dkim-sign`` from its policy options."""
    domain, selector = signing_names(options)
    key = signing_key_option(options)
    expire = options.integer("expire_after", 0, minimum=0) or None
    from_domains = tuple(d.lower() for d in options.string_list("from_domains", (domain,)))
    return DkimSignFilter(key=key, domain=domain, selector=selector,
                          from_domains=from_domains, expire_after=expire)


def lookup_option(options: Options) -> TxtLookup:
    """``dns_file`` (records from a file) or DNS with ``dns_timeout`` seconds."""
    dns_file = options.optional_path("dns_file")
    timeout = options.integer("dns_timeout", 5, minimum=1)
    if dns_file is not None:
        return load_dns_file(dns_file)
    return DnsLookup(float(timeout))


@record(frozen=True, kw_only=True)
class DkimVerifyFilter:
    """Judges every DKIM signature, the ARC chain, SPF and DMARC; refuses own-domain spoofs."""

    lookup: TxtLookup
    options: VerifyOptions = DEFAULT_VERIFY
    check_spf: bool = True
    check_dmarc: bool = True
    check_arc: bool = True
    accepted_domains: tuple[str, ...] = ()
    on_spoof: str = "reject"
    spoof_requires_policy: bool = False
    #: uniform in [0, 1): draws which failing messages a DMARC ``pct`` below 100 selects
    sample: Callable[[], float] = random.random
    name: str = "dkim-verify"
    #: asks DNS (unless the records come from a file): an adapter keeps it off its event loop
    blocking: ClassVar[bool] = True

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Add the results; stop with the spoof outcome when the From domain is forged."""
        lookup = ctx.resolver or self.lookup
        signatures = verify_message(item.message, lookup, now=ctx.clock(),
                                    options=self.options)
        results: list[AuthResult] = [s.auth_result() for s in signatures] or [
            AuthResult("dkim", AuthStatus.NONE)]
        if self.check_arc:
            results.append(arc_engine.verify_chain(item.message, lookup))
        spf_result: spf.SpfResult | None = None
        if self.check_spf and item.envelope.client_address:
            lookups = spf.SpfLookups(lookup, getattr(lookup, "addresses", None),
                                     getattr(lookup, "mx", None))
            helo = item.envelope.helo or ""
            spf_result = spf.check_host(lookups, item.envelope.client_address,
                                        item.envelope.mail_from, helo)
            results.append(spf.spf_auth_result(spf_result,
                                               helo="@" not in item.envelope.mail_from))
        verdict = dmarc.evaluate(item.message, lookup, signatures, spf_result,
                                 sample=self.sample)
        if self.check_dmarc:
            results.append(verdict.auth_result())
        for result in results:
            item = item.with_auth_result(result)
        item = item.annotate("dkim.result", _summary([s.status for s in signatures]))
        item = item.annotate("dmarc.result", verdict.result)
        # an aligned DKIM or SPF pass, also for a domain without a DMARC record (what
        # harvest-keys requires of Autocrypt mail)
        item = item.annotate("dmarc.aligned", "yes" if verdict.aligned else "no")
        return self.judge_spoof(item, verdict)

    def judge_spoof(self, item: MailItem, verdict: dmarc.DmarcResult) -> MailItem | Outcome:
        """The anti-spoofing step of the gateway decision (:func:`decide_spoof`)."""
        facts = SpoofFacts(from_domain=verdict.domain or "",
                           from_internet=item.annotation("marker.source") != "return-path",
                           aligned=verdict.aligned, enforced=verdict.enforced,
                           dns_trouble=verdict.result == "temperror" or verdict.dns_trouble)
        action, reply = decide_spoof(facts, self.accepted_domains, SpoofPolicy(self.on_spoof),
                                     requires_policy=self.spoof_requires_policy)
        if action is SpoofAction.PASS:
            return item
        if action is SpoofAction.TEMPFAIL and reply is not None:
            return Outcome(Action.TEMPFAIL, reply)
        log.info("own-domain spoof refused: header.from=%s dmarc=%s", facts.from_domain,
                 verdict.result)
        if action is SpoofAction.REJECT and reply is not None:
            return Outcome(Action.REJECT, reply)
        if action is SpoofAction.QUARANTINE:
            return Outcome.quarantine(SPOOF_REPLY.text)
        return item.annotate("dmarc.spoof", "yes")


def _summary(statuses: list[AuthStatus]) -> str:
    if not statuses:
        return "none"
    if AuthStatus.PASS in statuses:
        return "pass"
    return statuses[0].value


def build_verify(options: Options) -> DkimVerifyFilter:
    """Build ``dkim-verify`` from its policy options."""
    lookup = lookup_option(options)
    verify = VerifyOptions(
        max_signatures=options.integer("max_signatures", 8, minimum=1),
        max_header_entries=options.integer("max_header_entries", 64, minimum=1),
        allow_length=options.boolean("allow_length", False))
    return DkimVerifyFilter(
        lookup=lookup, options=verify,
        check_spf=options.boolean("spf", True), check_dmarc=options.boolean("dmarc", True),
        check_arc=options.boolean("arc", True),
        accepted_domains=tuple(d.lower().rstrip(".")
                               for d in options.string_list("accepted_domains")),
        on_spoof=options.choice("on_spoof", ("reject", "quarantine", "flag", "off"), "reject"),
        spoof_requires_policy=options.boolean("spoof_requires_policy", False))

