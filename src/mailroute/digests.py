"""SHA-256 and HMAC-SHA-256 without loading OpenSSL.

:mod:`hashlib` and :mod:`hmac` load OpenSSL's libcrypto when they are imported: about
2.5 ms, a tenth of the start-up of ``mailroute process`` that a mail server pays per message.
CPython carries its own SHA-256 (``_sha256``; ``_sha2`` from Python 3.12), which is used here
when the interpreter has it; otherwise :mod:`hashlib`. HMAC is RFC 2104 over that hash, with
the key schedule (the inner and outer hash after the padded key) kept for reuse;
tests/test_digests.py checks it against :mod:`hmac` and RFC 4231's test vectors.
"""

from __future__ import annotations

from _operator import _compare_digest
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["HmacKey", "compare_digest", "hmac_sha256", "sha256"]


class _Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> _Hash: ...


def _builtin_sha256() -> Callable[..., _Hash]:
    try:
        from _sha2 import sha256 as made  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            from _sha256 import sha256 as made  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:  # an interpreter built without its own hashes
            from hashlib import sha256 as made  # type: ignore[assignment,unused-ignore]
    result: Callable[..., _Hash] = made
    return result


#: ``sha256(data=b"")``: a new SHA-256 hash object (``update``, ``digest``, ``hexdigest``,
#: ``copy``).
sha256 = _builtin_sha256()

#: Compare two byte strings (or two ASCII strings) in time independent of where they differ.
compare_digest: Callable[[bytes | str, bytes | str], bool] = _compare_digest

_BLOCK = 64
_INNER_PAD = bytes(x ^ 0x36 for x in range(256))
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))


class HmacKey:
    """An HMAC-SHA-256 key with its schedule done once: :meth:`mac` costs two hash copies."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = sha256(key.translate(_INNER_PAD))
        self._outer = sha256(key.translate(_OUTER_PAD))

    def mac(self, *parts: bytes) -> bytes:
        """HMAC-SHA-256 of the concatenation of ``parts`` (32 bytes)."""
        inner = self._inner.copy()
        for part in parts:
            inner.update(part)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA-256 (RFC 2104) of ``data`` under ``key``."""
    return HmacKey(key).mac(data)
