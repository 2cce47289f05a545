"""Inline PGP: armored blocks inside ``text/plain`` parts.

A block is decrypted or verified only where the whole text of its part is that one block
(white space around it aside); text around a block is attacker-controllable (EFAIL direct
exfiltration, partial-signature spoofing), so such a block is reported but never merged.
"""

from __future__ import annotations

import enum
import re

from mailroute.errors import MalformedMessageError
from mailroute.mime import Message, Path, decode_payload
from mailroute.records import record

__all__ = ["InlineBlock", "InlineKind", "find_inline"]

_BLOCK = re.compile(
    rb"-----BEGIN PGP (?:(?P<enc>MESSAGE)-----\r?\n.*?-----END PGP MESSAGE-----"
    rb"|SIGNED MESSAGE-----\r?\n.*?-----END PGP SIGNATURE-----)[ \t]*(?:\r?\n|\Z)",
    re.DOTALL)


class InlineKind(enum.StrEnum):
    """What an inline block is."""

    ENCRYPTED = "encrypted"
    SIGNED = "signed"


@record(frozen=True)
class InlineBlock:
    """One armored block in a text part.

    Attributes:
        path: the text part.
        kind: encrypted or cleartext-signed.
        data: the block's bytes (after transfer decoding).
        alone: True when the block is all the part holds.
    """

    path: Path
    kind: InlineKind
    data: bytes
    alone: bool


def find_inline(message: Message) -> tuple[InlineBlock, ...]:
    """Every inline PGP block in the message's ``text/plain`` leaves."""
    found = []
    for path, part in message.walk():
        if part.is_multipart or part.mime_type != "text/plain" or part.is_attachment:
            continue
        try:
            data = decode_payload(part).data
        except MalformedMessageError:
            continue
        if b"-----BEGIN PGP " not in data:
            continue
        blocks = list(_BLOCK.finditer(data))
        for match in blocks:
            kind = InlineKind.ENCRYPTED if match.group("enc") else InlineKind.SIGNED
            alone = len(blocks) == 1 and not (data[:match.start()].strip()
                                              or data[match.end():].strip())
            found.append(InlineBlock(path, kind, match.group(0), alone))
    return tuple(found)
