"""What the milter adapter translates: MTA macros to an envelope, session results to
milter actions. Pure functions, no I/O; :mod:`mailroute.adapters.milter` drives them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from mailroute.adapters.xtext import decode_xtext
from mailroute.item import Envelope, breaks_line
from mailroute.mime.edits import Edits, HeaderEditKind
from mailroute.protocols import milter as pm
from mailroute.protocols.milter import (
    Accept,
    Action,
    AddHeader,
    ChangeHeader,
    Discard,
    InsertHeader,
    Quarantine,
    ReplaceBody,
    ReplyCode,
)
from mailroute.records import field, record
from mailroute.results import Action as Verdict
from mailroute.results import Reply
from mailroute.session import Result

__all__ = [
    "INTERNAL_REPLY",
    "INTERNAL_TEMPFAIL",
    "MAX_RECIPIENTS",
    "TOO_MANY_RECIPIENTS_REPLY",
    "USED_MACROS",
    "MessageFacts",
    "as_reply_code",
    "client_address",
    "edit_actions",
    "reply_code",
    "result_actions",
    "tls_peer_name",
]

#: The recipients of one message that are kept: a message with more is refused with
#: :data:`TOO_MANY_RECIPIENTS_REPLY` (Postfix's own ``smtpd_recipient_limit`` is 1,000; the
#: bound keeps what a connection holds finite whatever the MTA sends).
MAX_RECIPIENTS = 10_000
TOO_MANY_RECIPIENTS_REPLY = Reply(552, "5.5.3", "too many recipients")
#: The macros mailroute reads; any other an MTA sends is not kept (how many names it sends
#: is its choice, the memory they take is ours).
USED_MACROS = frozenset({b"i", b"{client_addr}", b"{cert_subject}", b"{verify}",
                         b"{auth_authen}"})
#: The answer to every internal failure: the MTA keeps the message and retries.
INTERNAL_REPLY = Reply(451, "4.3.0", "temporary local problem, try again later")


def as_reply_code(reply: Reply) -> ReplyCode:
    """One of the adapter's own replies (one line of ASCII text) as a milter reply code."""
    return ReplyCode(reply.code, reply.status, (reply.text,))


INTERNAL_TEMPFAIL = as_reply_code(INTERNAL_REPLY)

#: Where an attribute of a distinguished name starts: OpenSSL's one-line form
#: (``/C=US/O=X/CN=name``, Sendmail) and RFC 4514's (``CN=name,O=X``).
_ONE_LINE_ATTRIBUTE = re.compile(r"(?<!\\)/(?=[A-Za-z][A-Za-z0-9.]*=)")
_RFC4514_ATTRIBUTE = re.compile(r"(?<!\\),\s*(?=[A-Za-z][A-Za-z0-9.]*=)")


def tls_peer_name(macros: Mapping[bytes, bytes]) -> str | None:
    """The verified TLS client certificate name, from the macros, or ``None``.

    Postfix sets ``{cert_subject}`` to the common name, and only for a certificate it
    verified: the value is the name as it stands. Sendmail sets it to the whole subject
    (a distinguished name) for any certificate and reports the verification in
    ``{verify}``: the name is the subject's one ``CN`` when ``{verify}`` is ``OK``.
    """
    subject = macros.get(b"{cert_subject}")
    verify = macros.get(b"{verify}")
    if not subject or (verify is not None and verify != b"OK"):
        return None
    text = subject.decode("utf-8", "replace").strip()
    # Sendmail writes the subject as xtext: +5C is a backslash, +20 a space
    name = text if verify is None else _common_name(decode_xtext(text))
    if not name or breaks_line(name):
        return None
    return name


def _common_name(subject: str) -> str | None:
    """The ``CN`` of a distinguished name, ``None`` unless it has exactly one.

    OpenSSL 3 writes a ``/`` inside a value as ``\\/`` (no attribute starts there); older
    versions, and lax writers of the comma form, leave it as it is, so an ``O`` of
    ``x/CN=mail.protection.outlook.com`` reads as a ``CN`` of its own: next to the real
    ``CN`` that makes two, and the subject is ambiguous.
    """
    split = _ONE_LINE_ATTRIBUTE if subject.startswith("/") else _RFC4514_ATTRIBUTE
    names = [part[3:].strip() for part in split.split(subject) if part[:3].upper() == "CN="]
    return names[0] if len(names) == 1 else None


def client_address(raw: str) -> str:
    """An MTA's client address as an IP address is written: Sendmail's ``IPv6:`` prefix
    gone, an IPv6 address compressed (``IPv6:0:0:0:0:0:0:0:1`` is ``::1``); IPv4, and
    anything that is not an address (``unknown``), as it is."""
    text = raw.strip()
    if text[:5].lower() == "ipv6:":
        text = text[5:]
    if ":" not in text:  # IPv4 (as written), or no address at all
        return text
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return raw.strip()
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:192.0.2.1 is an IPv4 client
    return str(mapped if mapped is not None else address)


def _address(raw: bytes) -> str:
    if raw.isascii():  # nearly always: no round trip through surrogates needed
        text = raw.decode("ascii").strip()
        return text[1:-1] if text.startswith("<") and text.endswith(">") else text
    text = raw.decode("utf-8", "surrogateescape").strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@record
class MessageFacts:
    """What one milter connection learnt about the current message."""

    client_address: str | None = None
    helo: str | None = None
    mail_from: str = ""
    rcpt_to: list[str] = field(default_factory=list)
    #: recipients beyond :data:`MAX_RECIPIENTS`, counted, not kept
    dropped_recipients: int = 0
    macros: dict[bytes, bytes] = field(default_factory=dict)

    def set_helo(self, raw: bytes) -> None:
        """HELO/EHLO (sent again after STARTTLS): the latest name counts."""
        name = raw.decode("ascii", "replace").strip()
        self.helo = name if name and not breaks_line(name) else None

    def set_sender(self, raw: bytes) -> None:
        """MAIL FROM: a new transaction."""
        self.mail_from = _address(raw)
        self.rcpt_to = []
        self.dropped_recipients = 0

    def add_recipient(self, raw: bytes) -> None:
        """One RCPT TO (counted only, beyond :data:`MAX_RECIPIENTS`)."""
        if len(self.rcpt_to) < MAX_RECIPIENTS:
            self.rcpt_to.append(_address(raw))
        else:
            self.dropped_recipients += 1

    def add_macros(self, values: tuple[tuple[bytes, bytes], ...]) -> None:
        """A macro packet's values, those mailroute reads."""
        macros = self.macros
        for name, value in values:
            if name in USED_MACROS:
                macros[name] = value

    @property
    def queue_id(self) -> str:
        """The MTA's queue id (macro ``{i}``, ``i`` in Postfix's lists), or ``-``."""
        return self.macros.get(b"i", b"-").decode("ascii", "replace")

    @property
    def auth_user(self) -> str | None:
        """The SASL login name (macro ``{auth_authen}``), or ``None`` when the client did
        not authenticate (or the name is not a single printable line)."""
        raw = self.macros.get(b"{auth_authen}")
        if not raw:
            return None
        name = raw.decode("utf-8", "replace")
        return name if name.isprintable() else None

    def envelope(self) -> Envelope:
        """The envelope the policy sees."""
        client = self.macros.get(b"{client_addr}")
        address = client_address(client.decode("ascii", "replace")) if client \
            else self.client_address
        if address and breaks_line(address):
            address = None
        return Envelope(mail_from=self.mail_from, rcpt_to=tuple(self.rcpt_to),
                        client_address=address, tls_peer_name=tls_peer_name(self.macros),
                        helo=self.helo, auth_user=self.auth_user)


#: Characters of reply text per line: an SMTP reply line is at most 512 octets with its
#: code, status and line end (RFC 5321 4.5.3.1.5), and a ``%`` goes on the wire doubled.
MAX_REPLY_TEXT = 240


def reply_code(reply: Reply, fallback: ReplyCode) -> ReplyCode:
    """``reply`` as a milter reply code, or ``fallback`` when it cannot be sent (not 4xx or
    5xx). The text becomes what an SMTP reply may carry: printable ASCII (a tab a space,
    anything else ``?``: it may quote an address a sender chose), its lines kept, a long
    line cut into lines of :data:`MAX_REPLY_TEXT` characters."""
    lines: list[str] = []
    for line in (reply.text or "-").splitlines():
        clean = "".join(c if " " <= c <= "~" else " " if c == "\t" else "?" for c in line)
        lines += [clean[at:at + MAX_REPLY_TEXT] for at in range(0, len(clean), MAX_REPLY_TEXT)]
    try:
        return ReplyCode(reply.code, reply.status, tuple(lines) or ("-",))
    except pm.LocalProtocolError:
        return fallback


def _milter_value(value: bytes, leading_space: bool) -> bytes:
    """A raw header value for the MTA: folding as bare LF, as Postfix and Sendmail store it;
    without ``leading_space`` (an MTA older than protocol 6 adds one) less its first space."""
    if not leading_space and value[:1] == b" ":
        value = value[1:]
    return value.replace(b"\r\n", b"\n")


def edit_actions(edits: Edits, *, hidden_above: int = 0,
                 leading_space: bool = True) -> list[Action]:
    """Header actions, then the whole body replacement when the body changed.

    ``hidden_above`` is the number of fields the MTA put on top of the message without
    showing them to the milter (Postfix's own ``Received``); insert positions are counted
    from the top of what the milter saw, so they are shifted by it. ``leading_space``:
    the MTA takes values with their leading white space (``SMFIP_HDR_LEADSPC``).
    """
    actions: list[Action] = []
    for edit in edits.headers:
        name = edit.name.encode("ascii")
        value = _milter_value(edit.value, leading_space)
        if edit.kind is HeaderEditKind.ADD:
            actions.append(AddHeader(name, value))
        elif edit.kind is HeaderEditKind.INSERT:
            actions.append(InsertHeader(edit.index + hidden_above, name, value))
        elif edit.kind is HeaderEditKind.CHANGE:
            actions.append(ChangeHeader(edit.index, name, value))
        else:
            actions.append(ChangeHeader(edit.index, name, b""))
    if edits.body is not None:
        actions.append(ReplaceBody(edits.body))
    return actions


def result_actions(result: Result, *, hidden_above: int = 0,
                   leading_space: bool = True) -> list[Action]:
    """Everything to send at end-of-message for ``result``, the final reply last
    (``hidden_above`` and ``leading_space`` as for :func:`edit_actions`)."""
    if result.action is Verdict.ACCEPT:
        return [*edit_actions(result.edits, hidden_above=hidden_above,
                              leading_space=leading_space), Accept()]
    if result.action is Verdict.DISCARD:
        return [Discard()]
    if result.action is Verdict.QUARANTINE:
        reason = result.smtp_reply.text.encode("utf-8", "replace")
        reason = reason.replace(b"\r", b" ").replace(b"\n", b" ").replace(b"\0", b" ")
        # held as prepared: without the forged Authentication-Results fields
        return [*edit_actions(result.edits, hidden_above=hidden_above,
                              leading_space=leading_space),
                Quarantine(reason or b"quarantined"), Accept()]
    if result.action is Verdict.REJECT:
        fallback = ReplyCode(554, "5.7.1", ("message refused",))
        if not 500 <= result.smtp_reply.code <= 599:
            return [fallback]
        return [reply_code(result.smtp_reply, fallback)]
    if not 400 <= result.smtp_reply.code <= 499:
        return [INTERNAL_TEMPFAIL]
    return [reply_code(result.smtp_reply, INTERNAL_TEMPFAIL)]
