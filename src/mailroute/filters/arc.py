"""The ``arc-seal`` filter: seal what the gateway changed (docs/dkim.md).

Options: ``domain``, ``selector``, ``key`` (PEM, RSA); the authserv-id is ``[gateway]
authserv_id``. Run it after ``dkim-verify`` (whose results, the ``arc`` result included,
become the ARC-Authentication-Results) and after the filters that change the message.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa

from mailroute.config.options import Options
from mailroute.dkim.arc import next_instance, seal, sealing_key
from mailroute.errors import ConfigError
from mailroute.filters.dkim import signing_key_option, signing_names
from mailroute.item import Context, MailItem
from mailroute.records import record
from mailroute.results import AuthResult, AuthStatus

__all__ = ["ArcSealFilter", "build_seal"]


@record(frozen=True, kw_only=True)
class ArcSealFilter:
    """Adds the next ARC set; the AAR holds the results earlier filters collected."""

    key: rsa.RSAPrivateKey
    domain: str
    selector: str
    authserv_id: str
    name: str = "arc-seal"

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        """Seal ``item``'s message; pass it on unsealed when its chain cannot grow (50 sets
        already, or an unreadable instance: the chain fails, and no seal can say more)."""
        if next_instance(item.message) is None:
            return item.annotate("arc-seal", "skipped-chain-cannot-grow")
        results = item.auth_results
        if not any(r.method == "arc" for r in results):
            results = (*results, AuthResult("arc", AuthStatus.NONE))
        sealed = seal(item.message, self.key, domain=self.domain, selector=self.selector,
                      authserv_id=self.authserv_id, results=results,
                      timestamp=int(ctx.clock()))
        return item.evolve(message=sealed).annotate("arc-seal", "sealed")


def build_seal(options: Options) -> ArcSealFilter:
    """Build ``arc-seal`` from its policy options."""
    domain, selector = signing_names(options)
    key = signing_key_option(options)
    try:
        rsa_key = sealing_key(key)
    except ConfigError as exc:
        raise options.error("key", str(exc)) from exc
    authserv_id = options.string("authserv_id", "mailroute")
    gateway_id = options.inherited("authserv_id")
    if gateway_id is not None and authserv_id != gateway_id:
        # the AAR must name the ADMD whose Authentication-Results the gateway writes
        raise options.error("authserv_id", f"differs from [gateway] authserv_id "
                            f"{gateway_id!r}; leave it out to use that one")
    return ArcSealFilter(key=rsa_key, domain=domain, selector=selector, authserv_id=authserv_id)
