"""S/MIME filters: ``smime-sign``, ``smime-encrypt``, ``smime-decrypt``, ``smime-verify``.

Options are the flags of ``mailroute smime sign|encrypt|decrypt|verify`` (CLI.md) without
dashes. Verification adds one ``smime`` Authentication-Results entry per signer (RFC 7281
vocabulary, reason = the signer's verdict) that the pipeline writes under its authserv-id,
after removing incoming fields claiming that id.

Decryption removes incoming ``X-Mailroute-SMIME`` fields and writes its own: ``decrypted;
cipher=aes-256-cbc; authenticated=no`` (CBC plaintext is malleable: EFAIL) or
``undecryptable``. It leaves the same facts as annotations (``smime.decrypt``,
``smime.cipher``, ``smime.authenticated``) for ``when`` conditions. Every failure tied to the
ciphertext (no key for us, bad unwrap, bad padding or tag, plaintext that is no MIME entity)
gets one answer, and with ``on_failure = "deliver"`` (the default) that answer is the same
"accepted" as for a message that decrypted, so a sender learns nothing about the padding.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from mailroute.config.options import Options
from mailroute.errors import DecryptionError, MalformedMessageError, MessageError, SigningError
from mailroute.item import Context, MailItem
from mailroute.keys.certstore import (
    CertificateStore,
    DirectoryCertStore,
    all_certificates,
    key_belongs_to,
    load_certificates,
    load_private_key,
    read_passphrase,
)
from mailroute.mime.canonical import canonicalise
from mailroute.mime.headers import parse_addresses
from mailroute.records import record
from mailroute.results import AuthResult, AuthStatus, Outcome
from mailroute.smime import (
    Identity,
    Signer,
    SignerResult,
    SignerStatus,
    TrustAnchors,
    Verification,
    base64_lines,
    decrypt,
    encrypt,
    sign,
    verify,
)
from mailroute.smime.algorithms import CONTENT_CIPHERS, DIGESTS, micalg_name
from mailroute.smime.decrypt import DECRYPTION_FAILED
from mailroute.smime.entity import (
    SignedLayer,
    decrypted_message,
    encrypted_payload,
    entity_chunks,
    find_signed,
    pkcs7_message,
    signed_message,
    split_root,
)

__all__ = [
    "FLAG_FIELD",
    "SmimeDecrypt",
    "SmimeEncrypt",
    "SmimeSign",
    "SmimeVerify",
    "build_decrypt",
    "build_encrypt",
    "build_sign",
    "build_verify",
    "verify_message",
]

log = logging.getLogger(__name__)

FLAG_FIELD = "X-Mailroute-SMIME"
DEFAULT_CIPHER = "aes-256-gcm"
_ON_FAILURE = ("deliver", "reject", "quarantine")
_FAIL = {SignerStatus.BAD_DIGEST, SignerStatus.BAD_SIGNATURE}
_POLICY = {SignerStatus.UNTRUSTED, SignerStatus.EXPIRED, SignerStatus.NOT_YET_VALID,
           SignerStatus.BAD_KEY_USAGE, SignerStatus.FROM_MISMATCH, SignerStatus.WEAK_ALGORITHM}


def _now(ctx: Context) -> datetime:
    return datetime.fromtimestamp(ctx.clock(), UTC)


@record(frozen=True)
class SmimeSign:
    """Sign the message: detached ``multipart/signed`` unless ``opaque``."""

    signer: Signer
    opaque: bool = False
    name: str = "smime-sign"

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        """Canonicalise the entity, sign exactly those bytes and emit them unchanged."""
        message = canonicalise(item.message, ctx.limits)
        _, entity = split_root(message)
        chunks = sign(entity_chunks(entity), self.signer, signing_time=_now(ctx),
                      detached=not self.opaque)
        if self.opaque:
            signed = pkcs7_message(message, "signed-data", base64_lines(chunks, message.newline))
        else:
            signed = signed_message(message, b"".join(chunks),
                                    micalg_name(self.signer.effective_digest))
        return item.evolve(message=signed)


@record(frozen=True)
class SmimeEncrypt:
    """Encrypt the message to fixed recipient certificates and/or the store's certificates of
    the envelope recipients. An already encrypted message passes unchanged."""

    recipients: tuple[x509.Certificate, ...]
    cipher: str = DEFAULT_CIPHER
    oaep: bool = False
    store: CertificateStore | None = None
    on_missing: str = "reject"
    name: str = "smime-encrypt"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Encrypt the root entity, byte for byte, into application/pkcs7-mime."""
        if encrypted_payload(item.message) is not None:
            return item
        certificates = list(self.recipients)
        if self.store is not None:
            for rcpt in item.envelope.rcpt_to:
                found = [e for e in self.store.certificates_for(rcpt)
                         if isinstance(e.certificate.public_key(), rsa.RSAPublicKey)]
                if not found:
                    if self.on_missing == "reject":
                        return Outcome.reject("5.7.1", f"no certificate for {rcpt}")
                    return item
                certificates += [e.certificate for e in found]
        # The entity is encrypted as it is: CMS content is binary, and decryption must give
        # back exactly what was encrypted (sign first if the bytes must also be canonical).
        message = item.message
        _, entity = split_root(message)
        made = encrypt(entity_chunks(entity), certificates,
                       cipher=self.cipher, oaep=self.oaep)
        kind = "authEnveloped-data" if made.authenticated else "enveloped-data"
        body = base64_lines(made.chunks, message.newline)
        return item.evolve(message=pkcs7_message(message, kind, body))


@record(frozen=True)
class SmimeDecrypt:
    """Decrypt a top-level encrypted entity; anything else passes unchanged.

    ``on_failure`` decides what an undecryptable message gets, one answer for every cause:
    ``deliver`` (default: the message as received plus ``X-Mailroute-SMIME: undecryptable``;
    the sender sees the same acceptance as for a message that decrypted), ``reject``
    (554 5.7.5) or ``quarantine``. ``reject`` also refuses a message that is not encrypted.
    ``flag`` writes the ``X-Mailroute-SMIME`` field (incoming copies are removed either way).
    """

    identities: tuple[Identity, ...]
    on_failure: str = "deliver"
    flag: bool = True
    name: str = "smime-decrypt"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Replace the encrypted layer by the decrypted entity."""
        item = item.evolve(message=item.message.without_header(FLAG_FIELD))
        try:
            payload = encrypted_payload(item.message)
        except MalformedMessageError:
            payload = b""  # undecodable: fails below like any other undecryptable message
        if payload is None:
            if self.on_failure == "reject":
                raise MalformedMessageError("the message is not S/MIME encrypted")
            return item
        try:
            result = decrypt(payload, self.identities, max_size=ctx.limits.max_message_size)
            message, protected = decrypted_message(item.message, result.content, ctx.limits)
        except (DecryptionError, MessageError):  # MessageError: the plaintext is no MIME entity
            return self._undecryptable(item)
        authenticated = "yes" if result.authenticated else "no"
        log.info("smime-decrypt: decrypted, cipher %s, authenticated %s",
                 result.cipher, authenticated)
        item = item.evolve(message=message.without_header(FLAG_FIELD))
        item = (self._flagged(item, f"decrypted; cipher={result.cipher}; "
                                    f"authenticated={authenticated}")
                .annotate("smime.decrypt", "decrypted")
                .annotate("smime.cipher", result.cipher)
                .annotate("smime.authenticated", authenticated))
        if protected is not None:
            item = item.annotate("smime.protected-headers", protected.summary())
        return item

    def _undecryptable(self, item: MailItem) -> MailItem | Outcome:
        log.info("smime-decrypt: %s", DECRYPTION_FAILED)
        if self.on_failure == "reject":
            raise DecryptionError(DECRYPTION_FAILED) from None
        if self.on_failure == "quarantine":
            return Outcome.quarantine(DECRYPTION_FAILED)
        return self._flagged(item, "undecryptable").annotate("smime.decrypt", "undecryptable")

    def _flagged(self, item: MailItem, value: str) -> MailItem:
        if not self.flag:
            return item
        return item.evolve(message=item.message.with_header(FLAG_FIELD, value))


@record(frozen=True)
class SmimeVerify:
    """Verify the top-level S/MIME signature and record one result per signer."""

    trust: TrustAnchors
    from_match: bool = True
    name: str = "smime-verify"

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        """Add ``smime`` authentication results; the message itself is not changed."""
        try:
            found = verify_message(item, ctx, self.trust, from_match=self.from_match)
        except MalformedMessageError:
            return (item.with_auth_result(AuthResult("smime", AuthStatus.PERMERROR, "malformed"))
                    .annotate("smime.verify", "malformed"))
        if found is None:
            return item.with_auth_result(AuthResult("smime", AuthStatus.NONE)).annotate(
                "smime.verify", "none")
        layer, verification = found
        part = (("body.smime-part", ".".join(str(i + 1) for i in layer.path)),
                ) if layer.path else ()
        for signer in verification.signers:
            item = item.with_auth_result(_auth_result(signer, part))
        if not verification.signers:
            item = item.with_auth_result(AuthResult("smime", AuthStatus.PERMERROR, "no-signers"))
        return item.annotate("smime.verify", verification.reason)


def verify_message(item: MailItem, ctx: Context, trust: TrustAnchors, *, from_match: bool
                   ) -> tuple[SignedLayer, Verification] | None:
    """Verify the message's top-level signature; ``None`` when it has none.

    Raises:
        MalformedMessageError: the signature layer or its CMS structure is malformed.
    """
    layer = find_signed(item.message)
    if layer is None:
        return None
    addresses = None
    if from_match:
        field = item.message.headers.get("From")
        addresses = parse_addresses(field) if field is not None else []
    return layer, verify(layer.cms, content=layer.content, trust=trust, at=_now(ctx),
                         from_addresses=addresses, max_size=ctx.limits.max_message_size)


def _auth_result(signer: SignerResult, part: tuple[tuple[str, str], ...]) -> AuthResult:
    if signer.valid:
        status = AuthStatus.PASS
    elif signer.status in _FAIL:
        status = AuthStatus.FAIL
    elif signer.status in _POLICY:
        status = AuthStatus.POLICY
    else:
        status = AuthStatus.PERMERROR
    properties = (("body.smime-identifier", signer.email),) if signer.email else ()
    return AuthResult("smime", status, signer.status.value, (*properties, *part))


def _passphrase(options: Options) -> bytes | None:
    return read_passphrase(options.optional_path("passphrase_file"))


def build_sign(options: Options) -> SmimeSign:
    """Options: ``cert``, ``key``, ``chain`` (list), ``opaque``, ``passphrase_file``,
    ``pss``, ``digest``."""
    certificate = load_certificates(options.path("cert"))[0]
    key = load_private_key(options.path("key"), _passphrase(options))
    chain = tuple(all_certificates(options.path_list("chain")))
    digest = options.choice("digest", tuple(DIGESTS), "sha256")
    try:
        signer = Signer(certificate, key, chain, digest=digest,
                        pss=options.boolean("pss", False))
    except SigningError as exc:
        raise options.error("key", str(exc)) from None
    return SmimeSign(signer, opaque=options.boolean("opaque", False))


def build_encrypt(options: Options) -> SmimeEncrypt:
    """Options: ``recipient_cert`` (list), ``cipher``, ``oaep``, ``cert_dir``, ``on_missing``."""
    recipients = tuple(all_certificates(options.path_list("recipient_cert")))
    if not all(isinstance(c.public_key(), rsa.RSAPublicKey) for c in recipients):
        raise options.error("recipient_cert", "only RSA recipient certificates are supported")
    folder = options.optional_path("cert_dir")
    store = DirectoryCertStore.load(folder) if folder is not None else None
    if not recipients and store is None:
        raise options.error("recipient_cert", "is required (or cert_dir)")
    return SmimeEncrypt(recipients, cipher=options.choice("cipher", tuple(CONTENT_CIPHERS),
                                                           DEFAULT_CIPHER),
                        oaep=options.boolean("oaep", False), store=store,
                        on_missing=options.choice("on_missing", ("reject", "pass"), "reject"))


def build_decrypt(options: Options) -> SmimeDecrypt:
    """Options: ``cert`` and ``key`` and/or ``cert_dir``, ``passphrase_file``, ``on_failure``
    (``pass``, the old name, and ``flag``, pgp-decrypt's name, mean ``deliver``), ``flag``."""
    passphrase = _passphrase(options)
    identities: list[Identity] = []
    cert_path = options.optional_path("cert")
    key_path = options.optional_path("key")
    if (cert_path is None) != (key_path is None):
        raise options.error("key" if key_path is None else "cert", "cert and key go together")
    if cert_path is not None and key_path is not None:
        key = load_private_key(key_path, passphrase)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise options.error("key", "only RSA keys can decrypt")
        certificate = load_certificates(cert_path)[0]
        if not key_belongs_to(key, certificate):
            raise options.error("key", "the private key does not belong to the certificate")
        identities.append(Identity(certificate, key))
    folder = options.optional_path("cert_dir")
    if folder is not None:
        store = DirectoryCertStore.load(folder, passphrase=passphrase)
        identities += [Identity(e.certificate, e.key) for e in store.with_keys()
                       if isinstance(e.key, rsa.RSAPrivateKey)]
    if not identities:
        raise options.error("cert", "is required (or cert_dir)")
    on_failure = options.choice("on_failure", (*_ON_FAILURE, "pass", "flag"), "deliver")
    return SmimeDecrypt(tuple(identities),
                        on_failure="deliver" if on_failure in ("pass", "flag") else on_failure,
                        flag=options.boolean("flag", True))


def build_verify(options: Options) -> SmimeVerify:
    """Options: ``trust`` (list of CA certificate files), ``from_match`` (default true)."""
    roots = tuple(all_certificates(options.path_list("trust")))
    if not roots:
        raise options.error("trust", "at least one trust anchor is required")
    return SmimeVerify(TrustAnchors(roots), from_match=options.boolean("from_match", True))


