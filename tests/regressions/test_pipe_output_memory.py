"""The pipe adapters write the output message piece by piece: a large message with a
disclaimer in its small text part is held once (the input) plus the new pieces, not a second
time as the joined output (it peaked at twice the message: 2.0x of a 27 MB message over the
loaded interpreter, now 1.0x; benchmarks/disclaimer.py)."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

from mailroute import Envelope, Pipeline, parse
from mailroute.adapters.output import pieces_of
from mailroute.adapters.pipe import run_pipe
from mailroute.adapters.reinject import SendmailReinjector
from mailroute.mime import decode_payload
from tests.disclaimer.conftest import make_filter
from tests.regressions.complexity import peak

SIZE = 8 * 1024 * 1024


def _large_message() -> bytes:
    attachment = base64.encodebytes(os.urandom(SIZE * 3 // 4)).replace(b"\n", b"\r\n")
    return (b"From: a@example.net\r\nTo: b@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            b"Content-Type: text/plain; charset=utf-8\r\n\r\nsee attached\r\n--b\r\n"
            b'Content-Type: application/octet-stream; name="x.bin"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment + b"--b--\r\n")


def test_a_large_message_is_written_out_without_a_copy_of_it(tmp_path: Path) -> None:
    data = _large_message()
    pipeline = Pipeline(filters=(make_filter(tmp_path),))
    out = tmp_path / "out.eml"

    def run() -> None:
        with out.open("wb") as stdout:
            code = run_pipe(pipeline, io.BytesIO(data), stdout, io.StringIO(),
                            envelope=Envelope(mail_from="a@example.net"))
        assert code == 0

    used = peak(run)
    written = parse(out.read_bytes())
    assert b"mailroute-disclaimer-v1" in decode_payload(written.part((0,))).data
    assert written.part((1,)).to_bytes() == parse(data).part((1,)).to_bytes()
    assert used < 0.3 * len(data), used / len(data)


def test_pieces_are_gathered_into_large_writes_and_large_ones_passed_as_they_are() -> None:
    big = memoryview(b"x" * 100_000)
    pieces = list(pieces_of([b"a" * 10, b"b" * 20, big, b"c" * 70_000, b"d"]))
    assert [len(p) for p in pieces] == [30, 100_000, 70_000, 1]
    assert pieces[1] is big
    assert b"".join(pieces) == b"a" * 10 + b"b" * 20 + bytes(big) + b"c" * 70_000 + b"d"


def test_sendmail_gets_the_pieces_in_order(tmp_path: Path) -> None:
    out = tmp_path / "out.eml"
    script = tmp_path / "sendmail"
    script.write_text(f"#!/bin/sh\ncat > {out}\n")
    script.chmod(0o700)
    data = _large_message()
    result = Pipeline(filters=(make_filter(tmp_path),)).process(data)
    chunks = result.chunks()
    assert len(chunks) > 3
    assert SendmailReinjector(str(script)).deliver(chunks, "a@example.net", ["b@x.example"]).ok
    assert out.read_bytes() == result.data
