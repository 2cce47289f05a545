"""Handing an accepted message on: ``sendmail -G -i -f SENDER -- RCPT…`` or one SMTP transaction.

Both are all or nothing. :class:`SmtpReinjector` opens one transaction with every recipient;
if the next hop refuses any of them before DATA it sends RSET and hands on nothing (a 4xx or
a lost connection is temporary, refusals that are all 5xx are permanent). A failure after DATA
is temporary, so the MTA keeps the message and retries: a message may then arrive twice, never
not at all. On the wire every line ends in CRLF and lines starting with ``.`` are dot-stuffed,
whatever line endings the message had. :class:`SendmailReinjector` feeds the message to the
MTA's own ``sendmail`` (never with ``-t``: the envelope is the one the MTA gave us) and
succeeds only on exit 0 within the timeout.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from mailroute.adapters.output import Chunks, pieces_of
from mailroute.records import record

if TYPE_CHECKING:
    import smtplib
    import subprocess

# smtplib (the email package, ssl, socket) and subprocess are imported where a message is
# handed on, and only the one the run uses: a mail server starts mailroute once per message.

__all__ = [
    "DEFAULT_SENDMAIL",
    "HandOn",
    "HandOnStatus",
    "Reinjector",
    "SendmailReinjector",
    "SmtpReinjector",
    "dot_stuff",
    "header_is_ascii",
    "parse_reinject",
    "wire_format",
    "wire_pieces",
]

DEFAULT_SENDMAIL = "/usr/sbin/sendmail"
_LINE_END = re.compile(rb"\r?\n")
_BLANK_LINE = re.compile(rb"\n\r?\n")


class HandOnStatus(enum.StrEnum):
    """How a hand-on ended."""

    DELIVERED = "delivered"
    TEMPORARY = "temporary"   # nothing handed on; retry (exit 75)
    PERMANENT = "permanent"   # nothing handed on; every refusal was permanent (exit 69)


@record(frozen=True)
class HandOn:
    """The result of one hand-on: its status and a one-line reason (no message content)."""

    status: HandOnStatus
    detail: str

    @property
    def ok(self) -> bool:
        """True when the next hop took the message for every recipient."""
        return self.status is HandOnStatus.DELIVERED


class Reinjector(Protocol):
    """Hands a message on to the next hop for every recipient, or for none."""

    def deliver(self, data: bytes | Chunks, sender: str, recipients: Sequence[str]) -> HandOn:
        """Hand ``data`` (bytes, or pieces in order) on with envelope ``sender`` and
        ``recipients``. Never raises."""
        ...


@record(frozen=True)
class SendmailReinjector:
    """``PATH -G -i -f SENDER -- RCPT…`` with the message on standard input."""

    path: str = DEFAULT_SENDMAIL
    timeout: float = 120.0

    def command(self, sender: str, recipients: Sequence[str]) -> list[str]:
        """The argument vector (the null sender is passed as ``<>``)."""
        return [self.path, "-G", "-i", "-f", sender or "<>", "--", *recipients]

    def deliver(self, data: bytes | Chunks, sender: str, recipients: Sequence[str]) -> HandOn:
        """Run sendmail; delivered only when it exits 0 within the timeout.

        The message is written piece by piece, so a large one is never copied whole; a
        sendmail that stops reading is killed at the timeout (which ends the write).
        """
        import subprocess
        import threading

        try:
            proc = subprocess.Popen(self.command(sender, recipients), stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as exc:
            return HandOn(HandOnStatus.TEMPORARY, f"cannot run {self.path}: "
                                                  f"{exc.strerror or type(exc).__name__}")
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(self.timeout, expire)
        timer.start()
        try:
            with proc:  # its pipes are closed on the way out
                errors = _feed(proc, data)
        finally:
            timer.cancel()
        if expired.is_set():
            return HandOn(HandOnStatus.TEMPORARY, f"{self.path} timed out after "
                                                  f"{self.timeout:g} s")
        if proc.returncode == 0:
            return HandOn(HandOnStatus.DELIVERED, f"{self.path} accepted")
        first = errors.decode("utf-8", "replace").strip().splitlines()[:1]
        return HandOn(HandOnStatus.TEMPORARY, f"{self.path} exited {proc.returncode}"
                                              + (f": {first[0][:200]}" if first else ""))


@record(frozen=True)
class SmtpReinjector:
    """One SMTP transaction with every recipient to ``host:port`` (a reinjection listener)."""

    host: str
    port: int
    timeout: float = 60.0
    helo: str | None = None

    def deliver(self, data: bytes | Chunks, sender: str, recipients: Sequence[str]) -> HandOn:
        """MAIL, every RCPT, DATA; RSET and nothing handed on if any recipient is refused.

        The content is sent in pieces of about 1 MiB as :func:`wire_pieces` makes them
        (smtplib's ``data`` would take it whole and dot-stuff a copy of the copy).
        """
        import smtplib

        try:
            client = smtplib.SMTP(self.host, self.port, local_hostname=self.helo,
                                  timeout=self.timeout)
        except (smtplib.SMTPException, OSError) as exc:
            return HandOn(HandOnStatus.TEMPORARY, f"{self.host}:{self.port}: {_describe(exc)}")
        try:
            return self._transaction(client, data, sender, recipients)
        except (smtplib.SMTPException, OSError) as exc:
            return HandOn(HandOnStatus.TEMPORARY, f"{self.host}:{self.port}: {_describe(exc)}")
        finally:
            _quit(client)

    def _transaction(self, client: smtplib.SMTP, data: bytes | Chunks, sender: str,
                     recipients: Sequence[str]) -> HandOn:
        client.ehlo_or_helo_if_needed()
        options = ["BODY=8BITMIME"] if client.has_extn("8bitmime") else []
        if not all(address.isascii() for address in (sender, *recipients)):
            if not client.has_extn("smtputf8"):
                return HandOn(HandOnStatus.PERMANENT, "an address needs SMTPUTF8, which the "
                                                      "next hop does not offer")
            options.append("SMTPUTF8")
        elif client.has_extn("smtputf8") and not header_is_ascii(data):
            # the flag the message came with is lost on the way through pipe(8): restored,
            # as RFC 6531 asks for a header with UTF-8 (a next hop without SMTPUTF8 gets the
            # message as before, as Postfix hands on mail it received without the flag)
            options.append("SMTPUTF8")
        if "SMTPUTF8" in options:
            client.command_encoding = "utf-8"
        # the addresses as the MTA gave them: smtplib's mail() and rcpt() parse them as
        # header addresses, which turns "a(b)@example" into another mailbox
        client.putcmd("mail", f"FROM:<{sender}>" + "".join(f" {o}" for o in options))
        code, text = client.getreply()
        if code != 250:
            client.rset()
            return _refused(code, f"MAIL FROM refused: {code} {_text(text)}")
        refusals = []
        for rcpt in recipients:
            client.putcmd("rcpt", f"TO:<{rcpt}>")
            code, text = client.getreply()
            if code not in (250, 251):
                refusals.append(code)
                refused_text = f"RCPT refused: {code} {_text(text)}"
        if refusals:
            client.rset()
            permanent = all(500 <= code < 600 for code in refusals)
            return HandOn(HandOnStatus.PERMANENT if permanent else HandOnStatus.TEMPORARY,
                          f"{len(refusals)} of {len(recipients)} recipients refused, nothing "
                          f"handed on ({refused_text})")
        client.putcmd("data")
        code, text = client.getreply()
        if code != 354:
            return HandOn(HandOnStatus.TEMPORARY, f"DATA refused: {code} {_text(text)}")
        for piece in wire_pieces(data):
            client.send(piece)
        client.send(b".\r\n")
        code, text = client.getreply()
        if code != 250:
            return HandOn(HandOnStatus.TEMPORARY, f"DATA refused: {code} {_text(text)}")
        return HandOn(HandOnStatus.DELIVERED,
                      f"{self.host}:{self.port} accepted: {code} {_text(text)}")


def _feed(proc: subprocess.Popen[bytes], data: bytes | Chunks) -> bytes:
    """Write ``data`` to ``proc``'s standard input, close it, wait for the exit; its
    standard error (the first 64 KiB), read meanwhile so that it cannot block."""
    import threading

    assert proc.stdin is not None
    assert proc.stderr is not None
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(_read_bounded(proc)), daemon=True)
    reader.start()
    try:
        for piece in pieces_of(data):
            proc.stdin.write(piece)
        proc.stdin.close()
    except OSError:  # it stopped reading (exited, or killed at the timeout): its exit says
        pass
    proc.wait()
    reader.join()
    return errors[0] if errors else b""


def _read_bounded(proc: subprocess.Popen[bytes]) -> bytes:
    assert proc.stderr is not None
    kept = proc.stderr.read(64 * 1024)
    while proc.stderr.read(64 * 1024):
        pass  # drained, not kept
    return kept


def header_is_ascii(data: bytes | Chunks) -> bool:
    """Whether the message's header section (up to its first empty line) is ASCII: a
    message with UTF-8 there needs SMTPUTF8 (RFC 6532); 8-bit body text needs only
    8BITMIME."""
    seen = bytearray()
    for piece in [data] if isinstance(data, bytes) else data:
        searched = max(len(seen) - 2, 0)
        seen += piece
        if seen.startswith((b"\r\n", b"\n")):
            return True
        end = _BLANK_LINE.search(seen, searched)
        if end is not None:
            return seen[:end.start()].isascii()
    return seen.isascii()


def wire_format(data: bytes) -> bytes:
    """``data`` with every line ending CRLF (smtplib dot-stuffs, but converts only ``str``)."""
    if data.count(b"\n") == data.count(b"\r\n"):  # already CRLF: two C-speed counts, no regex
        return data
    return _LINE_END.sub(b"\r\n", data)


def dot_stuff(wire: bytes, *, at_line_start: bool = True) -> bytes:
    """``wire`` (CRLF line ends) with the transparency dot doubled at every line that starts
    with one (RFC 5321 4.5.2); ``at_line_start`` says whether ``wire`` itself starts a line."""
    if at_line_start and wire.startswith(b"."):
        wire = b"." + wire
    return wire.replace(b"\r\n.", b"\r\n..")


def wire_pieces(data: bytes | Chunks, window: int = 1 << 20) -> Iterator[bytes]:
    """``data`` as SMTP DATA content in pieces of about ``window`` bytes: every line end CRLF,
    every line that starts with ``.`` dot-stuffed, ending in CRLF (the final ``.`` line is
    the caller's). Joined, the pieces are what smtplib's ``data`` sends for the whole message
    before its final dot; no piece holds more than a window of the message."""
    held = b""  # a CR that ended a window: with an LF opening the next, it is one CRLF
    line_start = True
    tail = b""
    for piece in pieces_of(data):
        view = memoryview(piece)
        for start in range(0, len(view), window):
            text = held + bytes(view[start:start + window])
            held = b""
            if text.endswith(b"\r"):
                text, held = text[:-1], b"\r"
            if not text:
                continue
            wire = dot_stuff(wire_format(text), at_line_start=line_start)
            line_start = wire.endswith(b"\r\n")
            tail = (tail + wire)[-2:]
            yield wire
    if held:
        tail = (tail + held)[-2:]
        yield held
    if tail != b"\r\n":
        yield b"\r\n"


def parse_reinject(spec: str) -> Reinjector:
    """``sendmail``, ``sendmail:PATH`` or ``smtp:HOST:PORT`` (CLI.md ``--reinject``).

    Raises:
        ValueError: anything else.
    """
    kind, _, rest = spec.partition(":")
    if kind == "sendmail":
        if rest and not rest.startswith("/"):
            raise ValueError("sendmail:PATH needs an absolute path")
        return SendmailReinjector(rest or DEFAULT_SENDMAIL)
    if kind == "smtp":
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("smtp:HOST:PORT needs a host and a port 1-65535")
        return SmtpReinjector(host, int(port))
    raise ValueError("must be sendmail, sendmail:PATH or smtp:HOST:PORT")


def _refused(code: int, detail: str) -> HandOn:
    return HandOn(HandOnStatus.PERMANENT if 500 <= code < 600 else HandOnStatus.TEMPORARY,
                  detail)


def _quit(client: smtplib.SMTP) -> None:
    """QUIT after the outcome is known: a failure here changes nothing."""
    import smtplib

    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def _text(text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text.replace("\n", " ")[:200]


def _describe(exc: BaseException) -> str:
    import smtplib

    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
