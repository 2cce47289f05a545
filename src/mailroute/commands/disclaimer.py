"""``mailroute disclaimer``: insert a disclaimer into one message (CLI.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mailroute.commands.common import (
    add_envelope_arguments,
    add_io_arguments,
    run_filter_command,
    template_variable,
)

__all__ = ["register"]

OPTION_NAMES = ("text", "html", "position", "var", "directory", "missing", "signed", "invites",
                "auto_replies", "html_parser", "html_max_chars", "html_max_depth",
                "html_max_message_chars")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``disclaimer``."""
    parser = subparsers.add_parser(
        "disclaimer", help="insert a disclaimer (HTML into HTML parts, text into text parts)",
        description="Insert a disclaimer once into every text and HTML body of the message on "
                    "standard input, in each body's own charset and transfer encoding; "
                    "attachments, invitations, reports and every byte not edited are kept. "
                    "Signed or encrypted mail is wrapped (untouched) with a disclaimer part. "
                    "Each flag is also a policy key of filter = \"disclaimer\" (without "
                    "dashes, - as _). Exit codes: 0 done, 65 malformed input, 69 refused "
                    "(--signed reject), 75 try again, 78 bad configuration.")
    parser.add_argument("--text", required=True, type=Path, metavar="FILE",
                        help="the plain-text disclaimer (UTF-8 template)")
    parser.add_argument("--html", type=Path, metavar="FILE",
                        help="the HTML disclaimer fragment (default: the text one, escaped)")
    parser.add_argument("--position", choices=("bottom", "top", "reply"),
                        help="bottom (default), top, or reply: above the quoted part of a reply")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        type=template_variable,
                        help="a template variable ({{name}} or %%%%Name%%%%), repeatable")
    parser.add_argument("--directory", type=Path, metavar="FILE",
                        help="sender directory (.csv or .toml keyed by e-mail address)")
    parser.add_argument("--missing", choices=("empty", "skip"),
                        help="a variable without value renders empty (default) or skips the "
                             "disclaimer")
    parser.add_argument("--signed", choices=("wrap", "skip", "reject"),
                        help="signed/encrypted mail: wrap (default), skip or reject")
    parser.add_argument("--invites", choices=("skip", "bodies"),
                        help="calendar invitations: skip (default) or edit their bodies")
    parser.add_argument("--auto-replies", choices=("skip", "add"),
                        help="automatic replies: skip (default) or add the disclaimer")
    parser.add_argument("--html-parser", choices=("auto", "html5lib"),
                        help="auto (default): linear scan when unambiguous, else html5lib")
    parser.add_argument("--html-max-chars", type=int, metavar="N",
                        help="HTML bodies longer than N characters skip html5lib")
    parser.add_argument("--html-max-depth", type=int, metavar="N",
                        help="HTML nested deeper than N skips html5lib")
    parser.add_argument("--html-max-message-chars", type=int, metavar="N",
                        help="html5lib sees at most N characters of HTML per message")
    add_io_arguments(parser)
    add_envelope_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the disclaimer filter over the input."""
    return run_filter_command(args, "disclaimer", OPTION_NAMES)
