"""Putting a disclaimer into plain text: at the bottom, at the top, or above the quoted reply.

A reply's quoted part starts at the first line that is an attribution ("On ... wrote:",
"Am ... schrieb ...:", "Le ... a écrit :"), a separator ("-----Original Message-----",
Outlook's line of underscores) or a ``>`` quote; an unknown attribution line ending in ``:``
right above the first ``>`` line counts too. The disclaimer uses the text's own line breaks.
"""

from __future__ import annotations

import re

from mailroute.patterns import on_first_use

__all__ = ["flowed_lines", "insert_text", "reply_offset", "text_insertion"]

_REPLY = re.compile(
    r"(?m)^(?:"
    r"[ \t]*-{2,}[ \t]*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|"
    r"Mensaje original|Messaggio originale|Oorspronkelijk bericht|Forwarded message|"
    r"Weitergeleitete Nachricht)[ \t]*-{2,}[ \t]*\r?$"
    r"|_{20,}[ \t]*\r?$"
    r"|On [^\r\n]{1,300}(?:\r?\n[^\r\n>]{1,300})? wrote:[ \t]*\r?$"
    r"|Am [^\r\n]{1,300}(?:\r?\n[^\r\n>]{1,300})? schrieb[^\r\n]{0,300}:[ \t]*\r?$"
    r"|Le [^\r\n]{1,300}(?:\r?\n[^\r\n>]{1,300})? a écrit ?:[ \t]*\r?$"
    r"|El [^\r\n]{1,300} escribió:[ \t]*\r?$"
    r"|Il [^\r\n]{1,300} ha scritto:[ \t]*\r?$"
    r"|Op [^\r\n]{1,300} schreef[^\r\n]{0,300}:[ \t]*\r?$"
    r"|>)")
_PREVIOUS_LINE = on_first_use(r"[^\r\n]*:[ \t]*\r?\n\Z")


def reply_offset(text: str) -> int | None:
    """Where the quoted part of a reply starts (a line start), or ``None``."""
    match = _REPLY.search(text)
    if match is None:
        return None
    start = match.start()
    if text.startswith(">", start) and start > 0:
        line_start = text.rfind("\n", 0, start - 1) + 1
        previous = text[line_start:start]
        if previous.strip() and _PREVIOUS_LINE().match(previous):
            return line_start
    return start


def _line_break(text: str, default: str) -> str:
    first = text.find("\n")
    if first < 0:
        return default
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


def flowed_lines(disclaimer: str) -> list[str]:
    """The disclaimer's lines as a ``format=flowed`` body must carry them (RFC 3676): no
    trailing space, which would join a line to the next one (4.2), except on the signature
    separator ``-- `` (4.3); a space before a line that starts with a space, ``>`` or
    ``From `` (space-stuffing, 4.4), which would otherwise read as a quote or lose a space."""
    lines = []
    for line in disclaimer.splitlines():
        if line != "-- ":
            line = line.rstrip(" ")
        if line.startswith((" ", ">", "From ")):
            line = " " + line
        lines.append(line)
    return lines


def text_insertion(text: str, disclaimer: str, placement: str, *,
                   newline: str = "\r\n", flowed: bool = False) -> tuple[int, str]:
    """Where in ``text`` the disclaimer goes (bottom, top or reply) and what is inserted.

    The disclaimer is set off by one blank line and written with the text's line breaks
    (``newline`` when the text has none); in a ``format=flowed`` text, as
    :func:`flowed_lines` writes it.
    """
    nl = _line_break(text, newline)
    lines = flowed_lines(disclaimer) if flowed else disclaimer.splitlines()
    block = nl.join(lines) + nl
    if placement == "top":
        return 0, block + nl
    offset = reply_offset(text) if placement == "reply" else None
    if offset is None:
        if not text:
            return 0, block
        ending = "" if text.endswith(("\n", "\r")) else nl
        return len(text), ending + nl + block
    head = text[:offset]
    lead = nl if head and not head.endswith(nl + nl) and head.strip() else ""
    return offset, lead + block + nl


def insert_text(text: str, disclaimer: str, placement: str, *, newline: str = "\r\n") -> str:
    """``text`` with the disclaimer inserted as :func:`text_insertion` says."""
    offset, insertion = text_insertion(text, disclaimer, placement, newline=newline)
    return text[:offset] + insertion + text[offset:]
