"""Adding a disclaimer to one message: decode each body, insert, re-encode in its charset.

Every body is decoded with its declared charset as mail clients read it (the WHATWG label
table of :mod:`mailroute.mime.charsets`: ``iso-8859-1`` is windows-1252; strictly, never
with replacement characters) and the disclaimer inserted at the chosen place. When the body
keeps its charset and transfer encoding, only the encoded bytes from the line break before
the insertion point are written again (:mod:`~mailroute.disclaimer.splice`); otherwise the
whole body is written back with :meth:`~mailroute.mime.Message.replace_text`, which keeps
the charset when the disclaimer fits it and otherwise switches the part to UTF-8 (an HTML
``<meta charset>`` is then updated too). Everything else in the message keeps its bytes. A
body that already carries the disclaimer (its template fingerprint, quoted history
included) is left as it is.
"""

from __future__ import annotations

import binascii
import contextlib
import re

from mailroute.disclaimer.locate import PARSERS, PLACEMENTS, HtmlBudget, HtmlLimits, locate
from mailroute.disclaimer.select import BODY_TYPES, Body, plan_message
from mailroute.disclaimer.splice import splice_text
from mailroute.disclaimer.template import (
    Template,
    compact_text,
    contains_pieces,
    html_to_compact_text,
)
from mailroute.disclaimer.textplace import text_insertion
from mailroute.errors import LimitExceededError, MalformedMessageError, UnsafeHeaderValueError
from mailroute.mime import LeafBody, Message, Part, Path, build_leaf, decode_payload
from mailroute.mime.charsets import (
    codec_name,
    decode_bytes,
    encode_text,
    is_ascii_label,
    label_codec_name,
)
from mailroute.patterns import on_first_use
from mailroute.records import field, record

__all__ = ["AUTO_REPLY_POLICIES", "INVITE_POLICIES", "SIGNED_POLICIES", "Disclaimer", "Insertion",
           "Settings", "add_disclaimer", "decode_body"]

_PGP_ARMOR = on_first_use(r"(?m)^-----BEGIN PGP (?:SIGNED )?MESSAGE-----\r?$")
_META_CHARSET_BYTES = on_first_use(rb"<meta\b[^>]*?\bcharset\s*=\s*[\"']?([-\w.:]+)",
                                 re.IGNORECASE)
_META_CHARSET = on_first_use(r"(<meta\b[^>]*?\bcharset\s*=\s*[\"']?)([-\w.:]+)", re.IGNORECASE)
_UTF7 = "utf-7"
_ASCII_WORD = on_first_use(r"[A-Za-z0-9]{4,}")


@record(frozen=True)
class Disclaimer:
    """The templates of one disclaimer and their renderings for one message.

    Attributes:
        text_template: the plain-text template.
        html_template: the HTML template (derived from the text one when not configured).
        text: the rendered text.
        html: the rendered HTML fragment.
    """

    text_template: Template
    html_template: Template
    text: str
    html: str

    def carried_by(self, body: str, *, is_html: bool) -> bool:
        """True when ``body`` already contains this disclaimer (quoted or not): the HTML
        token, any rendering of a template whose static text tells it from other text
        (``Template.distinctive``), or, for a text template that is not distinctive, this
        message's own rendering."""
        if is_html and self.html_template.token in body:
            return True
        text_template, html_template = self.text_template, self.html_template
        # a template whose anchor word is missing cannot be there: no need to compact
        text_seen = not text_template.anchor or text_template.anchor in body
        html_seen = text_seen if html_template.anchor == text_template.anchor else (
            not html_template.anchor or html_template.anchor in body)
        text_may = text_template.distinctive and text_seen
        html_may = html_template.distinctive and html_seen
        rendered = ""
        if not text_template.distinctive:  # else its fingerprint is in every rendering
            word = max(_ASCII_WORD().findall(self.text), key=len, default="")
            if not word or word in body:
                rendered = compact_text(self.text)
        if not (text_may or html_may or rendered):
            return False
        compact = html_to_compact_text(body) if is_html else compact_text(body)
        return bool(rendered and rendered in compact) \
            or (text_may and contains_pieces(compact, text_template.fingerprint)) \
            or (html_may and contains_pieces(compact, html_template.fingerprint))

    @property
    def html_fragment(self) -> str:
        """The HTML that is inserted: the rendering inside a ``div`` carrying the token."""
        return (f'<div data-mailroute-disclaimer="{self.html_template.token}">'
                f"{self.html}</div>")


SIGNED_POLICIES = ("wrap", "skip", "reject")
INVITE_POLICIES = ("skip", "bodies")
AUTO_REPLY_POLICIES = ("skip", "add")


@record(frozen=True, kw_only=True)
class Settings:
    """How a disclaimer is placed (see :mod:`mailroute.filters.disclaimer` for the options).

    Every choice is checked when the object is built: ``Settings(signed="rejct")`` raises
    ``ValueError`` instead of quietly wrapping.
    """

    placement: str = "bottom"
    html_parser: str = "auto"
    html_limits: HtmlLimits = field(default_factory=HtmlLimits)
    invites: str = "skip"
    auto_replies: str = "skip"
    signed: str = "wrap"

    def __post_init__(self) -> None:
        for name, choices in (("placement", PLACEMENTS), ("html_parser", PARSERS),
                              ("invites", INVITE_POLICIES),
                              ("auto_replies", AUTO_REPLY_POLICIES),
                              ("signed", SIGNED_POLICIES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, "
                                 f"not {getattr(self, name)!r}")


@record(frozen=True)
class Insertion:
    """The edited message and what happened to each body.

    Attributes:
        message: the result (the input message itself when nothing changed).
        inserted: bodies that got the disclaimer.
        present: bodies that already carried it.
        skipped: ``(path, reason)`` for bodies left alone (undecodable, utf-7 HTML ...).
        protected: signed or encrypted entities found.
        wrapped: True when the message was wrapped with a disclaimer part.
        refused: True when the policy rejects protected mail and some was found.
        skip_reason: why the whole message was left alone, if it was.
        locators: the HTML locating method used per HTML body (scan, html5lib, fallback).
    """

    message: Message
    inserted: tuple[Path, ...] = ()
    present: tuple[Path, ...] = ()
    skipped: tuple[tuple[Path, str], ...] = ()
    protected: tuple[Path, ...] = ()
    wrapped: bool = False
    refused: bool = False
    skip_reason: str | None = None
    locators: tuple[str, ...] = ()

    def summary(self) -> str:
        """A one-line account for logs and annotations (paths and reasons only)."""
        if self.skip_reason:
            return f"skipped: {self.skip_reason}"
        parts = [f"inserted={len(self.inserted)}", f"present={len(self.present)}"]
        if self.protected:
            parts.append(f"protected={len(self.protected)}")
        if self.wrapped:
            parts.append("wrapped")
        if self.skipped:
            parts.extend(f"skipped{_dotted(p)}={reason}" for p, reason in self.skipped)
        return " ".join(parts)


def _dotted(path: Path) -> str:
    return "[" + ".".join(str(i) for i in path) + "]"


def _payload(part: Part, encoding: str) -> bytes | None:
    """The decoded payload, or ``None`` when its transfer encoding is damaged."""
    if not isinstance(part.body, LeafBody):
        return None
    raw = part.body.span.to_bytes()
    if encoding == "quoted-printable":
        return binascii.a2b_qp(raw)
    if encoding in ("7bit", "8bit", "binary"):
        return raw
    if encoding == "base64":
        compact = raw.translate(None, b"\r\n")
        del raw  # no copy of a large body outlives its use
        try:  # the common case, without the general decoder's per-byte filtering
            return binascii.a2b_base64(compact, strict_mode=True)
        except binascii.Error:
            del compact
    try:
        decoded = decode_payload(part)
    except MalformedMessageError:
        return None
    return None if decoded.defects else decoded.data


def decode_body(part: Part, body: Body | None = None) -> tuple[str | None, str]:
    """The text of a body and the codec that read it, or ``None`` and why it cannot be read.

    ``body`` carries the part's content facts when the caller already has them. Without a
    declared charset, text that is not ASCII is read as the HTML ``<meta charset>`` says, or
    as UTF-8.
    """
    if body is None:
        body = Body((), part.mime_type, part.charset, part.transfer_encoding)
    data = _payload(part, body.transfer_encoding)
    if data is None:
        return None, "invalid-transfer-encoding"
    try:
        codec = codec_name(body.charset or "us-ascii")
    except MalformedMessageError:
        return None, "unknown-charset"
    ascii_data = data.isascii()
    if not ascii_data and is_ascii_label(body.charset):
        # a very common mislabel: UTF-8 declared as (or defaulting to) ASCII; else the HTML
        # <meta charset>; else what clients show for ASCII labels (windows-1252)
        fallbacks = ["utf-8"]
        meta = (_META_CHARSET_BYTES().search(data, 0, 4096)
                if body.mime_type == "text/html" else None)
        if meta is not None and not body.charset:
            with contextlib.suppress(MalformedMessageError):
                fallbacks.insert(0, codec_name(meta.group(1).decode("ascii")))
        for fallback in fallbacks:
            try:
                return data.decode(fallback), fallback
            except UnicodeDecodeError:
                continue
    try:
        return decode_bytes(data, codec, is_ascii=ascii_data), codec
    except UnicodeError:  # some codecs raise the base class
        return None, "undecodable"


def add_disclaimer(message: Message, disclaimer: Disclaimer, settings: Settings) -> Insertion:
    """Insert ``disclaimer`` into every body of ``message`` (see the module docstring)."""
    plan = plan_message(message, placement=settings.placement, invites=settings.invites,
                        skip_auto_replies=settings.auto_replies == "skip")
    if plan.skip_reason:
        return Insertion(message, skip_reason=plan.skip_reason)
    result = message
    inserted: list[Path] = []
    present: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    protected = list(plan.protected)
    locators: list[str] = []
    budget: HtmlBudget | None = None  # made for the first HTML body
    for body in plan.bodies:
        path = body.path
        part = message.part(path)
        is_html = body.mime_type == BODY_TYPES[1]
        text, codec = decode_body(part, body)
        if text is None:
            skipped.append((path, codec))
            continue
        if is_html and codec == _UTF7:
            skipped.append((path, "utf-7-html"))
            continue
        if body.transfer_encoding != "base64" and encode_text("\r\n", codec) != b"\r\n":
            # UTF-16/32 bytes cannot be re-encoded line by line (7bit/8bit/QP): leave them
            skipped.append((path, "charset-needs-base64"))
            continue
        if "-----BEGIN PGP " in text and _PGP_ARMOR().search(text):
            protected.append(path)
            continue
        if disclaimer.carried_by(text, is_html=is_html):
            present.append(path)
            continue
        if is_html:
            budget = budget or HtmlBudget(settings.html_limits.max_message_chars)
            location = locate(text, settings.placement, parser=settings.html_parser,
                              limits=settings.html_limits, budget=budget)
            locators.append(location.method)
            offset, insertion = location.offset, disclaimer.html_fragment
        else:
            newline = message.newline.decode("ascii")
            offset, insertion = text_insertion(text, disclaimer.text, settings.placement,
                                               newline=newline, flowed=body.flowed)
        spliced = splice_text(result, body, text, offset, insertion, codec)
        if spliced is not None:
            result = spliced
        else:
            edited = text[:offset] + insertion + text[offset:]
            del text  # a large body is held once while it is written back
            if is_html and not _fits(edited, label_codec_name(body.charset)):
                # replace_text will make the part UTF-8: the document must say so too
                edited = _META_CHARSET().sub(r"\g<1>utf-8", edited, count=1)
            try:
                result = result.replace_text(path, edited)
            except (UnsafeHeaderValueError, LimitExceededError):  # no Content-Type to write
                skipped.append((path, "unwritable-content-type"))
                continue
        inserted.append(path)
    protected.sort()
    outcome = Insertion(result, tuple(inserted), tuple(present), tuple(skipped),
                        tuple(protected), locators=tuple(locators))
    if not protected or settings.signed == "skip":
        return outcome
    if (inserted or present or any(_signed_carries(message, p, disclaimer) for p in protected)
            or _wrapped_before(message, disclaimer)):
        return outcome  # a body a reader sees carries it: nothing to wrap or refuse
    if settings.signed == "reject":
        return Insertion(message, protected=tuple(protected), refused=True)
    return Insertion(_wrap(result, disclaimer), tuple(inserted), tuple(present),
                     tuple(skipped), tuple(protected), wrapped=True, locators=tuple(locators))


def _fits(text: str, codec: str) -> bool:
    """True when ``codec`` gives ``text`` back unchanged (as replace_text requires)."""
    try:
        return text.encode(codec).decode(codec) == text
    except UnicodeError:
        return False


def _signed_carries(message: Message, path: Path, disclaimer: Disclaimer) -> bool:
    """True when the signed content at ``path`` (readable, not encrypted) has the disclaimer."""
    entity = message.part(path)
    if entity.mime_type != "multipart/signed" or not entity.children:
        if entity.is_multipart or entity.mime_type not in BODY_TYPES:
            return False
        text, _ = decode_body(entity)
        return text is not None and disclaimer.carried_by(
            text, is_html=entity.mime_type == BODY_TYPES[1])
    stack = [entity.children[0]]
    while stack:
        part = stack.pop()
        if part.is_multipart:
            stack.extend(part.children)
            continue
        if part.mime_type in BODY_TYPES and not part.is_attachment:
            text, _ = decode_body(part)
            if text is not None and disclaimer.carried_by(
                    text, is_html=part.mime_type == BODY_TYPES[1]):
                return True
    return False


def _wrapped_before(message: Message, disclaimer: Disclaimer) -> bool:
    """True when ``message`` is an earlier :func:`_wrap`: a ``multipart/mixed`` whose last
    part is an inline text part carrying the disclaimer (``top`` and ``reply`` look at the
    first body only, which is the protected one)."""
    root = message.root
    if root.mime_type != "multipart/mixed" or len(root.children) < 2:
        return False
    last = root.children[-1]
    if last.is_multipart or last.mime_type != BODY_TYPES[0] or last.is_attachment:
        return False
    text, _ = decode_body(last)
    return text is not None and disclaimer.carried_by(text, is_html=False)


def _wrap(message: Message, disclaimer: Disclaimer) -> Message:
    """The whole message, byte for byte, followed by a plain-text disclaimer part."""
    text = "\n".join(disclaimer.text.splitlines()) + "\n"
    charset = "us-ascii" if text.isascii() else "utf-8"
    leaf = build_leaf("text/plain", text, charset=charset,
                      fields=[("Content-Disposition", "inline")], newline=message.newline)
    return message.wrap((), subtype="mixed", after=(leaf,))
