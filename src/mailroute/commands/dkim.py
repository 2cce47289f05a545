"""``mailroute dkim sign|verify`` (CLI.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mailroute.commands.common import (
    add_envelope_arguments,
    add_io_arguments,
    one_line,
    read_message,
    report_config_error,
    run_filter_command,
    seconds,
    timeout,
    unix_time,
    write_stdout_text,
)
from mailroute.errors import ConfigError, MalformedMessageError
from mailroute.exitcodes import ExitCode

if TYPE_CHECKING:
    from mailroute.item import Context, Filter, MailItem
    from mailroute.results import Outcome

__all__ = ["register"]

_SIGN = ("domain", "selector", "key", "algorithm", "expire_after", "from_domains")
# Spelled out: this module is loaded for every `mailroute` run, mailroute.dkim needs the extra.
_ALGORITHMS = ("rsa-sha256", "ed25519-sha256")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dkim sign`` and ``dkim verify``."""
    dkim = subparsers.add_parser("dkim", help="DKIM sign and verify",
                                 description="DKIM (RFC 6376) for one message.")
    commands = dkim.add_subparsers(dest="dkim_command", metavar="ACTION", required=True)
    sign = commands.add_parser(
        "sign", help="add a DKIM-Signature",
        description="Add one DKIM-Signature field at the top (relaxed/relaxed, From, To, "
                    "Cc, Subject, Date, Message-ID, Content-Type and MIME-Version "
                    "oversigned); no other byte changes. An ambiguous message is refused "
                    "(exit 65).")
    sign.add_argument("--domain", required=True, type=one_line,
                      help="the signing domain (d=)")
    sign.add_argument("--selector", required=True, type=one_line, help="the selector (s=)")
    sign.add_argument("--key", required=True, type=Path, metavar="FILE",
                      help="PEM private key: PKCS#8 or traditional RSA, Ed25519 as PKCS#8")
    sign.add_argument("--algorithm", choices=_ALGORITHMS,
                      help="checked against the key (default: the key's)")
    sign.add_argument("--expire-after", type=seconds, metavar="SECONDS",
                      help="add x= this many seconds after t=")
    sign.set_defaults(from_domains=["*"],
                      handler=lambda a: run_filter_command(a, "dkim-sign", _SIGN,
                                                           wrap=_MustSign))
    add_io_arguments(sign)
    add_envelope_arguments(sign)

    verify = commands.add_parser(
        "verify", help="verify every signature; exit 0 only when all are valid",
        description="Verify every DKIM-Signature. Exit 0 when there is at least one and "
                    "all pass, 1 otherwise (unsigned included), 65 for a message that "
                    "cannot be parsed, 78 for an unreadable --dns-file.")
    verify.add_argument("--dns-file", type=Path, metavar="FILE",
                        help="'NAME TXT-VALUE' lines used instead of DNS")
    verify.add_argument("--dns-timeout", type=timeout, default=5.0, metavar="SECONDS",
                        help="DNS lookup timeout (default 5); a timeout is temperror")
    verify.add_argument("--allow-length", action="store_true",
                        help="accept l= with content beyond it")
    verify.add_argument("--now", type=unix_time, metavar="UNIX_TIME",
                        help="judge x= expiry at this time instead of the clock")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    add_io_arguments(verify)
    add_envelope_arguments(verify)
    verify.set_defaults(handler=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Verify every signature of the input message and report each."""
    from mailroute.dkim import VerifyOptions, load_dns_file, verify_message
    from mailroute.dkim.dns import DnsLookup
    from mailroute.dkim.verify import TxtLookup

    try:
        lookup: TxtLookup = (load_dns_file(args.dns_file) if args.dns_file is not None
                             else DnsLookup(args.dns_timeout))
    except ConfigError as error:
        return report_config_error(error)
    message = read_message(args)
    if isinstance(message, ExitCode):
        return message
    now = args.now if args.now is not None else time.time()
    results = verify_message(message, lookup, now=now,
                             options=VerifyOptions(allow_length=args.allow_length))
    valid = bool(results) and all(r.valid for r in results)
    if not results:
        reason = "no-signature"
    elif valid:
        reason = "pass"
    else:
        failed = next(r for r in results if not r.valid)
        reason = f"{failed.status.value}: {failed.reason}"
    signers = [{"email": r.identity or f"@{r.domain}", "subject": f"d={r.domain} s={r.selector}",
                "valid": r.valid, "reason": r.reason or r.status.value,
                "result": r.status.value, "domain": r.domain, "selector": r.selector,
                "algorithm": r.algorithm} for r in results]
    if args.json:
        write_stdout_text(json.dumps({"valid": valid, "reason": reason,
                                     "signers": signers}) + "\n")
    else:
        sys.stderr.write(f"dkim {reason}\n")
        for signer in signers:
            detail = "" if signer["reason"] == signer["result"] else f" {signer['reason']}"
            sys.stderr.write(f"signature {signer['subject']} {signer['algorithm']}: "
                             f"{signer['result']}{detail}\n")
    return ExitCode.OK if valid else ExitCode.NEGATIVE


class _MustSign:
    """``dkim sign`` promises a signature: a message the filter passes unsigned for want of
    one From field is malformed input (65), not a success."""

    name = "dkim-sign"

    def __init__(self, inner: Filter) -> None:
        self.inner = inner

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Run the filter; refuse the message when it could not be signed."""
        from mailroute.filters.dkim import SKIPPED_NO_FROM
        from mailroute.item import MailItem

        result = self.inner.apply(item, ctx)
        if isinstance(result, MailItem) and result.annotation("dkim-sign") == SKIPPED_NO_FROM:
            raise MalformedMessageError("a message to DKIM-sign needs exactly one From field")
        return result
