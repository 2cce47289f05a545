"""``mailroute quarantine list|release ID|delete ID``: the messages ``mailroute pipe`` held.

The store is the policy's (``[gateway] quarantine_dir``, default ``state_dir/quarantine``).
``release`` hands the message on with the envelope stored beside it (every recipient, the
original sender) and removes it only after the next hop took it.
"""

from __future__ import annotations

import argparse
import datetime
import sys

from mailroute.adapters.quarantine import DamagedEntryError, QuarantineStore
from mailroute.adapters.reinject import HandOnStatus, parse_reinject
from mailroute.commands.common import load_policy_or_report, write_stdout_text
from mailroute.commands.pipe import reinject_type
from mailroute.errors import OutputError
from mailroute.exitcodes import ExitCode

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``quarantine`` with ``list``, ``release`` and ``delete``."""
    parser = subparsers.add_parser(
        "quarantine", help="list, release or delete quarantined messages",
        description="The messages the pipe adapter quarantined. Exit codes: 0 done, 1 no such "
                    "message, 69/75 the release could not be handed on, 78 bad policy.")
    actions = parser.add_subparsers(dest="quarantine_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="one line per held message: id, time, size, "
                                              "sender, recipients, reply")
    release = actions.add_parser("release", help="hand a held message on and remove it")
    release.add_argument("id", metavar="ID")
    release.add_argument("--reinject", type=reinject_type, default=parse_reinject("sendmail"),
                         metavar="sendmail[:PATH]|smtp:HOST:PORT",
                         help="how the message is handed on (default: sendmail)")
    delete = actions.add_parser("delete", help="remove a held message")
    delete.add_argument("id", metavar="ID")
    for sub in (listing, release, delete):
        sub.add_argument("--config", required=True, metavar="POLICY.toml",
                         help="the policy file (names the quarantine)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the chosen action."""
    pipeline = load_policy_or_report(args.config)
    if isinstance(pipeline, ExitCode):
        return pipeline
    if pipeline.quarantine_dir is None:
        sys.stderr.write("mailroute: the policy names no quarantine "
                         "([gateway] quarantine_dir or state_dir)\n")
        return ExitCode.CONFIG
    store = QuarantineStore(pipeline.quarantine_dir)
    try:
        if args.quarantine_action == "list":
            return _list(store)
        if args.quarantine_action == "delete":
            store.delete(args.id)
            return ExitCode.OK
        return _release(store, args)
    except KeyError:
        sys.stderr.write(f"mailroute: no quarantined message {args.id!r}\n")
        return ExitCode.NEGATIVE
    except DamagedEntryError as error:
        sys.stderr.write(f"mailroute: {error}\n")
        return ExitCode.NEGATIVE


def _list(store: QuarantineStore) -> int:
    lines = []
    for entry in store.entries():
        when = datetime.datetime.fromtimestamp(entry.stored_at, datetime.UTC)
        lines.append(f"{entry.id} {when:%Y-%m-%dT%H:%M:%SZ} {entry.size} "
                     f"<{entry.sender}> {','.join(entry.recipients)} {entry.reply}\n")
    write_stdout_text("".join(lines))
    damaged = store.damaged()
    for entry_id in damaged:
        sys.stderr.write(f"mailroute: quarantine entry {entry_id} is damaged: its envelope "
                         f"file {entry_id}.json cannot be read; not listed\n")
    return ExitCode.NEGATIVE if damaged else ExitCode.OK


def _release(store: QuarantineStore, args: argparse.Namespace) -> int:
    entry = store.entry(args.id)
    handon = args.reinject.deliver(store.message(args.id), entry.sender, entry.recipients)
    if not handon.ok:
        sys.stderr.write(f"mailroute: {entry.id} not released: {handon.detail}\n")
        return (ExitCode.UNAVAILABLE if handon.status is HandOnStatus.PERMANENT
                else ExitCode.TEMPFAIL)
    store.delete(entry.id)
    try:
        write_stdout_text(f"{entry.id} released to {len(entry.recipients)} recipients\n")
    except OutputError:   # released all the same: the line only reports it
        sys.stderr.write(f"mailroute: {entry.id} released; the report line was not written\n")
    return ExitCode.OK
