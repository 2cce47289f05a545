"""GnuPG status lines (``[GNUPG:] KEYWORD args``): the only output mailroute decides from.

gpg's human-readable text is never parsed. Every verdict below is a pure function of the
status lines of one gpg run, so it can be tested with recorded sequences as well as live.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator

from mailroute.records import record

__all__ = [
    "DecryptionVerdict",
    "SignatureCheck",
    "SignatureStatus",
    "StatusLine",
    "StatusLog",
    "decryption_verdict",
    "signature_checks",
]

# ERRSIG return code 9 is GPG_ERR_NO_PUBKEY (doc/DETAILS in the GnuPG sources).
_ERR_NO_PUBKEY = "9"
_SIGNATURE_OPENERS = frozenset({"GOODSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "BADSIG", "ERRSIG"})


@record(frozen=True)
class StatusLine:
    """One status line: the keyword and its space-separated arguments."""

    keyword: str
    args: tuple[str, ...] = ()

    def arg(self, index: int) -> str:
        """Argument ``index``, or ``""`` when gpg gave fewer."""
        return self.args[index] if index < len(self.args) else ""


@record(frozen=True)
class StatusLog:
    """The status lines of one gpg run, in order."""

    lines: tuple[StatusLine, ...] = ()

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> StatusLog:
        """Build from ``(keyword, rest-of-line)`` pairs as python-gnupg reports them."""
        return cls(tuple(StatusLine(k, tuple(v.split())) for k, v in pairs))

    @classmethod
    def parse(cls, text: str) -> StatusLog:
        """Build from raw output; only lines starting with ``[GNUPG:] `` count."""
        pairs = []
        for line in text.splitlines():
            if line.startswith("[GNUPG:] "):
                keyword, _, rest = line[9:].partition(" ")
                pairs.append((keyword, rest))
        return cls.of(pairs)

    def __iter__(self) -> Iterator[StatusLine]:
        return iter(self.lines)

    def has(self, keyword: str) -> bool:
        """True when any line has ``keyword``."""
        return any(line.keyword == keyword for line in self.lines)

    def first(self, keyword: str) -> StatusLine | None:
        """The first line with ``keyword``."""
        for line in self.lines:
            if line.keyword == keyword:
                return line
        return None

    def count(self, keyword: str) -> int:
        """How many lines have ``keyword``."""
        return sum(1 for line in self.lines if line.keyword == keyword)


class DecryptionVerdict(enum.StrEnum):
    """Why a decryption was or was not accepted."""

    OK = "ok"
    NO_INTEGRITY = "no-integrity"
    NO_SECRET_KEY = "no-secret-key"  # noqa: S105 - a verdict name
    FAILED = "failed"


def decryption_verdict(log: StatusLog) -> DecryptionVerdict:
    """Accept only ``DECRYPTION_OKAY`` together with an integrity check.

    The integrity check is ``GOODMDC`` (SEIPD v1) or an AEAD algorithm in ``DECRYPTION_INFO``.
    gpg prints the plaintext of a message without MDC *before* it reports the failure, and
    with ``--ignore-mdc-error`` it even says ``DECRYPTION_OKAY``: both come out here as
    ``NO_INTEGRITY``.
    """
    info = log.first("DECRYPTION_INFO")
    aead = info is not None and info.arg(2) not in ("", "0")
    okay = log.has("DECRYPTION_OKAY") and not log.has("DECRYPTION_FAILED")
    if log.has("BADMDC") or log.count("PLAINTEXT") > 1:
        return DecryptionVerdict.FAILED
    if not okay:
        if info is not None and info.arg(0) in ("", "0") and not aead:
            return DecryptionVerdict.NO_INTEGRITY
        if log.has("NO_SECKEY") and not log.has("DECRYPTION_KEY"):
            return DecryptionVerdict.NO_SECRET_KEY
        return DecryptionVerdict.FAILED
    if not (log.has("GOODMDC") or aead):
        return DecryptionVerdict.NO_INTEGRITY
    return DecryptionVerdict.OK


class SignatureStatus(enum.StrEnum):
    """The outcome of checking one signature."""

    GOOD = "good"
    BAD = "bad"
    NO_PUBLIC_KEY = "no-public-key"
    EXPIRED_SIGNATURE = "expired-signature"
    EXPIRED_KEY = "expired-key"
    REVOKED_KEY = "revoked-key"
    ERROR = "error"


@record(frozen=True)
class SignatureCheck:
    """One signature as gpg reported it.

    Attributes:
        status: the verdict; only ``GOOD`` with a fingerprint is a valid signature.
        key_id: the issuer key id (or fingerprint) gpg named.
        fingerprint: the signing (sub)key's fingerprint from ``VALIDSIG``.
        primary_fingerprint: the primary key's fingerprint from ``VALIDSIG``.
        hash_algo: the OpenPGP hash algorithm number, when known.
    """

    status: SignatureStatus
    key_id: str = ""
    fingerprint: str | None = None
    primary_fingerprint: str | None = None
    hash_algo: int | None = None

    @property
    def valid(self) -> bool:
        """True for a good signature whose key gpg identified by fingerprint."""
        return self.status is SignatureStatus.GOOD and self.fingerprint is not None


def _opener_status(line: StatusLine) -> SignatureStatus:
    if line.keyword == "ERRSIG":
        return (SignatureStatus.NO_PUBLIC_KEY if line.arg(5) == _ERR_NO_PUBKEY
                else SignatureStatus.ERROR)
    return {"GOODSIG": SignatureStatus.GOOD, "EXPSIG": SignatureStatus.EXPIRED_SIGNATURE,
            "EXPKEYSIG": SignatureStatus.EXPIRED_KEY, "REVKEYSIG": SignatureStatus.REVOKED_KEY,
            }.get(line.keyword, SignatureStatus.BAD)


def signature_checks(log: StatusLog) -> tuple[SignatureCheck, ...]:
    """Every signature in a verify or decrypt run, one entry per ``NEWSIG`` group."""
    groups: list[list[StatusLine]] = []
    open_group = False
    for line in log:
        if line.keyword == "NEWSIG":
            groups.append([])
            open_group = True
        elif line.keyword in _SIGNATURE_OPENERS:
            if not open_group:
                groups.append([])
            groups[-1].append(line)
            open_group = False
        elif line.keyword == "VALIDSIG" and groups:
            groups[-1].append(line)
    checks = []
    for group in groups:
        opener = next((line for line in group if line.keyword in _SIGNATURE_OPENERS), None)
        if opener is None:
            checks.append(SignatureCheck(SignatureStatus.ERROR))
            continue
        valid = next((line for line in group if line.keyword == "VALIDSIG"), None)
        status = _opener_status(opener)
        hash_text = opener.arg(2) if opener.keyword == "ERRSIG" else (
            valid.arg(7) if valid else "")
        checks.append(SignatureCheck(
            status=status, key_id=opener.arg(0),
            fingerprint=valid.arg(0) or None if valid else None,
            primary_fingerprint=(valid.arg(9) or valid.arg(0)) or None if valid else None,
            hash_algo=int(hash_text) if hash_text.isdigit() else None))
    return tuple(checks)
