"""The policy-driven crypto filters: ``harvest-keys``, ``sign-by-policy``, ``encrypt-by-policy``.

They find the encryption policy and the key directory in the context (the policy file's
``[crypto]`` section; :data:`mailroute.policy.CRYPTO_POLICY_KEY`), decide with
:func:`~mailroute.cryptopolicy.decide_crypto` and apply the plan with the S/MIME and OpenPGP
engines.

``harvest-keys`` stores a correspondent's certificate only from a signature that verified,
chains to a configured trust anchor and names the From address (as ``harvested``, with the
``SMIMECapabilities`` it advertised); an Autocrypt key only from DMARC-aligned mail (the
``dkim-verify`` filter's ``dmarc.aligned`` annotation is ``yes``, or its ``dmarc.result`` is
``pass``) whose From is the Autocrypt ``addr``. A forged signature, an untrusted chain or
unaligned mail harvests nothing.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from mailroute.config.options import Options
from mailroute.cryptopolicy import Action, CryptoPlan, CryptoPolicy, Method, decide_crypto
from mailroute.cryptopolicy.decide import TRIGGER_ANNOTATION, subject_text, without_tag
from mailroute.cryptopolicy.model import DIRECTORY_KEY, POLICY_KEY
from mailroute.errors import (
    ConfigError,
    MailrouteError,
    MalformedMessageError,
    MessageError,
    SigningError,
    TemporaryError,
)
from mailroute.filters.smime import SmimeEncrypt, SmimeSign, verify_message
from mailroute.item import Context, MailItem
from mailroute.keys.certstore import DirectoryCertStore, read_passphrase
from mailroute.keys.directory import (
    KeyDirectory,
    KeyKind,
    KeyRecord,
    Trust,
    fingerprint_of,
)
from mailroute.mime.headers import parse_addresses
from mailroute.records import record
from mailroute.results import Outcome
from mailroute.smime import Signer, SignerResult, TrustAnchors

__all__ = ["EncryptByPolicy", "HarvestKeys", "SignByPolicy", "build_encrypt", "build_harvest",
           "build_sign", "harvest_smime", "parse_autocrypt", "pgp_records", "smime_record"]

log = logging.getLogger(__name__)

MAX_AUTOCRYPT_KEY = 64 * 1024
_GCM_ORDER = ("aes-256-gcm", "aes-128-gcm")


def _crypto(ctx: Context) -> tuple[CryptoPolicy, KeyDirectory]:
    policy = ctx.keys.get(POLICY_KEY)
    directory = ctx.keys.get(DIRECTORY_KEY)
    if not isinstance(policy, CryptoPolicy) or not isinstance(directory, KeyDirectory):
        raise ConfigError("the crypto filters need the policy's [crypto] section")
    return policy, directory


def _stamp(when: datetime) -> float:
    return when.timestamp()


# -- harvesting --------------------------------------------------------------------------------


def _encryption_capable(cert: x509.Certificate) -> bool:
    """RSA (what the encryptor supports) and a key usage that allows key transport."""
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        return False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return bool(usage.key_encipherment)


def harvest_smime(signer: SignerResult, *, trust: TrustAnchors, at: datetime
                  ) -> tuple[KeyRecord, ...]:
    """The records a *valid* signer yields: its certificate, and the certificate its
    encryption key preference names when that one chains to the anchors too. Nothing for a
    signer that is not valid (forged, untrusted, expired, From mismatch)."""
    if not signer.valid or signer.certificate is None:
        return ()
    found: list[tuple[x509.Certificate, bool]] = []
    preferred = signer.encryption_certificate
    if (preferred is not None and preferred != signer.certificate
            and trust.check(preferred, [signer.certificate], at).status == "valid"):
        found.append((preferred, True))
    found.append((signer.certificate, preferred is None or preferred == signer.certificate))
    records = []
    for cert, is_preferred in found:
        if _encryption_capable(cert):
            records += [smime_record(cert, address, Trust.HARVESTED, source="smime-signature",
                                     capabilities=signer.capabilities, preferred=is_preferred)
                        for address in sorted(set(signer.emails).intersection(_emails(cert)))]
    return tuple(records)


def smime_record(cert: x509.Certificate, address: str, trust: Trust, *, source: str,
                 capabilities: tuple[str, ...] = (), preferred: bool = False) -> KeyRecord:
    """A directory record of an S/MIME certificate for ``address``."""
    der = cert.public_bytes(Encoding.DER)
    return KeyRecord(address=address, kind=KeyKind.SMIME,
                     fingerprint=fingerprint_of(KeyKind.SMIME, der), data=der, trust=trust,
                     capabilities=capabilities, preferred=preferred, source=source,
                     not_before=_stamp(cert.not_valid_before_utc),
                     not_after=_stamp(cert.not_valid_after_utc))


def _emails(cert: x509.Certificate) -> tuple[str, ...]:
    from mailroute.keys.addresses import certificate_emails
    return tuple(e.lower() for e in certificate_emails(cert))


_AUTOCRYPT_ATTR = re.compile(r"\s*([A-Za-z0-9_-]+)\s*=\s*(.*)", re.S)


def parse_autocrypt(value: str) -> tuple[str, bytes] | None:
    """``(addr, keydata)`` of an Autocrypt header value, or ``None`` when it is not one we
    may use (an unknown critical attribute, no addr or keydata, bad base64, too large)."""
    attrs: dict[str, str] = {}
    for piece in value.split(";"):
        match = _AUTOCRYPT_ATTR.fullmatch(piece)
        if match is None:
            return None
        attrs[match.group(1).lower()] = match.group(2).strip()
    if set(attrs) - {"addr", "prefer-encrypt", "keydata"} - {a for a in attrs
                                                             if a.startswith("_")}:
        return None  # unknown critical attribute: the header must be ignored
    addr, keydata = attrs.get("addr", ""), re.sub(r"\s+", "", attrs.get("keydata", ""))
    if "@" not in addr or not keydata or len(keydata) > MAX_AUTOCRYPT_KEY * 4 // 3 + 4:
        return None
    try:
        data = base64.b64decode(keydata, validate=True)
    except (binascii.Error, ValueError):
        return None
    return addr.strip().lower(), data


@record(frozen=True)
class HarvestKeys:
    """Learn correspondents' keys from verified inbound mail (see the module text).

    The message is never held up: with the key directory unavailable it goes on, annotated
    ``harvest-keys = directory unavailable``."""

    trust: TrustAnchors
    autocrypt: bool = True
    name: str = "harvest-keys"

    def apply(self, item: MailItem, ctx: Context) -> MailItem:
        """Offer what the message proves to the key directory; the message is unchanged."""
        _, directory = _crypto(ctx)
        now = ctx.clock()
        results: list[str] = []
        try:
            found = verify_message(item, ctx, self.trust, from_match=True)
        except MalformedMessageError:
            found = None
        at = datetime.fromtimestamp(now, UTC)
        try:
            if found is not None:
                for signer in found[1].signers:
                    for record in harvest_smime(signer, trust=self.trust, at=at):
                        outcome = directory.offer(record, now)
                        results.append(f"smime {record.address} {outcome.value}")
                        log.info("harvest-keys: S/MIME certificate %s for %s: %s",
                                 record.fingerprint[:16], record.address, outcome.value)
            if self.autocrypt:
                results += self._autocrypt(item, directory, now)
        except TemporaryError as error:
            # learning a key is not worth deferring the mail that taught it
            log.warning("harvest-keys: %s; nothing learnt from this message", error)
            results.append("directory unavailable")
        return item.annotate("harvest-keys", "; ".join(results) or "none")

    def _autocrypt(self, item: MailItem, directory: KeyDirectory, now: float) -> list[str]:
        field = item.message.headers.get("Autocrypt")
        if field is None:
            return []
        if item.annotation("dmarc.aligned") != "yes" and item.annotation("dmarc.result") != "pass":
            return ["autocrypt ignored: not DMARC-aligned"]
        parsed = parse_autocrypt(field.value)
        from_field = item.message.headers.get("From")
        try:
            senders = parse_addresses(from_field) if from_field is not None else ()
        except MessageError:
            senders = ()
        if parsed is None or list(senders) != [parsed[0]]:
            return ["autocrypt ignored: unusable or not the From address"]
        found = pgp_records(parsed[1], Trust.HARVESTED, source="autocrypt",
                            address=parsed[0])
        if len(found) != 1:
            return ["autocrypt ignored: no usable encryption key for addr"]
        record = found[0]
        outcome = directory.offer(record, now)
        return [f"autocrypt {record.address} {outcome.value}"]


def pgp_records(data: bytes, trust: Trust, *, source: str, address: str | None = None
                ) -> tuple[KeyRecord, ...]:
    """Directory records of the usable encryption-capable OpenPGP keys in ``data`` (one per
    key and user ID address, or only for ``address``), read by gpg in a scratch home that
    is removed afterwards. Unreadable data gives no records."""
    from mailroute.pgp.store import KeyStore
    home = Path(tempfile.mkdtemp(prefix="mailroute-keys-"))
    try:
        store = KeyStore(home, timeout=20.0)
        store.import_keys(data)
        keys = [k for k in store.public_keys() if k.usable and "E" in k.capabilities]
        store.close()
    except (MailrouteError, OSError):
        return ()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return tuple(KeyRecord(address=found, kind=KeyKind.PGP, fingerprint=key.fingerprint,
                           data=data, trust=trust, source=source,
                           not_before=float(key.created))
                 for key in keys for found in key.addresses
                 if address is None or found == address)


# -- applying the plan -------------------------------------------------------------------------


def _without_trigger(item: MailItem, plan: CryptoPlan) -> MailItem:
    """The message with an accepted trigger taken out (subject tag, header), noted for the
    filters after this one."""
    if not plan.triggered:
        return item
    message = item.message
    if plan.remove_subject_tag:
        subject = subject_text(item)
        if subject is not None:
            message = message.replace_header("Subject",
                                             without_tag(subject, plan.remove_subject_tag))
    if plan.remove_header:
        message = message.without_header(plan.remove_header)
    return item.evolve(message=message).annotate(TRIGGER_ANNOTATION, "yes")


def _refusal(plan: CryptoPlan) -> Outcome | None:
    refused = plan.refused()
    if not refused:
        return None
    names = ", ".join(p.recipient for p in refused[:5])
    if any(p.action is Action.REJECT for p in refused):
        return Outcome.reject("5.7.1", f"encryption is required for {names} and no usable "
                                       "key is known; the message was not sent", 550)
    reason = f"held: encryption required for {names}, no usable key"
    if any(p.action is Action.NOTIFY for p in refused):
        return Outcome.quarantine(reason, notify=(
            f"The encryption policy requires encryption for {names}, and no usable key "
            "is known for them yet."))
    return Outcome.quarantine(reason)


def _common_cipher(ciphers: set[str]) -> str:
    """One cipher every recipient of a shared copy reads: GCM only if all advertised it."""
    if len(ciphers) == 1:
        return next(iter(ciphers))
    gcm = [c for c in _GCM_ORDER if c in ciphers]
    if len(gcm) == len(ciphers):
        return "aes-128-gcm"  # all read GCM, some only the 128-bit kind
    return "aes-256-cbc"


@record(frozen=True)
class EncryptByPolicy:
    """Encrypt outbound mail as the plan says; refuse or hold what it refuses.

    The plan's groups are copies to be sent separately. Recipients that all get encryption by
    the same method share one encrypted message (the cipher every recipient reads). When
    some recipients get encryption and others do not, ``split`` (the default) asks the
    adapter for one copy per group (:meth:`~mailroute.results.Outcome.split_by`: ``mailroute
    pipe`` does it; an adapter that cannot answers 451). With ``split = false`` (the milter)
    one message goes out: when some recipients must get encryption (mandatory) and others
    cannot, it is refused (5.7.1, with the text saying so) rather than sent in clear; when
    the mixture is only opportunistic, it goes in clear with ``crypto.encrypt = downgraded``
    (see docs/encryption-policy.md).
    """

    oaep: bool = False
    split: bool = True
    pgp_home: Path | None = None
    name: str = "encrypt-by-policy"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Decide and encrypt."""
        policy, directory = _crypto(ctx)
        plan = decide_crypto(item, directory, policy, now=ctx.clock())
        item = _without_trigger(item, plan)
        refusal = _refusal(plan)
        if refusal is not None:
            return refusal
        encrypt = [p for p in plan.recipients if p.action is Action.ENCRYPT]
        if not encrypt:
            return item.annotate("crypto.encrypt", "none")
        methods = {p.method for p in encrypt}
        if len(encrypt) < len(plan.recipients) or len(methods) > 1:
            if self.split and len(plan.groups) > 1:
                log.info("encrypt-by-policy: %d copies for %d recipients", len(plan.groups),
                         len(plan.recipients))
                return Outcome.split_by(tuple(g.recipients for g in plan.groups))
            if any(p.mandatory for p in plan.recipients):
                return Outcome.reject("5.7.1", "encryption is required for some recipients "
                                               "of this message and not possible for the "
                                               "others; send to them separately", 550)
            log.info("encrypt-by-policy: recipients need different copies; sent in clear")
            return item.annotate("crypto.encrypt", "downgraded")
        records = [directory.get(k) for p in encrypt for k in p.keys]
        if any(r is None for r in records):
            return Outcome.tempfail("4.7.0", "a key changed during processing; try again")
        keys = [r for r in records if r is not None]
        if methods == {Method.PGP}:
            return self._pgp(item, ctx, keys)
        certificates = tuple(x509.load_der_x509_certificate(r.data) for r in keys)
        cipher = _common_cipher({p.cipher for p in encrypt})
        result = SmimeEncrypt(certificates, cipher=cipher, oaep=self.oaep).apply(item, ctx)
        if isinstance(result, Outcome):
            return result
        return result.annotate("crypto.encrypt", f"smime {cipher}")

    def _pgp(self, item: MailItem, ctx: Context, keys: list[KeyRecord]) -> MailItem | Outcome:
        if self.pgp_home is None:
            log.warning("encrypt-by-policy: a PGP recipient but no gnupghome configured")
            return Outcome.tempfail("4.7.0", "OpenPGP encryption is not configured")
        from mailroute.filters.pgp import PgpEncryptFilter
        from mailroute.pgp.store import KeyStore, init_home
        store = KeyStore(init_home(self.pgp_home))
        for key in keys:
            store.import_keys(key.data)
        result = PgpEncryptFilter(store, tuple(r.fingerprint for r in keys)).apply(item, ctx)
        if isinstance(result, Outcome):
            return result
        return result.annotate("crypto.encrypt", "pgp")


@record(frozen=True)
class SignByPolicy:
    """Sign outbound mail of authenticated internal senders whose rules say ``always``:
    S/MIME with the sender's own certificate and key from ``cert_dir`` (issuing CA
    certificates there go into the signature), or PGP/MIME with his secret key in
    ``gnupghome`` when the recipients' method is PGP. Run it before ``encrypt-by-policy``
    (sign, then encrypt). Recipients that need different signatures are split as
    ``encrypt-by-policy`` splits them."""

    store: DirectoryCertStore | None
    on_missing_key: str = "pass"
    pgp_home: Path | None = None
    split: bool = True
    name: str = "sign-by-policy"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Decide and sign."""
        policy, directory = _crypto(ctx)
        plan = decide_crypto(item, directory, policy, now=ctx.clock())
        item = _without_trigger(item, plan)
        methods = {p.method for p in plan.recipients if p.sign}
        if not methods:
            return item.annotate("crypto.sign", "none")
        if len(methods) > 1 and self.split:
            return Outcome.split_by(tuple(g.recipients for g in plan.groups))
        if Method.PGP in methods and self.pgp_home is not None:
            return self._pgp(item, ctx, self.pgp_home)
        store = self.store
        held = ([e for e in store.certificates_for(item.envelope.mail_from)
                 if e.key is not None] if store is not None else [])
        if store is None or not held:
            return self._missing(item)
        entry = held[0]
        signer = Signer(entry.certificate, entry.key,  # type: ignore[arg-type]
                        _chain(entry.certificate, store))
        result = SmimeSign(signer).apply(item, ctx)
        return result.annotate("crypto.sign", "smime")

    def _pgp(self, item: MailItem, ctx: Context, home: Path) -> MailItem | Outcome:
        from mailroute.filters.pgp import PgpSignFilter
        from mailroute.pgp.store import KeyStore, init_home
        store = KeyStore(init_home(home))
        try:
            result = PgpSignFilter(store, item.envelope.mail_from).apply(item, ctx)
        except SigningError:
            return self._missing(item)
        return result.annotate("crypto.sign", "pgp")

    def _missing(self, item: MailItem) -> MailItem | Outcome:
        if self.on_missing_key == "reject":
            return Outcome.reject("5.7.1", "the policy requires a signature and the sender "
                                           "has no signing key", 550)
        return item.annotate("crypto.sign", "no-key")


def _chain(cert: x509.Certificate, store: DirectoryCertStore) -> tuple[x509.Certificate, ...]:
    """The issuing CA certificates of ``cert`` found in ``store`` (not the self-signed root),
    so that recipients can build the path to their anchor."""
    chain: list[x509.Certificate] = []
    current = cert
    while len(chain) < 8:
        issuer = next((e.certificate for e in store.entries
                       if e.certificate.subject == current.issuer
                       and e.certificate != current), None)
        if issuer is None or issuer.subject == issuer.issuer or issuer in chain:
            break
        chain.append(issuer)
        current = issuer
    return tuple(chain)


def build_harvest(options: Options) -> HarvestKeys:
    """Options: ``trust`` (CA certificate files), ``autocrypt`` (default true)."""
    from mailroute.keys.certstore import all_certificates
    roots = tuple(all_certificates(options.path_list("trust")))
    if not roots:
        raise options.error("trust", "at least one trust anchor is required")
    return HarvestKeys(TrustAnchors(roots), autocrypt=options.boolean("autocrypt", True))


def build_encrypt(options: Options) -> EncryptByPolicy:
    """Options: ``oaep`` (default false), ``gnupghome`` (for PGP recipients), ``split``
    (default true; false where the adapter cannot send several copies: the milter)."""
    return EncryptByPolicy(oaep=options.boolean("oaep", False),
                           pgp_home=options.optional_path("gnupghome"),
                           split=options.boolean("split", True))


def build_sign(options: Options) -> SignByPolicy:
    """Options: ``cert_dir`` (senders' certificates and keys), ``passphrase_file``,
    ``gnupghome`` (senders' secret PGP keys), ``on_missing_key`` (``pass`` or ``reject``),
    ``split`` (default true)."""
    passphrase = read_passphrase(options.optional_path("passphrase_file"))
    folder = options.optional_path("cert_dir")
    pgp_home = options.optional_path("gnupghome")
    if folder is None and pgp_home is None:
        raise options.error("cert_dir", "is required (or gnupghome)")
    store = (DirectoryCertStore.load(folder, passphrase=passphrase)
             if folder is not None else None)
    return SignByPolicy(store, options.choice("on_missing_key", ("pass", "reject"), "pass"),
                        pgp_home=pgp_home, split=options.boolean("split", True))
