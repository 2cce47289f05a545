"""Test messages for the PGP tests."""

from __future__ import annotations

ENTITY = (b"Content-Type: text/plain; charset=us-ascii\r\n"
          b"Content-Transfer-Encoding: 7bit\r\n\r\n"
          b"Hello Bob,\r\nthis message is protected.\r\n")
HEAD = (b"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n"
        b"Subject: pgp test\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
        b"Message-ID: <t1@example.org>\r\nMIME-Version: 1.0\r\n")
PLAIN = HEAD + ENTITY
PLAIN_LF = PLAIN.replace(b"\r\n", b"\n")

MIXED = HEAD + (
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"Gr\xc3\xbc\xc3\x9fe \r\nFrom the gateway\r\n"
    b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: 8bit\r\n"
    b'Content-Disposition: attachment; filename="a.bin"\r\n\r\n\x01\x02\xff data\r\n'
    b"--b1--\r\n")


def from_bob(raw: bytes) -> bytes:
    """The same message with Bob as the author."""
    return raw.replace(b"From: Alice <alice@example.org>", b"From: Bob <bob@example.net>", 1)
