"""``mailroute marker keygen|rotate|status``: the marker key file's life cycle.

``keygen`` writes a new key file (mode 0600, never over an existing file); ``rotate`` adds a
key that signs from now on and keeps the older ones for verification for ``--keep`` seconds
(default the loop window, 3600); ``status`` lists every key with its state and age. Exit 0
done, 78 the key file is missing, unsafe or invalid, or would be overwritten.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mailroute.commands.common import one_line, seconds, unix_time, write_stdout_text
from mailroute.errors import ConfigError
from mailroute.exitcodes import ExitCode
from mailroute.marker.keyfile import (
    iso,
    key_states,
    new_key_file,
    new_tag,
    read_key_file,
    rotate,
    write_key_file,
)

__all__ = ["register_key_actions"]


def register_key_actions(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``keygen``, ``rotate`` and ``status`` under ``marker``."""
    keygen = actions.add_parser(
        "keygen", help="write a new marker key file (mode 0600)",
        description="Write a new key file with one random 32-byte key that signs from now on. "
                    "An existing file is never overwritten (use rotate). Exit 0 written, "
                    "78 the file exists or cannot be written.")
    _key_file(keygen)
    keygen.add_argument("--org-id", required=True, metavar="ID", type=_org_id,
                        help="the organisation id bound into every marker (e.g. the tenant "
                             "domain)")
    keygen.add_argument("--tag", metavar="TAG",
                        help="the deployment tag, 6 characters a-z2-7 (default: random); "
                             "Exchange rules match it, so it must equal the topology's "
                             "[gateway.marker] tag")
    keygen.add_argument("--id", dest="kid", metavar="KID",
                        help="the key id, 1-8 characters a-z0-9 (default: kYYMMDD)")
    _now(keygen)
    keygen.set_defaults(handler=run_keygen)

    rotater = actions.add_parser(
        "rotate", help="add a new signing key; keep the old ones for verification",
        description="Add a key that signs from now on; older keys stop signing now and still "
                    "verify for --keep seconds, so markers minted a moment ago are "
                    "recognised when Exchange hands a message back. Keys past their "
                    "verification window are removed. The file keeps its owner and mode "
                    "0600. Exit 0 rotated, 78 bad key file.")
    _key_file(rotater)
    rotater.add_argument("--keep", type=seconds, default=3600, metavar="SECONDS",
                         help="how long older keys still verify (default 3600, the "
                              "marker-verify loop_window; use at least max_age to keep "
                              "stale markers valid too)")
    rotater.add_argument("--id", dest="kid", metavar="KID",
                         help="the new key id (default: kYYMMDD, a letter added if taken)")
    _now(rotater)
    rotater.set_defaults(handler=run_rotate)

    status = actions.add_parser(
        "status", help="list the keys: id, state, age, windows; which one signs",
        description="List every key of the key file with its state now (signing, may sign, "
                    "verify only, not yet valid, retired), its age and its windows. Exit 0, "
                    "1 when no key may sign now, 78 bad key file.")
    _key_file(status)
    status.add_argument("--json", action="store_true",
                        help='print {"tag", "org_id", "signing", "keys": [...]} instead')
    _now(status)
    status.set_defaults(handler=run_status)


def _key_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key-file", required=True, type=Path, metavar="FILE",
                        help="the marker key file (TOML, mode 0600)")


def _now(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--now", type=unix_time, metavar="UNIX_TIME",
                        help="use this time instead of the clock (for tests)")


def _clock(args: argparse.Namespace) -> float:
    now: float | None = args.now
    return time.time() if now is None else now


def run_keygen(args: argparse.Namespace) -> int:
    """Write a new key file."""
    try:
        keys = new_key_file(tag=args.tag or new_tag(), org_id=args.org_id, now=_clock(args),
                            kid=args.kid)
        write_key_file(args.key_file, keys)
    except ConfigError as error:
        return _config_error(error)
    sys.stderr.write(f"wrote {args.key_file}: tag {keys.tag}, key {keys.keys[0].kid} signs "
                     f"from {iso(keys.keys[0].not_before)}\n")
    return ExitCode.OK


def run_rotate(args: argparse.Namespace) -> int:
    """Add a signing key to the key file."""
    if args.keep < 0:
        sys.stderr.write("mailroute marker rotate: --keep must not be negative\n")
        return ExitCode.USAGE
    try:
        before = read_key_file(args.key_file)
        after = rotate(before, now=_clock(args), keep=args.keep, kid=args.kid)
        write_key_file(args.key_file, after, replace=True)
    except ConfigError as error:
        return _config_error(error)
    new = after.keys[-1]
    dropped = sorted({k.kid for k in before.keys} - {k.kid for k in after.keys})
    sys.stderr.write(f"rotated {args.key_file}: key {new.kid} signs from {iso(new.not_before)}"
                     + (f"; removed {', '.join(dropped)}" if dropped else "") + "\n")
    return ExitCode.OK


def run_status(args: argparse.Namespace) -> int:
    """List the keys and their states."""
    now = _clock(args)
    try:
        keys = read_key_file(args.key_file)
    except ConfigError as error:
        return _config_error(error)
    states = key_states(keys, now)
    signing = next((s.kid for s in states if s.state == "signing"), None)
    if args.json:
        write_stdout_text(json.dumps({
            "tag": keys.tag, "org_id": keys.org_id, "signing": signing,
            "keys": [{"id": s.kid, "state": s.state,
                      "age_seconds": None if s.age is None else int(s.age),
                      "not_before": _or_none(s.not_before), "sign_until": _or_none(s.sign_until),
                      "verify_until": _or_none(s.verify_until)} for s in states]}) + "\n")
    else:
        lines = [f"tag {keys.tag}  org_id {keys.org_id}",
                 f"{'id':<9} {'state':<14} {'age':>8}  {'not_before':<20}  "
                 f"{'sign_until':<20}  verify_until"]
        for s in states:
            age = "-" if s.age is None else _age(s.age)
            lines.append(f"{s.kid:<9} {s.state:<14} {age:>8}  {iso(s.not_before):<20}  "
                         f"{iso(s.sign_until):<20}  {iso(s.verify_until)}")
        write_stdout_text("\n".join(lines) + "\n")
    if signing is None:
        sys.stderr.write("warning: no key may sign now: marker-set answers 4.3.0 "
                         "(run mailroute marker rotate)\n")
        return ExitCode.NEGATIVE
    return ExitCode.OK


def _config_error(error: ConfigError) -> int:
    """``error: FILE: message``, as ``mailroute check`` writes it (no MTA runs these)."""
    sys.stderr.write(f"error: {error}\n")
    return ExitCode.CONFIG


def _or_none(seconds: float | None) -> str | None:
    text = iso(seconds)
    return None if text == "-" else text


def _age(seconds: float) -> str:
    if seconds < 0:
        return "future"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _org_id(text: str) -> str:
    """argparse type of ``--org-id``: one non-empty line (the key file refuses others)."""
    if not one_line(text):
        raise ValueError("must not be empty")
    return text
