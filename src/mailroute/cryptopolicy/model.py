"""The policy model: rules with inheritance (defaults -> domain -> user) and triggers.

Encryption rules (``encrypt``, ``method``, ``prefer``, ``ciphers``, ``on_missing_key``) are
resolved for each *recipient*: the defaults, then the most specific domain entry (a rule for
``example.com`` covers ``mail.example.com``), then the recipient's own entry; each level sets
only what it names. The signing rule (``sign``) is resolved the same way for the *sender*.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping

from mailroute.keys.directory import Trust
from mailroute.records import field, fields, record, replace

__all__ = ["CIPHERS", "DIRECTORY_KEY", "POLICY_KEY", "CryptoPolicy",
           "EncryptMode", "Method", "MissingKeyAction", "Resolved",
           "Rules", "SignMode", "Trigger"]

#: Where a policy file's encryption policy and key directory are in the filters' context.
POLICY_KEY = "crypto.policy"
DIRECTORY_KEY = "crypto.directory"

#: S/MIME content ciphers the policy may name, and the SMIMECapabilities name a recipient
#: must have advertised before an AES-GCM cipher is used for him (CBC needs none).
CIPHERS: Mapping[str, str | None] = {
    "aes-256-gcm": "aes256_gcm",
    "aes-128-gcm": "aes128_gcm",
    "aes-256-cbc": None,
    "aes-128-cbc": None,
}


class SignMode(enum.StrEnum):
    """Whether outbound mail of a sender is signed."""

    NEVER = "never"
    ALWAYS = "always"


class EncryptMode(enum.StrEnum):
    """Whether outbound mail to a recipient is encrypted."""

    NEVER = "never"
    OPPORTUNISTIC = "opportunistic"  # when a usable key is known
    MANDATORY = "mandatory"          # never in clear: on_missing_key decides

    @property
    def strength(self) -> int:
        """never 0 < opportunistic 1 < mandatory 2."""
        return ("never", "opportunistic", "mandatory").index(self.value)


class Method(enum.StrEnum):
    """Which kind of encryption a recipient gets."""

    SMIME = "smime"
    PGP = "pgp"
    EITHER = "either"


class MissingKeyAction(enum.StrEnum):
    """What mandatory encryption does when the recipient has no usable key."""

    REJECT = "reject"  # 5xx with a text naming the recipient: the sender's MTA bounces
    HOLD = "hold"      # quarantine until a key is imported
    NOTIFY = "notify"  # quarantine and tell the sender (the quarantine's notification)


@record(frozen=True, kw_only=True)
class Rules:
    """One level of rules; ``None`` leaves the value to the level above."""

    sign: SignMode | None = None
    encrypt: EncryptMode | None = None
    method: Method | None = None
    prefer: Method | None = None  # which method wins under "either" when both keys exist
    ciphers: tuple[str, ...] | None = None
    on_missing_key: MissingKeyAction | None = None

    def over(self, base: Rules) -> Rules:
        """These rules on top of ``base``."""
        changes = {f.name: getattr(self, f.name) for f in fields(self)
                   if getattr(self, f.name) is not None}
        return replace(base, **changes)


@record(frozen=True, kw_only=True)
class Resolved:
    """The rules in force for one address, every value set."""

    sign: SignMode = SignMode.NEVER
    encrypt: EncryptMode = EncryptMode.OPPORTUNISTIC
    method: Method = Method.EITHER
    prefer: Method = Method.SMIME
    ciphers: tuple[str, ...] = ("aes-256-gcm", "aes-128-gcm", "aes-256-cbc")
    on_missing_key: MissingKeyAction = MissingKeyAction.REJECT


_BASE = Resolved()
DEFAULT_RULES = Rules(sign=_BASE.sign, encrypt=_BASE.encrypt, method=_BASE.method,
                      prefer=_BASE.prefer, ciphers=_BASE.ciphers,
                      on_missing_key=_BASE.on_missing_key)


@record(frozen=True, kw_only=True)
class Trigger:
    """What lets an authenticated internal sender ask for encryption of one message.

    Attributes:
        subject_tag: a tag anywhere in the Subject (case and inner spaces ignored), removed
            before delivery; ``""`` turns it off.
        header: a header field whose value ``yes``/``true``/``1``/``encrypt`` asks for it,
            removed before delivery; ``""`` turns it off.
        encrypt: what a trigger makes of the recipients' encryption mode (at least this).
        authenticated_networks: client addresses of authenticated submission (the
            organisation's own servers); mail from the own tenant (the marker's
            ``return-path`` source) counts as authenticated too.
        authenticated_peers: verified TLS peer names of the organisation's servers.
    """

    subject_tag: str = "[secure]"
    header: str = "X-Mailroute-Encrypt"
    encrypt: EncryptMode = EncryptMode.MANDATORY
    authenticated_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    authenticated_peers: frozenset[str] = frozenset()


@record(frozen=True, kw_only=True)
class CryptoPolicy:
    """Everything :func:`~mailroute.cryptopolicy.decide_crypto` needs besides the keys.

    Attributes:
        internal_domains: the organisation's domains (its senders; recipients there are
            internal and never encrypted by the gateway).
        defaults: the organisation-wide rules (complete: :data:`DEFAULT_RULES` under them).
        domains: rules per domain (lower case).
        users: rules per address (lower case).
        trigger: the subject tag and header triggers.
        min_trust: the lowest trust level a key must have to be used.
    """

    internal_domains: frozenset[str]
    defaults: Rules = DEFAULT_RULES
    domains: Mapping[str, Rules] = field(default_factory=dict)
    users: Mapping[str, Rules] = field(default_factory=dict)
    trigger: Trigger = Trigger()
    min_trust: Trust = Trust.HARVESTED

    def rules_for(self, address: str) -> Resolved:
        """The resolved rules of ``address``: defaults, then domain, then user."""
        address = address.strip().lower()
        domain = address.rpartition("@")[2]
        rules = self.defaults.over(DEFAULT_RULES)
        labels = domain.split(".")
        for start in range(len(labels) - 1, -1, -1):  # parent domains first
            entry = self.domains.get(".".join(labels[start:]))
            if entry is not None:
                rules = entry.over(rules)
        user = self.users.get(address)
        if user is not None:
            rules = user.over(rules)
        base = Resolved()
        return Resolved(sign=rules.sign or base.sign, encrypt=rules.encrypt or base.encrypt,
                        method=rules.method or base.method, prefer=rules.prefer or base.prefer,
                        ciphers=rules.ciphers if rules.ciphers is not None else base.ciphers,
                        on_missing_key=rules.on_missing_key or base.on_missing_key)
