"""What the marker's MAC binds besides its own fields (docs/marker.md, "What the MAC binds").

The MAC input is ``"mailroute-mark" 0x00`` followed by length-prefixed strings: the
version, every visible field of the token, the configured org id, the normalised Message-ID
and the sorted From addresses. Neither the envelope nor the body is bound: Exchange forks
recipients, rewrites the envelope sender and may change the body after the gateway.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from functools import lru_cache

from mailroute.digests import HmacKey
from mailroute.errors import MessageError
from mailroute.limits import DEFAULT_LIMITS, Limits
from mailroute.logs import LazyLogger
from mailroute.marker.token import b64url_encode
from mailroute.mime.headers import HeaderField, parse_addresses
from mailroute.mime.message import Message
from mailroute.records import record

__all__ = [
    "Binding",
    "binding_of",
    "compute_mac",
    "from_addresses",
    "length_prefixed",
    "mac_input",
    "normalise_message_id",
]

log = LazyLogger("mailroute.marker")
_DOMAIN_SEPARATOR = b"mailroute-mark\x00"
_LENGTH = struct.Struct(">I").pack
_WHITESPACE = frozenset(" \t\r\n")
_SPECIAL = r"\s()\"\\<>,;:@"
_PLAIN_ID = re.compile(rf"<[^{_SPECIAL}]*@[^{_SPECIAL}]*>")
# ``Display Name <local@domain>`` or ``local@domain`` in plain atoms, without quotes,
# comments, encoded words or groups: the addr-spec getaddresses() would return, found without
# it. Anything else goes to the general parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/?^_`{|}~-]+"
_ADDR = rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_WORD = r"(?:[A-Za-z0-9!#$%&'*+/?^_`{|}~.-]|[^\x00-\x7f])+"
_PLAIN_FROM = re.compile(rf"(?:{_WORD}(?:[ \t]+{_WORD})*[ \t]*)?<({_ADDR})>|({_ADDR})")


@record(frozen=True)
class Binding:
    """The message facts a marker is bound to.

    Attributes:
        message_id: the normalised first Message-ID, ``""`` when there is none.
        from_addresses: the lower-cased, sorted, comma-joined From addr-specs (``""`` when
            there are none or they cannot be parsed).
    """

    message_id: str
    from_addresses: str


def length_prefixed(text: str) -> bytes:
    """``lp(x)``: the 4-byte big-endian length of the UTF-8 bytes of ``x``, then the bytes.

    Bytes that were not UTF-8 in the message (kept as surrogate escapes) are bound as the
    original bytes.
    """
    data = text.encode("utf-8", "surrogateescape")
    return _LENGTH(len(data)) + data


def mac_input(*, tag: str, kid: str, t: str, nonce: str, d: str, org_id: str,
              binding: Binding) -> bytes:
    """The exact bytes the HMAC is computed over: the separator, then ``lp()`` of each part."""
    return b"".join((_key_prefix(tag, kid), length_prefixed(t), length_prefixed(nonce),
                     length_prefixed(d), _constant(org_id), length_prefixed(binding.message_id),
                     length_prefixed(binding.from_addresses)))


@lru_cache(maxsize=256)
def _key_prefix(tag: str, kid: str) -> bytes:
    """The separator and the parts fixed for one key (version, tag, key id), encoded once."""
    return _DOMAIN_SEPARATOR + b"".join(length_prefixed(part) for part in ("1", tag, kid))


@lru_cache(maxsize=256)
def _constant(part: str) -> bytes:
    return length_prefixed(part)


def compute_mac(mac_key: bytes, data: bytes) -> str:
    """HMAC-SHA-256 of ``data``, base64url without padding."""
    return b64url_encode(_keyed(mac_key).mac(data))  # the key schedule is done once per key


@lru_cache(maxsize=64)
def _keyed(mac_key: bytes) -> HmacKey:
    return HmacKey(mac_key)


def normalise_message_id(value: str) -> str:
    """Unfold, drop comments and white space outside quoted strings, keep the angle
    brackets, lower-case the domain part (everything after the last ``@``).

    One linear pass; unbalanced comments or quotes simply run to the end of the value.
    """
    if _PLAIN_ID.fullmatch(value):  # the common case; the same result as the scan
        local, _, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"
    return _scan_message_id(value)


def _scan_message_id(value: str) -> str:
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    at = -1
    for ch in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            if depth == 0:
                out.append(ch)
            continue
        if quoted:
            out.append(ch)
            quoted = ch != '"'
            continue
        if depth:
            depth += 1 if ch == "(" else -1 if ch == ")" else 0
            continue
        if ch == "(":
            depth = 1
        elif ch == '"':
            quoted = True
            out.append(ch)
        elif ch not in _WHITESPACE:
            if ch == "@":
                at = len(out)
            out.append(ch)
    text = "".join(out)
    return text if at < 0 else text[:at] + text[at:].lower()


def from_addresses(message: Message, limits: Limits | None = None) -> str:
    """Every From addr-spec, lower-cased, de-duplicated, sorted and comma-joined.

    ``""`` when there is no From field or one cannot be parsed.
    """
    return _join_addresses(message.headers.get_all("From"), limits)


def binding_of(message: Message, limits: Limits | None = None) -> Binding:
    """The :class:`Binding` of a message's top-level header (one pass over the fields)."""
    ids: list[HeaderField] = []
    froms: list[HeaderField] = []
    for field in message.headers:
        name = field.lower_name
        if name == "message-id":
            ids.append(field)
        elif name == "from":
            froms.append(field)
    if len(ids) > 1:
        log.warning("message has %d Message-ID fields; the marker binds the first", len(ids))
    message_id = normalise_message_id(ids[0].value) if ids else ""
    return Binding(message_id=message_id, from_addresses=_join_addresses(froms, limits))


def _join_addresses(fields: Iterable[HeaderField], limits: Limits | None) -> str:
    found: set[str] = set()
    try:
        for field in fields:
            value = field.value
            plain = _PLAIN_FROM.fullmatch(value) if len(value) <= 998 else None
            if plain is not None:
                found.add((plain[1] or plain[2]).lower())
            else:
                found.update(parse_addresses(field, limits or DEFAULT_LIMITS))
    except MessageError:
        return ""
    return ",".join(sorted(found))
