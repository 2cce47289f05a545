"""DKIM verification of every signature (RFC 6376, RFC 8301, RFC 8463).

Stricter than dkimpy where it matters: rsa-sha1 and RSA keys under 1024 bits fail, a body
longer than ``l=`` fails unless allowed, the number of signatures and of ``h=`` entries is
capped, and a DNS failure is ``temperror``, never ``fail``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

from mailroute.dkim import canon
from mailroute.dkim.digits import decimal
from mailroute.dkim.keys import KeyRecord, parse_key_record, parse_tags
from mailroute.dkim.names import domain_ok, selector_ok
from mailroute.dkim.sign import body_of, signed_header_data
from mailroute.errors import MailrouteError
from mailroute.mime.message import Message
from mailroute.records import record
from mailroute.results import AuthResult, AuthStatus

__all__ = ["SignatureResult", "VerifyOptions", "safe_token", "verify_message"]

log = logging.getLogger("mailroute.dkim")
TxtLookup = Callable[[str], Sequence[str]]
_SAFE = re.compile(r"[A-Za-z0-9._@+=/-]+")


@record(frozen=True, kw_only=True)
class VerifyOptions:
    """Limits and choices of the verifier.

    Attributes:
        max_signatures: signatures beyond this many (top first) are not evaluated.
        max_header_entries: a signature with a longer ``h=`` list is a ``permerror``.
        allow_length: accept ``l=`` with content beyond it (default: ``fail``).
        min_rsa_bits: smaller RSA keys ``fail`` (RFC 8301: 1024).
    """

    max_signatures: int = 8
    max_header_entries: int = 64
    allow_length: bool = False
    min_rsa_bits: int = 1024


@record(frozen=True)
class SignatureResult:
    """The verdict on one DKIM-Signature field."""

    status: AuthStatus
    reason: str
    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    identity: str = ""
    b_prefix: str = ""

    @property
    def valid(self) -> bool:
        """True for ``pass``."""
        return self.status is AuthStatus.PASS

    def auth_result(self) -> AuthResult:
        """The RFC 8601 ``dkim`` entry (values that are not plain tokens are left out)."""
        props = [(name, value) for name, value in (
            ("header.d", self.domain), ("header.i", self.identity),
            ("header.s", self.selector), ("header.a", self.algorithm),
            ("header.b", self.b_prefix)) if value and safe_token(value)]
        return AuthResult("dkim", self.status, self.reason, tuple(props))


def safe_token(value: str) -> bool:
    """True when ``value`` may be written unquoted into Authentication-Results."""
    return bool(_SAFE.fullmatch(value)) and len(value) <= 255


class _Verdict(Exception):
    def __init__(self, status: AuthStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


DEFAULT_VERIFY_OPTIONS = VerifyOptions()


def verify_message(message: Message, lookup: TxtLookup | None, *, now: float,
                   options: VerifyOptions = DEFAULT_VERIFY_OPTIONS) -> list[SignatureResult]:
    """One result per DKIM-Signature field, top first (an empty list: unsigned)."""
    fields = [f for f in message.headers if f.lower_name == "dkim-signature"]
    if len(fields) > options.max_signatures:
        log.info("dkim: %d signatures, only the first %d evaluated", len(fields),
                 options.max_signatures)
    state = _State(message, lookup, now, options)
    return [state.verify_one(f.raw, f.raw_value) for f in fields[:options.max_signatures]]


class _State:
    def __init__(self, message: Message, lookup: TxtLookup | None, now: float,
                 options: VerifyOptions) -> None:
        self.message = message
        self.lookup = lookup
        self.now = now
        self.options = options
        self.bodies: dict[bool, bytes] = {}
        self.keys: dict[str, KeyRecord | _Verdict] = {}

    def body(self, relaxed: bool) -> bytes:
        if relaxed not in self.bodies:
            self.bodies[relaxed] = canon.body(body_of(self.message), relaxed)
        return self.bodies[relaxed]

    def verify_one(self, raw: bytes, raw_value: bytes) -> SignatureResult:
        try:
            tags = parse_tags(raw_value.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return SignatureResult(AuthStatus.PERMERROR, "malformed signature")
        ident = dict(domain=tags.get("d", "").lower(), selector=tags.get("s", ""),
                     algorithm=tags.get("a", ""), identity=tags.get("i", ""),
                     b_prefix=tags.get("b", "")[:8])
        try:
            self.check(raw, tags)
        except _Verdict as verdict:
            return SignatureResult(verdict.status, verdict.reason, **ident)
        return SignatureResult(AuthStatus.PASS, "", **ident)

    def check(self, raw: bytes, tags: dict[str, str]) -> None:
        perm = AuthStatus.PERMERROR
        for required in ("v", "a", "b", "bh", "d", "h", "s"):
            if required not in tags:
                raise _Verdict(perm, f"signature lacks {required}=")
        if tags["v"] != "1":
            raise _Verdict(perm, "unknown signature version")
        algorithm = tags["a"].lower()
        if algorithm == "rsa-sha1":
            raise _Verdict(AuthStatus.FAIL, "rsa-sha1 is not accepted (RFC 8301)")
        if algorithm not in ("rsa-sha256", "ed25519-sha256"):
            raise _Verdict(perm, "unknown signing algorithm")
        header_relaxed, body_relaxed = _canonicalization(tags.get("c", "simple/simple"))
        names = [n.strip().lower() for n in tags["h"].split(":")]
        if len(names) > self.options.max_header_entries:
            raise _Verdict(perm, "too many h= entries")
        if "from" not in names:
            raise _Verdict(perm, "From is not signed")
        domain, selector = tags["d"].lower(), tags["s"]
        if not domain_ok(domain) or not selector_ok(selector):
            raise _Verdict(perm, "invalid d= or s=")
        identity = tags.get("i", "@" + domain).lower()
        id_domain = identity.rpartition("@")[2]
        if "@" not in identity or not (id_domain == domain or id_domain.endswith("." + domain)):
            raise _Verdict(perm, "i= is not within d=")
        if "x" in tags:
            expires = decimal(tags["x"], 12)  # RFC 6376 3.5: 1*12DIGIT
            if expires is None:
                raise _Verdict(perm, "malformed x=")
            if expires < self.now:
                raise _Verdict(AuthStatus.FAIL, "signature expired")
        self.check_body(tags, body_relaxed)
        record = self.key_record(f"{selector}._domainkey.{domain}")
        self.check_key(record, algorithm, domain, id_domain)
        data = signed_header_data(self.message.headers, names, header_relaxed)
        data += canon.header(canon.strip_b_value(raw), header_relaxed)[:-2]
        try:
            signature = base64.b64decode(tags["b"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _Verdict(perm, "b= is not base64") from exc
        digest = hashlib.sha256(data).digest()
        try:
            if isinstance(record.key, rsa.RSAPublicKey):
                record.key.verify(signature, digest, padding.PKCS1v15(),
                                  utils.Prehashed(hashes.SHA256()))
            elif isinstance(record.key, ed25519.Ed25519PublicKey):
                record.key.verify(signature, digest)
        except InvalidSignature as exc:
            raise _Verdict(AuthStatus.FAIL, "signature did not verify") from exc

    def check_body(self, tags: dict[str, str], relaxed: bool) -> None:
        body = self.body(relaxed)
        if "l" in tags:
            length = decimal(tags["l"], 76)  # RFC 6376 3.5: 1*76DIGIT
            if length is None:
                raise _Verdict(AuthStatus.PERMERROR, "malformed l=")
            if length > len(body):
                raise _Verdict(AuthStatus.FAIL, "body shorter than l=")
            if length < len(body) and not self.options.allow_length:
                raise _Verdict(AuthStatus.FAIL, "content beyond l=")
            body = body[:length]
        try:
            expected = base64.b64decode(tags["bh"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _Verdict(AuthStatus.PERMERROR, "bh= is not base64") from exc
        if not hmac.compare_digest(hashlib.sha256(body).digest(), expected):
            raise _Verdict(AuthStatus.FAIL, "body hash did not verify")

    def key_record(self, name: str) -> KeyRecord:
        if name not in self.keys:
            self.keys[name] = self.fetch(name)
        found = self.keys[name]
        if isinstance(found, _Verdict):
            raise found
        return found

    def fetch(self, name: str) -> KeyRecord | _Verdict:
        if self.lookup is None:
            return _Verdict(AuthStatus.TEMPERROR, "no DNS resolver configured")
        try:
            records = list(self.lookup(name))
        except MailrouteError as error:
            status = AuthStatus.TEMPERROR if error.retryable else AuthStatus.PERMERROR
            return _Verdict(status, "key lookup failed")
        except (OSError, TimeoutError):
            return _Verdict(AuthStatus.TEMPERROR, "key lookup failed")
        if not records:
            return _Verdict(AuthStatus.PERMERROR, "no key record")
        for text in records:
            try:
                return parse_key_record(text)
            except ValueError:
                continue
        return _Verdict(AuthStatus.PERMERROR, "unusable key record")

    def check_key(self, record: KeyRecord, algorithm: str, domain: str, id_domain: str) -> None:
        perm = AuthStatus.PERMERROR
        if record.key is None:
            raise _Verdict(perm, "key revoked")
        if algorithm.split("-")[0] != record.key_type:
            raise _Verdict(perm, "key type does not match a=")
        if record.hash_algorithms and "sha256" not in record.hash_algorithms:
            raise _Verdict(perm, "key record excludes sha256")
        if "s" in record.flags and id_domain != domain:
            raise _Verdict(perm, "key requires i= domain to equal d=")
        if record.key_type == "rsa" and record.key_bits < self.options.min_rsa_bits:
            raise _Verdict(AuthStatus.FAIL, f"RSA key under {self.options.min_rsa_bits} bits")


def _canonicalization(value: str) -> tuple[bool, bool]:
    header, _, body = value.lower().partition("/")
    body = body or "simple"
    if header not in ("simple", "relaxed") or body not in ("simple", "relaxed"):
        raise _Verdict(AuthStatus.PERMERROR, "unknown canonicalization")
    return header == "relaxed", body == "relaxed"
