"""The decision: per recipient, sign or not, encrypt or not, with which key and cipher, or
refuse; all of it from the message, the key directory and the policy, with reasons.

Pure but for one directory lookup (every external recipient's keys at once): no clock
(``now`` is an argument), no network, no change to anything. The filters apply the plan.
"""

from __future__ import annotations

import ipaddress
import re

from mailroute.cryptopolicy.model import (
    CIPHERS,
    CryptoPolicy,
    EncryptMode,
    Method,
    MissingKeyAction,
    Resolved,
    SignMode,
)
from mailroute.cryptopolicy.plan import Action, CryptoPlan, RecipientPlan
from mailroute.errors import MessageError
from mailroute.item import MailItem
from mailroute.keys.directory import KeyDirectory, KeyKind, KeyRecord, KeyState, address_key

__all__ = ["TRIGGER_ANNOTATION", "decide_crypto", "is_encrypted",
           "sender_is_authenticated_internal",
           "subject_has_tag", "subject_text", "without_tag"]

_YES = frozenset({"yes", "true", "1", "encrypt", "on"})
_MISSING = {MissingKeyAction.REJECT: Action.REJECT, MissingKeyAction.HOLD: Action.HOLD,
            MissingKeyAction.NOTIFY: Action.NOTIFY}
_KIND = {Method.SMIME: KeyKind.SMIME, Method.PGP: KeyKind.PGP}
_ENCRYPTED_SMIME = re.compile(r"smime-type\s*=\s*\"?(enveloped-data|authenveloped-data)", re.I)
_SPACES = re.compile(r"\s+")
#: the marker verdict's source for mail that came back from the organisation's own tenant
OWN_TENANT_SOURCE = "return-path"
#: left by the filter that removed an accepted trigger, for the filters after it
TRIGGER_ANNOTATION = "crypto.trigger"


def decide_crypto(item: MailItem, directory: KeyDirectory, policy: CryptoPolicy, *,
                  now: float) -> CryptoPlan:
    """The plan for ``item`` (see :class:`~mailroute.cryptopolicy.CryptoPlan`)."""
    sender = item.envelope.mail_from.strip().lower()
    internal_sender = _internal_sender(item, policy)
    authenticated = internal_sender and sender_is_authenticated_internal(item, policy)
    notes: list[str] = []
    asked, tag, header = _trigger(item, policy)
    triggered = asked and authenticated
    if asked and not triggered:
        notes.append("trigger ignored: the sender is not an authenticated internal sender")
    sign = bool(sender) and authenticated and policy.rules_for(sender).sign is SignMode.ALWAYS
    encrypted = is_encrypted(item)
    if encrypted:
        notes.append("the message is already encrypted")
    external = [r for r in item.envelope.rcpt_to
                if not _inside(r.rpartition("@")[2].lower(), policy)]
    known = directory.keys_for_all(external) if internal_sender and not encrypted else {}
    plans = tuple(
        _recipient(rcpt, known.get(address_key(rcpt), ()), policy, now=now,
                   internal_sender=internal_sender, triggered=triggered, sign=sign,
                   encrypted=encrypted)
        for rcpt in item.envelope.rcpt_to)
    return CryptoPlan(plans, triggered=triggered,
                      remove_subject_tag=tag if triggered else "",
                      remove_header=header if triggered else "", notes=tuple(notes))


def _recipient(rcpt: str, keys: tuple[KeyRecord, ...], policy: CryptoPolicy, *,
               now: float, internal_sender: bool, triggered: bool, sign: bool,
               encrypted: bool) -> RecipientPlan:
    domain = rcpt.rpartition("@")[2].lower()
    if _inside(domain, policy):
        return RecipientPlan(rcpt, Action.PASS, reasons=("internal recipient",))
    if not internal_sender:
        return RecipientPlan(rcpt, Action.PASS, reasons=("sender is not internal",))
    rules = policy.rules_for(rcpt)
    if encrypted:
        return RecipientPlan(rcpt, Action.PASS, reasons=("already encrypted",))
    mode, reasons = rules.encrypt, [f"policy: encrypt {rules.encrypt.value}"]
    if triggered and policy.trigger.encrypt.strength > mode.strength:
        mode = policy.trigger.encrypt
        reasons.append(f"trigger: encrypt {mode.value}")
    if mode is EncryptMode.NEVER:
        return _plain(rcpt, rules, sign, reasons)
    chosen = _choose(keys, policy, rules, now, reasons)
    if chosen is not None:
        method, key, cipher = chosen
        reasons.append(f"{method.value} key {key.fingerprint[:16]} ({key.trust.value})"
                       + (f", cipher {cipher}" if cipher else ""))
        return RecipientPlan(rcpt, Action.ENCRYPT, sign=sign, method=method, cipher=cipher,
                             keys=(key.fingerprint,), reasons=tuple(reasons),
                             mandatory=mode is EncryptMode.MANDATORY)
    if mode is EncryptMode.OPPORTUNISTIC:
        reasons.append("no usable key: sent without encryption (opportunistic)")
        return _plain(rcpt, rules, sign, reasons)
    reasons.append(f"no usable key: {rules.on_missing_key.value} (mandatory)")
    return RecipientPlan(rcpt, _MISSING[rules.on_missing_key], reasons=tuple(reasons))


def _plain(rcpt: str, rules: Resolved, sign: bool, reasons: list[str]) -> RecipientPlan:
    method = (Method.PGP if rules.method is Method.PGP else Method.SMIME) if sign else None
    return RecipientPlan(rcpt, Action.PLAIN, sign=sign, method=method, reasons=tuple(reasons))


def _choose(keys: tuple[KeyRecord, ...], policy: CryptoPolicy, rules: Resolved, now: float,
            reasons: list[str]) -> tuple[Method, KeyRecord, str] | None:
    """The method, key and cipher for ``rcpt``; ``None`` when no key is usable (the reasons
    say why each known key was not)."""
    usable: dict[KeyKind, list[KeyRecord]] = {KeyKind.SMIME: [], KeyKind.PGP: []}
    for key in keys:
        problem = _problem(key, policy, now)
        if problem:
            reasons.append(f"{key.kind.value} key {key.fingerprint[:16]} not used: {problem}")
        else:
            usable[key.kind].append(key)
    if rules.method is Method.EITHER:
        order = [rules.prefer, Method.PGP if rules.prefer is Method.SMIME else Method.SMIME]
    else:
        order = [rules.method]
    for method in order:
        candidates = sorted(usable[_KIND[method]], key=_rank, reverse=True)
        if not candidates:
            continue
        if method is Method.PGP:
            return method, candidates[0], ""
        for key in candidates:
            cipher = _cipher(key, rules)
            if cipher:
                return method, key, cipher
            reasons.append(f"smime key {key.fingerprint[:16]} not used: no cipher in common")
    return None


def _problem(key: KeyRecord, policy: CryptoPolicy, now: float) -> str:
    if key.state is KeyState.HELD:
        return "changed key held for review"
    if key.state is KeyState.RETIRED:
        return "retired"
    if key.revoked:
        return "revoked"
    if key.not_after and now > key.not_after:
        return "expired"
    if key.not_before and now < key.not_before:
        return "not yet valid"
    if key.trust.rank < policy.min_trust.rank:
        return f"trust {key.trust.value} is below {policy.min_trust.value}"
    return ""


def _rank(key: KeyRecord) -> tuple[bool, int, float]:
    return key.preferred, key.trust.rank, key.last_seen


def _cipher(key: KeyRecord, rules: Resolved) -> str:
    """The first cipher of the policy the key's owner can read: AES-GCM only when his
    signature advertised it."""
    for cipher in rules.ciphers:
        needed = CIPHERS.get(cipher)
        if needed is None or needed in key.capabilities:
            return cipher
    return ""


def _inside(domain: str, policy: CryptoPolicy) -> bool:
    return bool(domain) and any(domain == d or domain.endswith("." + d)
                                for d in policy.internal_domains)


def _internal_sender(item: MailItem, policy: CryptoPolicy) -> bool:
    """MAIL FROM and every From address are in the organisation's domains."""
    if not _inside(item.envelope.sender_domain, policy):
        return False
    field = item.message.headers.get("From")
    if field is None:
        return True
    found = re.findall(r"@([A-Za-z0-9.-]+)", field.value)
    return bool(found) and all(_inside(d.lower().rstrip("."), policy) for d in found)


def sender_is_authenticated_internal(item: MailItem, policy: CryptoPolicy) -> bool:
    """The message came from the organisation's own servers or an authenticated user: a
    SASL login (``Envelope.auth_user``: the milter's ``{auth_authen}``, ``--sasl-user``,
    XCLIENT ``LOGIN``), a client address of an authenticated network, a verified TLS peer
    name of the list, or the own tenant (the marker-verify filter's ``marker.source``
    annotation)."""
    trigger = policy.trigger
    if item.envelope.auth_user or item.annotation("marker.source") == OWN_TENANT_SOURCE:
        return True
    peer = item.envelope.tls_peer_name
    if peer is not None and peer.lower() in trigger.authenticated_peers:
        return True
    address = item.envelope.client_address
    if address and trigger.authenticated_networks:
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return False
        return any(ip in network for network in trigger.authenticated_networks)
    return False


def subject_has_tag(subject: str, tag: str) -> bool:
    """``tag`` occurs in ``subject``, case and white space ignored."""
    return bool(tag) and _squash(tag) in _squash(subject)


def subject_text(item: MailItem) -> str | None:
    """The Subject with RFC 2047 encoded words decoded (as written when they cannot be)."""
    field = item.message.headers.get("Subject")
    if field is None:
        return None
    try:
        return field.decoded()
    except MessageError:
        return field.value


def without_tag(subject: str, tag: str) -> str:
    """``subject`` with the first occurrence of ``tag`` removed (case and white space inside
    the tag ignored) and the spaces around it closed up."""
    pattern = r"\s*".join(re.escape(ch) for ch in _squash(tag))
    return _SPACES.sub(" ", re.sub(pattern, " ", subject, count=1, flags=re.I)).strip()


def _squash(text: str) -> str:
    return _SPACES.sub("", text).lower()


def _trigger(item: MailItem, policy: CryptoPolicy) -> tuple[bool, str, str]:
    """Whether the message asks for encryption, and the tag and header that asked."""
    trigger = policy.trigger
    tag = header = ""
    if trigger.subject_tag:
        subject = subject_text(item)
        if subject is not None and subject_has_tag(subject, trigger.subject_tag):
            tag = trigger.subject_tag
    if trigger.header:
        value = item.message.headers.value(trigger.header)
        if value is not None and value.strip().lower() in _YES:
            header = trigger.header
    # an earlier crypto filter of this pipeline took the trigger out (annotations are never
    # read from the message, so mail cannot set this)
    earlier = item.annotation(TRIGGER_ANNOTATION) == "yes"
    return bool(tag or header or earlier), tag, header


def is_encrypted(item: MailItem) -> bool:
    """The message is S/MIME or PGP/MIME encrypted at the top."""
    value = item.message.headers.value("Content-Type") or ""
    kind = value.split(";", 1)[0].strip().lower()
    if kind == "multipart/encrypted":
        return True
    if kind in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        return "smime-type" not in value.lower() or bool(_ENCRYPTED_SMIME.search(value))
    return False
