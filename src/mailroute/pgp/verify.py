"""Signature verdicts for a whole message, with the coverage of every signature.

A message counts as signed only when a signature covers all of it: a PGP/MIME signature at
the root, a signature inside an encrypted root, or an inline block that is the whole of a
``text/plain`` message. A signed part inside an unsigned wrapper is reported with its path
and makes the verdict ``partial``, never ``valid`` (Johnny-class wrapping attacks).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

from mailroute.limits import DEFAULT_LIMITS, Limits
from mailroute.mime import Message, Path, parse_addresses
from mailroute.mime.headers import split_content
from mailroute.mime.protected import ProtectedHeaders, carrier_path, compare
from mailroute.pgp.inline import InlineKind, find_inline
from mailroute.pgp.keys import KeyInfo, uid_address
from mailroute.pgp.rfc3156 import find_signed, to_crlf
from mailroute.pgp.status import SignatureCheck
from mailroute.pgp.store import KeyStore
from mailroute.records import record, replace
from mailroute.results import AuthResult, AuthStatus

__all__ = ["MessageVerification", "SignatureReport", "Verdict", "from_addresses", "report",
           "summarise", "verify_message"]


class Verdict(enum.StrEnum):
    """The message-level outcome."""

    VALID = "valid"
    SIGNER_MISMATCH = "signer-mismatch"
    INVALID = "invalid"
    PARTIAL = "partial"
    NONE = "none"


@record(frozen=True)
class SignatureReport:
    """One signature and what it covers.

    Attributes:
        covers: path of the signed entity (``()`` = the whole message).
        form: ``pgp-mime``, ``inline`` or ``encrypted`` (inside an OpenPGP message).
        complete: True when the signature covers the whole message.
        check: gpg's verdict on the signature.
        uids: the signing key's user IDs (from the key store).
        from_match: a user ID's address equals a From address.
        email: that From address, or else the first address of the key's user IDs.
    """

    covers: Path
    form: str
    complete: bool
    check: SignatureCheck
    uids: tuple[str, ...] = ()
    from_match: bool = False
    email: str = ""

    @property
    def covers_text(self) -> str:
        """``message`` or the dotted part path (``part 1.2``)."""
        if self.complete:
            return "message"
        return "part " + ".".join(str(i + 1) for i in self.covers) if self.covers else "text"

    @property
    def reason(self) -> str:
        """A short reason text for this signature."""
        if not self.check.valid:
            return self.check.status.value
        if not self.from_match:
            return "signer does not match From"
        return "good signature"

    def to_json(self) -> dict[str, object]:
        """The CLI.md ``signers[]`` shape plus fingerprint and coverage."""
        return {"email": self.email, "subject": self.uids[0] if self.uids else "",
                "valid": self.check.valid, "reason": self.reason,
                "fingerprint": self.check.primary_fingerprint or "", "key_id":
                self.check.key_id, "covers": self.covers_text, "complete": self.complete,
                "form": self.form}


@record(frozen=True)
class MessageVerification:
    """The verdict for a message and every signature behind it.

    ``protected`` lists the header fields the root signature protects (RFC 9788, Autocrypt
    ``protected-headers="v1"``) and which outer fields differ from them.
    """

    verdict: Verdict
    reason: str
    reports: tuple[SignatureReport, ...]
    protected: ProtectedHeaders | None = None

    @property
    def valid(self) -> bool:
        """True only for a complete, good signature by a From address."""
        return self.verdict is Verdict.VALID

    def auth_result(self) -> AuthResult:
        """The RFC 8601 result (method ``pgp``)."""
        status = {Verdict.VALID: AuthStatus.PASS, Verdict.SIGNER_MISMATCH: AuthStatus.POLICY,
                  Verdict.INVALID: AuthStatus.FAIL, Verdict.PARTIAL: AuthStatus.NEUTRAL,
                  Verdict.NONE: AuthStatus.NONE}[self.verdict]
        props: tuple[tuple[str, str], ...] = ()
        matched = [r for r in self.reports if r.complete and r.check.valid and r.from_match]
        if matched:
            props = (("header.from", matched[0].email),)
        return AuthResult("pgp", status, self.reason, props)

    def to_json(self) -> dict[str, object]:
        """The CLI.md verify shape."""
        return {"valid": self.valid, "verdict": self.verdict.value, "reason": self.reason,
                "signers": [r.to_json() for r in self.reports],
                "protected_headers": self.protected.to_json() if self.protected else None}


def _address(uid: str) -> str | None:
    return uid_address(uid)


def _uids(keys: Sequence[KeyInfo], check: SignatureCheck) -> tuple[str, ...]:
    wanted = {f for f in (check.fingerprint, check.primary_fingerprint) if f}
    for key in keys:
        if wanted & set(key.fingerprints):
            return key.uids
    return ()


def report(keys: Sequence[KeyInfo], check: SignatureCheck, *, covers: Path, form: str,
           complete: bool, from_addresses: Iterable[str]) -> SignatureReport:
    """A :class:`SignatureReport` with the signer's user IDs and the From binding."""
    uids = _uids(keys, check)
    addresses = [a for a in (_address(u) for u in uids) if a]
    matching = [a for a in addresses if a in set(from_addresses)]
    email = matching[0] if matching else (addresses[0] if addresses else "")
    return SignatureReport(covers, form, complete, check, uids, bool(matching), email)


def summarise(reports: Sequence[SignatureReport]) -> MessageVerification:
    """The message verdict: every complete signature must be good and one must match From."""
    complete = [r for r in reports if r.complete]
    if not reports:
        return MessageVerification(Verdict.NONE, "no PGP signature", ())
    if not complete:
        where = ", ".join(r.covers_text for r in reports)
        return MessageVerification(Verdict.PARTIAL, f"signature covers only {where}",
                                   tuple(reports))
    bad = [r for r in complete if not r.check.valid]
    if bad:
        return MessageVerification(Verdict.INVALID, bad[0].reason, tuple(reports))
    if not any(r.from_match for r in complete):
        return MessageVerification(Verdict.SIGNER_MISMATCH, "signer does not match From",
                                   tuple(reports))
    return MessageVerification(Verdict.VALID, "good signature", tuple(reports))


def from_addresses(message: Message, limits: Limits = DEFAULT_LIMITS) -> tuple[str, ...]:
    """The addresses in the From field(s)."""
    out: list[str] = []
    for field in message.headers.get_all("From"):
        out.extend(parse_addresses(field, limits))
    return tuple(out)


def verify_message(store: KeyStore, message: Message, *,
                   limits: Limits = DEFAULT_LIMITS,
                   extra: Sequence[SignatureReport] = ()) -> MessageVerification:
    """Verify every PGP/MIME and inline signature of ``message`` (plus ``extra`` reports)."""
    signed = find_signed(message)
    inline = [b for b in find_inline(message) if b.kind is InlineKind.SIGNED]
    if not signed and not inline:
        return summarise(extra)
    keys = store.public_keys()
    senders = from_addresses(message, limits)
    reports = list(extra)
    for entity in signed:
        for check in store.verify_detached(entity.signature, to_crlf(entity.signed)):
            reports.append(report(keys, check, covers=entity.path, form="pgp-mime",
                                  complete=entity.path == (), from_addresses=senders))
    for block in inline:
        for check in store.verify_inline(block.data):
            reports.append(report(keys, check, covers=block.path, form="inline",
                                  complete=block.path == () and block.alone,
                                  from_addresses=senders))
    verification = summarise(reports)
    if any(e.path == () for e in signed) and carrier_path(message) == (0,):
        outer, _ = split_content(message.headers)
        verification = replace(verification, protected=compare(outer, message))
    return verification
