"""The marker key ring: the deployment tag, the org id and the keys, from a TOML key file.

File format (CLI.md "JSON shapes", docs/marker.md "The key file")::

    tag = "g7k2qd"                 # deployment tag, 6 characters a-z2-7
    org_id = "example.net"         # bound into every MAC, never written into a message
    [[key]]
    id = "k2026a"                  # 1-8 characters a-z0-9, never reused
    secret = "base64 ..."          # at least 32 random bytes
    not_before = 2026-01-01T00:00:00Z   # optional: start minting
    sign_until = 2026-04-01T00:00:00Z   # optional: stop minting
    verify_until = 2026-04-08T00:00:00Z # optional: stop accepting

Times are TOML datetimes (without an offset they are read as UTC; a bare date is midnight
UTC) or integer UNIX seconds. The file must not be accessible by group or others. Secrets
are turned into per-key HKDF-derived MAC keys at load time and never appear in a repr, a log
line or an error text.
"""

from __future__ import annotations

import binascii
import datetime as dt
import math
import os
import tomllib
from collections.abc import Mapping

from mailroute.config.options import Options
from mailroute.digests import hmac_sha256
from mailroute.errors import ConfigError, KeyUnavailableError
from mailroute.keys.secretfile import read_secret_file
from mailroute.marker.token import KID_PATTERN, TAG_PATTERN
from mailroute.records import field, record

__all__ = ["SIMULATION_SECRET", "KeyRing", "MarkerKey", "derive_mac_key", "fixed_key_ring",
           "load_key_ring", "parse_key_ring"]

MIN_SECRET_BYTES = 32
MAX_KEY_FILE_BYTES = 1024 * 1024
_NEVER = math.inf
_ALWAYS = -math.inf


def derive_mac_key(secret: bytes, kid: str) -> bytes:
    """``HKDF-SHA256(ikm=secret, salt=b"", info=b"mailroute/mark/v1/" + kid, L=32)``.

    RFC 5869 with :mod:`mailroute.digests`' HMAC: L = 32 is one SHA-256 block, so the expand
    step is the single ``T(1)``; an empty salt is HashLen zero bytes, which HMAC pads to the
    same key (loading the cryptography package for this would cost every run its start-up).
    """
    prk = hmac_sha256(b"", secret)
    info = b"mailroute/mark/v1/" + kid.encode("ascii")
    return hmac_sha256(prk, info + b"\x01")


@record(frozen=True)
class MarkerKey:
    """One key of the ring, with its windows in UNIX seconds (infinite when open).

    Attributes:
        kid: the key id written into the token.
        not_before: minting starts here.
        sign_until: minting stops here.
        verify_until: verification stops here.
        mac_key: the derived HMAC key (never shown in a repr).
    """

    kid: str
    mac_key: bytes = field(repr=False)
    not_before: float = _ALWAYS
    sign_until: float = _NEVER
    verify_until: float = _NEVER

    def __post_init__(self) -> None:
        if not KID_PATTERN.fullmatch(self.kid):
            raise ValueError("key id must be 1-8 characters a-z0-9")
        if len(self.mac_key) != 32:
            raise ValueError("derived MAC key must be 32 bytes")
        if self.sign_until <= self.not_before:
            raise ValueError(f"key {self.kid}: sign_until must be later than not_before")
        if self.verify_until < self.sign_until:
            raise ValueError(f"key {self.kid}: verify_until must not be before sign_until")

    def may_sign(self, now: float) -> bool:
        """``not_before <= now < sign_until``."""
        return self.not_before <= now < self.sign_until

    def may_verify(self, now: float) -> bool:
        """``now < verify_until``."""
        return now < self.verify_until


@record(frozen=True)
class KeyRing:
    """The deployment's tag and org id and every key it knows.

    Attributes:
        tag: the deployment tag (6 characters ``a-z2-7``).
        org_id: the organisation id bound into every MAC.
        keys: the keys, in file order.
    """

    tag: str
    org_id: str
    keys: tuple[MarkerKey, ...]

    def __post_init__(self) -> None:
        if not TAG_PATTERN.fullmatch(self.tag):
            raise ValueError("tag must be 6 characters a-z2-7")
        if not self.org_id:
            raise ValueError("org_id must not be empty")
        kids = [key.kid for key in self.keys]
        if len(set(kids)) != len(kids):
            raise ValueError("key ids must be unique")

    def signing_key(self, now: float) -> MarkerKey:
        """The key with the latest ``not_before`` among those that may sign at ``now``.

        Raises:
            KeyUnavailableError: no key may sign now (the adapters answer with a tempfail).
        """
        best: MarkerKey | None = None
        for key in self.keys:
            if key.may_sign(now) and (best is None or key.not_before >= best.not_before):
                best = key
        if best is None:
            raise KeyUnavailableError("no marker key may sign at this time")
        return best

    def verifying_key(self, kid: str, now: float) -> MarkerKey | None:
        """The key ``kid`` if it is in the ring and may still verify, else ``None``."""
        for key in self.keys:
            if key.kid == kid:
                return key if key.may_verify(now) else None
        return None


#: The secret of :func:`fixed_key_ring` rings: public, for simulations and tests only.
SIMULATION_SECRET = b"mailroute simulation key, not for production use"


def fixed_key_ring(tag: str, org_id: str, *, kid: str = "sim1",
                   secret: bytes = SIMULATION_SECRET) -> KeyRing:
    """A ring of one key that signs and verifies forever, from a known secret.

    The routing simulator and users' policy tests mint and verify real markers with it; a
    gateway must never use it (its secret is in this source file).
    """
    return KeyRing(tag=tag, org_id=org_id,
                   keys=(MarkerKey(kid=kid, mac_key=derive_mac_key(secret, kid)),))


def load_key_ring(path: str | os.PathLike[str]) -> KeyRing:
    """Read and check a key file.

    Raises:
        ConfigError: unreadable, accessible by group or others, not TOML, or an invalid
            entry; the text names the file and the key, never a secret.
    """
    source = str(path)
    data = read_secret_file(path, what="key file", max_bytes=MAX_KEY_FILE_BYTES)
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError("key file is not UTF-8", source=source) from exc
    except tomllib.TOMLDecodeError as exc:
        # The decoder's text names a position, never the content.
        raise ConfigError(f"key file is not valid TOML: {exc}", source=source) from exc
    return parse_key_ring(table, source=source)


def parse_key_ring(table: Mapping[str, object], *, source: str = "<key file>") -> KeyRing:
    """Build a :class:`KeyRing` from parsed key-file data (see :func:`load_key_ring`)."""
    top = Options(table, source=source)
    tag = top.string("tag")
    if not TAG_PATTERN.fullmatch(tag):
        raise top.error("tag", "must be 6 characters a-z2-7")
    org_id = top.string("org_id")
    if not org_id or any(ch in org_id for ch in "\r\n\0"):
        raise top.error("org_id", "must be a non-empty single-line string")
    entries = top.raw("key", [])
    if not isinstance(entries, list) or not entries:
        raise top.error("key", "must be a non-empty array of tables ([[key]])")
    top.finish()
    keys = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ConfigError("must be a table", source=source, key=f"key[{index}]")
        keys.append(_parse_key(Options(entry, source=source, prefix=f"key[{index}]")))
    try:
        return KeyRing(tag=tag, org_id=org_id, keys=tuple(keys))
    except ValueError as exc:
        raise top.error("key", str(exc)) from exc


def _parse_key(options: Options) -> MarkerKey:
    kid = options.string("id")
    if not KID_PATTERN.fullmatch(kid):
        raise options.error("id", "must be 1-8 characters a-z0-9")
    encoded = options.string("secret")
    try:
        secret = binascii.a2b_base64(encoded.strip(), strict_mode=True)
    except (binascii.Error, ValueError):
        raise options.error("secret", "is not valid base64") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise options.error("secret", f"must decode to at least {MIN_SECRET_BYTES} bytes")
    times = {name: _instant(options, name) for name in ("not_before", "sign_until",
                                                        "verify_until")}
    options.finish()
    try:
        return MarkerKey(kid=kid, mac_key=derive_mac_key(secret, kid),
                         not_before=_or(times["not_before"], _ALWAYS),
                         sign_until=_or(times["sign_until"], _NEVER),
                         verify_until=_or(times["verify_until"], _NEVER))
    except ValueError as exc:
        raise options.error("id", str(exc)) from exc


def _instant(options: Options, name: str) -> float | None:
    """A time option as UNIX seconds, ``None`` when absent."""
    if not options.has(name):
        options.raw(name, None)
        return None
    value = options.raw(name)
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return aware.timestamp()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp()
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise options.error(name, "must be a TOML datetime or UNIX seconds")


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
