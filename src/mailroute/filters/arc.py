"""The ``arc-seal`` filter: seal what the gateway changed (docs/dkim.md).

Options: ``domain``, ``selector``, ``key`` (PEM, RSA), ``authserv_id`` (the gateway's, as in
``[gateway] authserv_id``; default ``mailroute``). Run it after ``dkim-verify`` (whose
results, the ``arc`` result included, become the ARC-Authentication-Results) and after the
filters that change the message.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailroute.config.options import Options
from mailroute.dkim.arc import seal, sealing_pem
from mailroute.errors import ConfigError
from mailroute.filters.dkim import signing_key_option
from mailroute.item import Context, MailItem
from mailroute.results import AuthResult, AuthStatus

__all__ = ["ArcSealFilter", "build_seal"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ArcSealFilter:
    """Adds the next ARC set; the AAR holds the results earlier filters collected."""

    pem: bytes
    domain: str
    selector: str
    authserv_id: str
    name: str = "arc-seal"

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        """Seal ``item``'s message."""
        results = item.auth_results
        if not any(r.method == "arc" for r in results):
            results = (*results, AuthResult("arc", AuthStatus.NONE))
        sealed = seal(item.message, self.pem, domain=self.domain, selector=self.selector,
                      authserv_id=self.authserv_id, results=results,
                      timestamp=int(ctx.clock()))
        return item.evolve(message=sealed).annotate("arc-seal", "sealed")


def build_seal(options: Options) -> ArcSealFilter:
    """Build ``arc-seal`` from its policy options."""
    domain = options.string("domain").lower().rstrip(".")
    selector = options.string("selector")
    key = signing_key_option(options)
    try:
        pem = sealing_pem(key)
    except ConfigError as exc:
        raise options.error("key", str(exc)) from exc
    authserv_id = options.string("authserv_id", "mailroute")
    return ArcSealFilter(pem=pem, domain=domain, selector=selector, authserv_id=authserv_id)
