"""The marker token: ``v1.<tag>.<kid>.<t>.<nonce>.<d>.<mac>`` (docs/marker.md, "Format").

Parsing is bounded and purely syntactic: a value longer than :data:`MAX_FIELD_LENGTH` is never
matched against the grammar, and a token that does not match it exactly is never handed to
the cryptography. The token holds no whitespace, so no MTA can fold it.
"""

from __future__ import annotations

import binascii
import re

from mailroute.records import record

__all__ = [
    "DIRECTION_CODES",
    "KID_PATTERN",
    "MAC_BYTES",
    "MAX_FIELD_LENGTH",
    "NONCE_BYTES",
    "TAG_PATTERN",
    "TOKEN_PATTERN",
    "VERSION",
    "Token",
    "b64url_encode",
    "format_time",
    "parse_token",
]

VERSION = "v1"
NONCE_BYTES = 12
MAC_BYTES = 32
#: Longest field value (unfolded, surrounding white space removed) that is parsed at all.
MAX_FIELD_LENGTH = 256
#: The direction letters: inbound, outbound, internal (``n``), mixed or relay (``x``).
DIRECTION_CODES = frozenset("ionx")
TAG_PATTERN = re.compile(r"[a-z2-7]{6}")
KID_PATTERN = re.compile(r"[a-z0-9]{1,8}")
#: The gateway's full-match grammar of a token.
TOKEN_PATTERN = re.compile(
    r"v1\.(?P<tag>[a-z2-7]{6})\.(?P<kid>[a-z0-9]{1,8})\.(?P<t>[0-9]{10})"
    r"\.(?P<nonce>[A-Za-z0-9_-]{16})\.(?P<d>[ionx])\.(?P<mac>[A-Za-z0-9_-]{43})")


@record(frozen=True)
class Token:
    """The visible fields of a marker, already checked against the grammar.

    Attributes:
        tag: the deployment tag (6 characters ``a-z2-7``).
        kid: the key id (1-8 characters ``a-z0-9``).
        t: the issue time as written (10 decimal digits).
        nonce: 12 random bytes, base64url without padding (16 characters).
        d: the direction letter at minting.
        mac: the HMAC-SHA-256, base64url without padding (43 characters).
    """

    tag: str
    kid: str
    t: str
    nonce: str
    d: str
    mac: str

    @property
    def issued_at(self) -> int:
        """The issue time in UNIX seconds."""
        return int(self.t)

    def to_str(self) -> str:
        """The token as it appears in the header field."""
        return ".".join((VERSION, self.tag, self.kid, self.t, self.nonce, self.d, self.mac))


def parse_token(value: str) -> Token | None:
    """The token in a field value, or ``None`` when it is oversize or not exactly one token.

    ``value`` is the unfolded field value; surrounding spaces and tabs are ignored, anything
    else (a second token, a comment, a trailing character) makes the value malformed.
    """
    if len(value) > MAX_FIELD_LENGTH:
        return None
    match = TOKEN_PATTERN.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    return Token(tag=match["tag"], kid=match["kid"], t=match["t"], nonce=match["nonce"],
                 d=match["d"], mac=match["mac"])


def format_time(now: int) -> str:
    """UNIX seconds as the 10-digit ``t`` field.

    Raises:
        ValueError: ``now`` is negative or needs more than 10 digits.
    """
    if not 0 <= now < 10**10:
        raise ValueError("time outside the range of the t field")
    return f"{now:010d}"


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def b64url_encode(data: bytes) -> str:
    """base64url without padding."""
    encoded = binascii.b2a_base64(data, newline=False).rstrip(b"=")
    return encoded.translate(_URL_SAFE).decode("ascii")
