"""The ``pgp-sign``, ``pgp-encrypt``, ``pgp-decrypt`` and ``pgp-verify`` filters (RFC 3156).

Common options: ``gnupghome`` (the key store's GnuPG home, required), ``passphrase_file``
(the passphrase of the secret key, one line; the file must be private), ``timeout`` (seconds
per gpg call, default 30).

* ``pgp-sign``: ``signer`` (fingerprint or address of a secret key). Output
  ``multipart/signed; micalg=pgp-sha256; protocol="application/pgp-signature"``.
* ``pgp-encrypt``: ``recipient`` (fingerprints or addresses; default: the envelope
  recipients, each looked up by address), ``sign_with`` (optional: one combined signed and
  encrypted OpenPGP message, RFC 3156 section 6.2), ``on_missing_key`` (``reject``,
  ``tempfail`` or ``pass`` = deliver unencrypted, annotated).
* ``pgp-decrypt``: ``on_failure`` (``flag``: pass the message on unchanged with the
  ``flag_header`` field, default ``X-Mailroute-PGP``; or ``reject``), ``require_encrypted``
  (refuse mail that is not PGP-encrypted). Plaintext is used only with ``DECRYPTION_OKAY``
  and an integrity check. Signatures inside the encrypted message are verified and reported.
  Protected header fields (``protected-headers="v1"``, RFC 9788) replace the outer ones and
  are reported in the ``pgp-decrypt.protected-headers`` annotation.
* ``pgp-verify``: ``on_invalid`` (``pass`` or ``reject``). Adds an RFC 8601 ``pgp`` result.

Messages that are already encrypted (PGP or S/MIME) are passed on untouched by ``pgp-sign``
and ``pgp-encrypt``; ``pgp-sign`` also leaves signed messages alone, while ``pgp-encrypt``
encrypts a signed message as it is (nested form, RFC 3156 section 6.1).
"""

from __future__ import annotations

import logging
from typing import ClassVar

from mailroute.config.options import Options
from mailroute.errors import (
    ConfigError,
    DecryptionError,
    MailrouteError,
    MessageError,
    SigningError,
)
from mailroute.item import Context, MailItem
from mailroute.keys.secretfile import read_secret_file
from mailroute.mime import Message, make_field
from mailroute.pgp.inline import InlineKind, find_inline
from mailroute.pgp.keys import KeyFound, KeyMissing
from mailroute.pgp.rfc3156 import (
    build_encrypted,
    build_signed,
    canonical_entity,
    decrypted,
    find_encrypted,
)
from mailroute.pgp.runner import check_passphrase
from mailroute.pgp.store import DecryptResult, KeyStore
from mailroute.pgp.verify import (
    MessageVerification,
    SignatureReport,
    Verdict,
    from_addresses,
    report,
    verify_message,
)
from mailroute.records import record
from mailroute.results import Outcome

__all__ = [
    "PgpDecryptFilter",
    "PgpEncryptFilter",
    "PgpSignFilter",
    "PgpVerifyFilter",
    "build_decrypt",
    "build_encrypt",
    "build_sign",
    "build_verify",
]

log = logging.getLogger("mailroute.pgp")
_ENCRYPTED_TYPES = frozenset({"multipart/encrypted", "application/pkcs7-mime",
                              "application/x-pkcs7-mime"})


def _already_protected(message: Message, *, signed_counts: bool) -> bool:
    """True for an encrypted message, and for a signed one when ``signed_counts``."""
    kind = message.root.mime_type
    if kind in _ENCRYPTED_TYPES or (signed_counts and kind == "multipart/signed"):
        return True
    return any(b.path == () and b.alone and (signed_counts or b.kind is InlineKind.ENCRYPTED)
               for b in find_inline(message))


@record(frozen=True)
class PgpSignFilter:
    """Sign the whole message content as PGP/MIME."""

    store: KeyStore
    signer: str
    passphrase: str | None = None
    name: str = "pgp-sign"
    #: runs gpg, a subprocess: an adapter keeps it off its event loop
    blocking: ClassVar[bool] = True

    def preflight(self) -> list[tuple[str, str]]:
        """What ``mailroute check`` reports beyond the policy file: ``(option, problem)``
        for a signer without a usable secret key in the key store (every message would be
        refused)."""
        return _signer_problem(self.store, "signer", self.signer)

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        """Replace the content by ``multipart/signed`` over its canonical form."""
        message = item.message
        if _already_protected(message, signed_counts=True):
            return item.annotate("pgp-sign", "skipped-protected")
        entity = canonical_entity(message, seven_bit=True)
        signed = self.store.sign_detached(entity, self.store.signer(self.signer),
                                          passphrase=self.passphrase)
        new = build_signed(message, entity, signed.signature, signed.micalg, limits=ctx.limits)
        return item.evolve(message=new).annotate("pgp-sign", "signed")


@record(frozen=True)
class PgpEncryptFilter:
    """Encrypt the whole message content as PGP/MIME, optionally signed (combined)."""

    store: KeyStore
    recipients: tuple[str, ...] = ()
    sign_with: str | None = None
    passphrase: str | None = None
    on_missing_key: str = "reject"
    name: str = "pgp-encrypt"
    #: runs gpg, a subprocess: an adapter keeps it off its event loop
    blocking: ClassVar[bool] = True

    def preflight(self) -> list[tuple[str, str]]:
        """As :meth:`PgpSignFilter.preflight`, for ``sign_with``."""
        return ([] if self.sign_with is None
                else _signer_problem(self.store, "sign_with", self.sign_with))

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Replace the content by ``multipart/encrypted``; missing keys follow the policy."""
        message = item.message
        if _already_protected(message, signed_counts=False):
            return item.annotate("pgp-encrypt", "skipped-protected")
        wanted = self.recipients or item.envelope.rcpt_to
        lookups = self.store.lookup_all(wanted)
        missing = [k for k in lookups if isinstance(k, KeyMissing)]
        if missing or not lookups:
            detail = ",".join(f"{k.address}:{k.reason}" for k in missing) or "no-recipients"
            if self.on_missing_key == "pass":
                return item.annotate("pgp-encrypt", f"missing-key {detail}")
            log.info("no usable PGP key: %s", detail)
            whom = ", ".join(k.address for k in missing[:5]) or "the recipients"
            if self.on_missing_key == "tempfail":
                return Outcome.tempfail("4.7.5", f"no PGP key for {whom} yet")
            return Outcome.reject("5.7.1", f"no PGP key for {whom}", 550)
        fprs = [k.fingerprint for k in lookups if isinstance(k, KeyFound)]
        signer = self.store.signer(self.sign_with) if self.sign_with else None
        # a signed message is encrypted as it is (RFC 3156 section 6.1, nested form):
        # re-encoding a part inside it would break its signature
        nested = message.root.mime_type == "multipart/signed"
        entity = canonical_entity(message, seven_bit=not nested)
        armored = self.store.encrypt(entity, fprs, sign_with=signer, passphrase=self.passphrase)
        new = build_encrypted(message, armored, limits=ctx.limits)
        return item.evolve(message=new).annotate("pgp-encrypt", "encrypted")


def _combined(keys_store: KeyStore, result: DecryptResult, message: Message, *,
              complete: bool, covers: tuple[int, ...]) -> list[SignatureReport]:
    if not result.signatures:
        return []
    keys = keys_store.public_keys()
    senders = from_addresses(message)
    return [report(keys, check, covers=covers, form="encrypted", complete=complete,
                   from_addresses=senders) for check in result.signatures]


@record(frozen=True)
class PgpDecryptFilter:
    """Decrypt a PGP/MIME root or inline PGP blocks; never output unauthenticated plaintext."""

    store: KeyStore
    passphrase: str | None = None
    on_failure: str = "flag"
    require_encrypted: bool = False
    flag_header: str = "X-Mailroute-PGP"
    name: str = "pgp-decrypt"
    #: runs gpg, a subprocess: an adapter keeps it off its event loop
    blocking: ClassVar[bool] = True

    def _failed(self, item: MailItem, message: Message, reason: str) -> MailItem:
        log.info("PGP decryption refused: %s", reason)
        if self.on_failure == "reject":
            # one text for every cause: the SMTP reply must not be a format oracle
            raise DecryptionError("cannot decrypt the PGP message")
        flagged = message.with_header(self.flag_header, f"decrypt=failed; reason={reason}")
        return item.evolve(message=flagged).annotate("pgp-decrypt", f"failed {reason}")

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        """Decrypt, verify inner signatures, or flag the message."""
        message = item.message.without_header(self.flag_header)
        item = item.evolve(message=message)
        root = [e for e in find_encrypted(message) if e.path == ()]
        if root:
            result = self.store.decrypt(root[0].data, passphrase=self.passphrase)
            if not result.ok or result.plaintext is None:
                return self._failed(item, message, result.verdict.value)
            try:
                new, protected = decrypted(message, result.plaintext, limits=ctx.limits)
            except MessageError:
                return self._failed(item, message, "malformed-plaintext")
            inner = _combined(self.store, result, new, complete=True, covers=())
            item = item.evolve(message=new)
            if protected is not None:
                item = item.annotate("pgp-decrypt.protected-headers", protected.summary())
            return self._verified(item, inner, ctx)
        blocks = [b for b in find_inline(message) if b.kind is InlineKind.ENCRYPTED]
        usable = [b for b in blocks if b.alone]
        if not usable:
            if self.require_encrypted:
                raise DecryptionError("the message is not PGP encrypted")
            return item.annotate("pgp-decrypt", "not-encrypted" if not blocks else "skipped")
        extra: list[SignatureReport] = []
        new = message
        for block in usable:
            result = self.store.decrypt(block.data, passphrase=self.passphrase)
            if not result.ok or result.plaintext is None:
                return self._failed(item, message, result.verdict.value)
            try:
                new = new.replace_text(block.path, result.plaintext.decode("utf-8"))
            except (UnicodeDecodeError, MessageError):
                return self._failed(item, message, "malformed-plaintext")
            extra += _combined(self.store, result, new, covers=block.path,
                               complete=block.path == ())
        return self._verified(item.evolve(message=new), extra, ctx)

    def _verified(self, item: MailItem, extra: list[SignatureReport], ctx: Context) -> MailItem:
        item = item.annotate("pgp-decrypt", "decrypted")
        verification = verify_message(self.store, item.message, limits=ctx.limits, extra=extra)
        if verification.verdict is Verdict.NONE:
            return item
        return _record(item, verification)


def _record(item: MailItem, verification: MessageVerification) -> MailItem:
    return item.with_auth_result(verification.auth_result()).annotate(
        "pgp-verify", verification.verdict.value)


@record(frozen=True)
class PgpVerifyFilter:
    """Verify PGP/MIME and inline signatures and record the verdict with its coverage."""

    store: KeyStore
    on_invalid: str = "pass"
    name: str = "pgp-verify"
    #: runs gpg, a subprocess: an adapter keeps it off its event loop
    blocking: ClassVar[bool] = True

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Add the ``pgp`` authentication result (once: pgp-decrypt may have added it)."""
        if item.annotation("pgp-verify") is not None:
            return item
        verification = verify_message(self.store, item.message, limits=ctx.limits)
        if verification.verdict is Verdict.INVALID and self.on_invalid == "reject":
            return Outcome.reject("5.7.5", "PGP signature invalid")
        return _record(item, verification)


# -- builders -----------------------------------------------------------------------------


def _signer_problem(store: KeyStore, option: str, ident: str) -> list[tuple[str, str]]:
    try:
        store.signer(ident)
    except SigningError as exc:
        return [(option, f"{ident}: {exc}")]
    except MailrouteError as exc:  # gpg could not be run: its own message says why
        return [(option, str(exc))]
    return []


def _store(options: Options) -> KeyStore:
    home = options.path("gnupghome")
    timeout = options.integer("timeout", 30, minimum=1)
    try:
        return KeyStore(home, timeout=float(timeout))
    except ConfigError as exc:
        raise options.error("gnupghome", f"{home}: {str(exc).rsplit(': ', 1)[-1]}") from exc


def _passphrase(options: Options) -> str | None:
    path = options.optional_path("passphrase_file")
    if path is None:
        return None
    try:
        text = read_secret_file(path, what="passphrase file").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise options.error("passphrase_file", "is not UTF-8") from exc
    passphrase = text[:-1] if text.endswith("\n") else text
    passphrase = passphrase[:-1] if passphrase.endswith("\r") else passphrase
    try:
        check_passphrase(passphrase)
    except ConfigError as exc:
        raise options.error("passphrase_file", "must hold one line") from exc
    return passphrase


def build_sign(options: Options) -> PgpSignFilter:
    """``pgp-sign`` from ``gnupghome``, ``signer``, ``passphrase_file``, ``timeout``."""
    store = _store(options)
    return PgpSignFilter(store, options.string("signer"), _passphrase(options))


def build_encrypt(options: Options) -> PgpEncryptFilter:
    """``pgp-encrypt`` from ``gnupghome``, ``recipient``, ``sign_with``, ``on_missing_key``."""
    store = _store(options)
    recipients = options.string_list("recipient")
    if any(not v or v.startswith("-") or any(c in v for c in "\t\r\n\0") for v in recipients):
        raise options.error("recipient", "must be addresses or fingerprints")
    return PgpEncryptFilter(store, recipients, options.optional_string("sign_with"),
                            _passphrase(options),
                            options.choice("on_missing_key", ("reject", "tempfail", "pass"),
                                           "reject"))


def build_decrypt(options: Options) -> PgpDecryptFilter:
    """``pgp-decrypt`` from ``gnupghome``, ``passphrase_file``, ``on_failure`` ..."""
    store = _store(options)
    flag = options.string("flag_header", "X-Mailroute-PGP")
    try:
        make_field(flag, "x")
    except MessageError as exc:
        raise options.error("flag_header", "invalid field name") from exc
    return PgpDecryptFilter(store, _passphrase(options),
                            options.choice("on_failure", ("flag", "reject"), "flag"),
                            options.boolean("require_encrypted", False), flag)


def build_verify(options: Options) -> PgpVerifyFilter:
    """``pgp-verify`` from ``gnupghome`` and ``on_invalid``."""
    return PgpVerifyFilter(_store(options), options.choice("on_invalid", ("pass", "reject"),
                                                           "pass"))

