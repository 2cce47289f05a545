"""Making and rotating marker key files (``mailroute marker keygen|rotate|status``).

The key file format is the one :func:`mailroute.marker.keyring.load_key_ring` reads (CLI.md):
``tag``, ``org_id`` and ``[[key]]`` tables with ``id``, ``secret`` (base64 of 32 random bytes)
and the optional windows ``not_before``, ``sign_until``, ``verify_until``. Files are written
through :func:`mailroute.keys.secretfile.write_secret_file` (mode 0600, all or nothing) and
every file written is read back through the loader's checks first, so a tool never leaves a
key file the gateway would refuse.

Rotation adds a key that signs from now on and ends the signing window of every older key
now, keeping it for verification for ``keep`` seconds (default: the loop window, 3600 s):
markers it minted a moment ago are still recognised when Exchange hands the message back.
Keys whose verification window has ended are dropped.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
import secrets
import tomllib
from pathlib import Path

from mailroute.errors import ConfigError, KeyUnavailableError
from mailroute.keys.secretfile import read_secret_file, write_secret_file
from mailroute.marker.keyring import MAX_KEY_FILE_BYTES, KeyRing, parse_key_ring
from mailroute.marker.token import KID_PATTERN, TAG_PATTERN
from mailroute.records import record, replace

__all__ = ["KeyEntry", "KeyFile", "KeyState", "iso", "key_states", "new_key_file", "new_tag",
           "read_key_file", "rotate", "write_key_file"]

SECRET_BYTES = 32
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
_CONTROL = re.compile("[\x00-\x1f\x7f]")


@record(frozen=True)
class KeyEntry:
    """One ``[[key]]`` table as written (the secret still base64)."""

    kid: str
    secret: str
    not_before: float | None = None
    sign_until: float | None = None
    verify_until: float | None = None


@record(frozen=True)
class KeyFile:
    """A whole key file."""

    tag: str
    org_id: str
    keys: tuple[KeyEntry, ...]

    def ring(self, source: str = "<key file>") -> KeyRing:
        """The key ring the gateway would load from this file (validates everything).

        Raises:
            ConfigError: an invalid tag, org id, key id, secret or window.
        """
        return parse_key_ring(tomllib.loads(self.render()), source=source)

    def render(self) -> str:
        """The TOML text."""
        lines = ["# mailroute marker key file: keep it secret (mode 0600).",
                 f'tag = "{self.tag}"', f'org_id = "{_escape(self.org_id)}"']
        for key in self.keys:
            lines += ["", "[[key]]", f'id = "{key.kid}"', f'secret = "{key.secret}"']
            for name in ("not_before", "sign_until", "verify_until"):
                value = getattr(key, name)
                if value is not None and math.isfinite(value):
                    lines.append(f"{name} = {_toml_time(value)}")
        return "\n".join(lines) + "\n"


def new_tag() -> str:
    """A random deployment tag: 6 characters ``a-z2-7``."""
    return "".join(secrets.choice(_BASE32) for _ in range(6))


def _new_secret() -> str:
    return base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _new_kid(now: float, taken: set[str]) -> str:
    stem: str = "k" + dt.datetime.fromtimestamp(now, tz=dt.UTC).strftime("%y%m%d")
    for suffix in ["", *_BASE32[:26]]:
        candidate = f"{stem}{suffix}"
        if candidate not in taken:
            return candidate
    raise ConfigError("no free key id for today; give one with --id")


def new_key_file(*, tag: str, org_id: str, now: float, kid: str | None = None) -> KeyFile:
    """A key file with one fresh key that signs from ``now`` on.

    Raises:
        ConfigError: an invalid tag, org id or key id.
    """
    if not TAG_PATTERN.fullmatch(tag):
        raise ConfigError("tag must be 6 characters a-z2-7")
    key = KeyEntry(_checked_kid(kid) if kid else _new_kid(now, set()), _new_secret(),
                   not_before=math.floor(now))
    keys = KeyFile(tag=tag, org_id=org_id, keys=(key,))
    keys.ring()
    return keys


def rotate(keys: KeyFile, *, now: float, keep: float = 3600.0,
           kid: str | None = None) -> KeyFile:
    """``keys`` with a new signing key from ``now`` on; older keys stop signing now and
    verify for ``keep`` more seconds (never longer than they already would); keys that can
    no longer verify are dropped.

    Raises:
        ConfigError: ``kid`` is taken or invalid.
    """
    start = math.floor(now)
    taken = {k.kid for k in keys.keys}
    if kid is not None and kid in taken:
        raise ConfigError(f"key id {kid!r} is in the key file already")
    kept = []
    for key in keys.keys:
        if key.verify_until is not None and key.verify_until <= start:
            continue
        sign_until = start if key.sign_until is None else min(key.sign_until, start)
        if key.not_before is not None and sign_until <= key.not_before:
            sign_until = key.not_before + 1  # a key that never signed keeps a valid window
        verify_until = start + keep
        if key.verify_until is not None:
            verify_until = min(key.verify_until, verify_until)
        kept.append(replace(key, sign_until=sign_until,
                            verify_until=max(verify_until, sign_until)))
    new = KeyEntry(_checked_kid(kid) if kid else _new_kid(now, taken), _new_secret(),
                   not_before=start)
    rotated = replace(keys, keys=(*kept, new))
    rotated.ring()
    return rotated


def _checked_kid(kid: str) -> str:
    if not KID_PATTERN.fullmatch(kid):
        raise ConfigError("key id must be 1-8 characters a-z0-9")
    return kid


def read_key_file(path: Path) -> KeyFile:
    """Read a key file with the loader's checks (mode, size, content).

    Raises:
        ConfigError: as :func:`mailroute.marker.keyring.load_key_ring`.
    """
    source = str(path)
    data = read_secret_file(path, what="key file", max_bytes=MAX_KEY_FILE_BYTES)
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"key file is not valid TOML: {exc}", source=source) from None
    parse_key_ring(table, source=source)   # every check the gateway makes
    entries = table["key"]
    return KeyFile(tag=str(table["tag"]), org_id=str(table["org_id"]), keys=tuple(
        KeyEntry(str(e["id"]), str(e["secret"]), *(_seconds(e.get(n)) for n in
                                                   ("not_before", "sign_until", "verify_until")))
        for e in entries))


def _seconds(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp()
    if isinstance(value, int | float):
        return float(value)
    raise ConfigError("a key window is not a datetime")


def write_key_file(path: Path, keys: KeyFile, *, replace: bool = False) -> None:
    """Write ``keys`` to ``path`` (mode 0600; see
    :func:`~mailroute.keys.secretfile.write_secret_file`)."""
    keys.ring(str(path))
    write_secret_file(path, keys.render().encode("utf-8"), replace=replace)


@record(frozen=True)
class KeyState:
    """What one key does at a moment, for ``marker status``."""

    kid: str
    state: str          # "signing", "may sign", "verify only", "not yet valid", "retired"
    age: float | None   # seconds since not_before, None when it has none
    not_before: float | None
    sign_until: float | None
    verify_until: float | None


def key_states(keys: KeyFile, now: float) -> tuple[KeyState, ...]:
    """The state of every key at ``now``; the one that mints is ``signing``."""
    ring = keys.ring()
    try:
        minting: str | None = ring.signing_key(now).kid
    except KeyUnavailableError:
        minting = None
    states = []
    for entry, key in zip(keys.keys, ring.keys, strict=True):
        if key.kid == minting:
            state = "signing"
        elif key.may_sign(now):
            state = "may sign"
        elif now < key.not_before:
            state = "not yet valid"
        elif key.may_verify(now):
            state = "verify only"
        else:
            state = "retired"
        age = now - entry.not_before if entry.not_before is not None else None
        states.append(KeyState(key.kid, state, age, entry.not_before, entry.sign_until,
                               entry.verify_until))
    return tuple(states)


def _toml_time(seconds: float) -> str:
    try:
        moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise ConfigError("a key time would lie past the year 9999") from None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _escape(text: str) -> str:
    """``text`` for a TOML basic string: control characters may not appear in one."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04X}", escaped)


def iso(seconds: float | None) -> str:
    """``seconds`` as an ISO 8601 UTC time, ``-`` for none or infinity."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    return _toml_time(seconds)

