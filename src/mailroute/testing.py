"""Helpers for testing your own mail policy with plain asserts: no network, no real keys.

Example::

    from mailroute import Envelope, load_policy
    from mailroute.testing import FakeClock, build_message, fake_context

    clock = FakeClock(1_800_000_000)
    pipeline = load_policy("policy.toml")
    result = pipeline.process(build_message(subject="hello"),
                              Envelope(mail_from="a@example.net", rcpt_to=["b@example.org"]),
                              context=fake_context(clock=clock))
    assert result.action == "accept"
    clock.advance(3600)                      # the next message arrives an hour later

- :class:`FakeClock`: a clock you set and advance (pass it as ``Context(clock=...)``).
- :func:`fake_key_ring`: a marker key ring with a published secret, and
  :func:`write_fake_key_file` to hand it to a policy's ``key_file``.
- :func:`build_message`: a small, valid RFC 5322 message as bytes.
- :func:`fake_context`: a :class:`~mailroute.item.Context` with a fake clock and a fresh
  in-memory processed-message store.
- :class:`~mailroute.gateway.processed.InMemoryProcessedStore`: the store itself.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from mailroute.errors import InvalidArgumentError
from mailroute.gateway.processed import InMemoryProcessedStore
from mailroute.item import Context
from mailroute.limits import DEFAULT_LIMITS, Limits
from mailroute.marker.keyring import SIMULATION_SECRET, KeyRing, fixed_key_ring

__all__ = [
    "FAKE_MARKER_SECRET",
    "FakeClock",
    "InMemoryProcessedStore",
    "build_message",
    "fake_context",
    "fake_key_ring",
    "write_fake_key_file",
]

#: The secret of :func:`fake_key_ring`: published, so never use it on a gateway.
FAKE_MARKER_SECRET = SIMULATION_SECRET


class FakeClock:
    """A clock that stands still until told otherwise; call it for the time (UNIX seconds)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` and return the new time."""
        self.now += seconds
        return self.now


def fake_key_ring(tag: str = "testaa", org_id: str = "test-org", *, kid: str = "t1") -> KeyRing:
    """A marker key ring for tests: one key, valid forever, from :data:`FAKE_MARKER_SECRET`."""
    return fixed_key_ring(tag, org_id, kid=kid, secret=FAKE_MARKER_SECRET)


def write_fake_key_file(path: str | Path, tag: str = "testaa", org_id: str = "test-org", *,
                        kid: str = "t1") -> Path:
    """Write the key file of :func:`fake_key_ring` to ``path`` (mode 0600) and return it."""
    target = Path(path)
    secret = base64.b64encode(FAKE_MARKER_SECRET).decode("ascii")
    text = (f'tag = "{tag}"\norg_id = "{org_id}"\n\n[[key]]\nid = "{kid}"\n'
            f'secret = "{secret}"\n')
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(target, 0o600)
    return target


def build_message(*, sender: str = "alice@example.net", to: str = "bob@example.org",
                  subject: str = "test", body: str = "Hello.\r\n",
                  message_id: str | None = "<test.1@example.net>",
                  date: str = "Thu, 01 Jan 2026 00:00:00 +0000",
                  headers: tuple[tuple[str, str], ...] = (),
                  content_type: str = "text/plain; charset=utf-8") -> bytes:
    """A single-part message with CRLF line ends; ``headers`` are added after the others.

    The body is encoded as UTF-8 with ``8bit`` transfer encoding when it is not ASCII.
    """
    data = body.encode("utf-8")
    fields = [("From", sender), ("To", to), ("Subject", subject), ("Date", date)]
    if message_id:
        fields.append(("Message-ID", message_id))
    fields += [("MIME-Version", "1.0"), ("Content-Type", content_type),
               ("Content-Transfer-Encoding", "7bit" if data.isascii() else "8bit"),
               *headers]
    for name, value in fields:
        if any(c in name + value for c in "\r\n\0"):
            raise InvalidArgumentError(f"header {name!r} contains CR, LF or NUL")
    head = "".join(f"{name}: {value}\r\n" for name, value in fields).encode("utf-8")
    return head + b"\r\n" + data


def fake_context(*, clock: FakeClock | None = None, limits: Limits = DEFAULT_LIMITS,
                 processed: InMemoryProcessedStore | None = None) -> Context:
    """A context for one test: the fake clock and a processed-message store of its own."""
    return Context(clock=clock or FakeClock(), limits=limits,
                   processed=processed if processed is not None else InMemoryProcessedStore())
