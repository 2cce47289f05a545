"""``mailroute keys``: the key directory of the policy's ``[crypto]`` section.

``import FILE``, ``list``, ``show FPR``, ``pin FPR``, ``trust FPR LEVEL``, ``hold FPR``,
``release FPR``, ``remove FPR``, ``export FPR``. ``FPR`` is a fingerprint or an unambiguous
prefix of one (at least 8 hex digits). ``--json`` writes one JSON document on standard output
whose shape is stable (docs/keys.md). Exit codes: 0 done, 1 no such key (or an import that
found nothing), 75 the directory is unavailable, 78 a bad policy or file.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from mailroute.commands.common import report_config_error, write_stdout_text
from mailroute.cryptopolicy.model import DIRECTORY_KEY
from mailroute.errors import ConfigError, PolicyError, TemporaryError
from mailroute.exitcodes import ExitCode
from mailroute.keys.directory import KeyDirectory, KeyKind, KeyRecord, Trust
from mailroute.policy import load_policy

__all__ = ["record_json", "register"]

JSON_VERSION = 1
_HEX = re.compile(r"[0-9A-Fa-f]{8,}")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``keys`` with its actions."""
    parser = subparsers.add_parser(
        "keys", help="the key directory: import, list, show, pin, trust, hold, release, "
                     "remove, export",
        description="Correspondents' certificates and OpenPGP keys in the policy's key "
                    "directory ([crypto.directory]). Exit codes: 0 done, 1 no such key, "
                    "75 directory unavailable, 78 bad policy or file.")
    actions = parser.add_subparsers(dest="keys_action", metavar="ACTION", required=True)
    subs = {
        "import": actions.add_parser("import", help="import a certificate (PEM/DER) or an "
                                                    "OpenPGP key as manual or verified"),
        "list": actions.add_parser("list", help="one line per key"),
        "show": actions.add_parser("show", help="everything about one key"),
        "pin": actions.add_parser("pin", help="never replace this key automatically"),
        "trust": actions.add_parser("trust", help="set the trust level of a key"),
        "hold": actions.add_parser("hold", help="stop using a key until it is released"),
        "release": actions.add_parser("release", help="use a held key (retires the key it "
                                                      "replaces)"),
        "remove": actions.add_parser("remove", help="delete a key"),
        "export": actions.add_parser("export", help="write a key: PEM certificate or the "
                                                    "OpenPGP key as stored"),
    }
    subs["import"].add_argument("file", type=Path, metavar="FILE")
    subs["import"].add_argument("--address", help="only for this address (it must be "
                                                  "one the key names)")
    subs["import"].add_argument("--trust", choices=("manual", "verified"), default="manual",
                                help="verified needs --ca: the certificate must chain to it")
    subs["import"].add_argument("--ca", type=Path, action="append", default=[],
                                metavar="FILE", help="trust anchors for --trust verified "
                                                     "(intermediates may follow the "
                                                     "certificate in FILE)")
    subs["import"].add_argument("--pin", action="store_true", help="pin the imported key")
    subs["list"].add_argument("--address", help="only the keys of this address")
    for name in ("show", "pin", "trust", "hold", "release", "remove", "export"):
        subs[name].add_argument("fingerprint", metavar="FPR")
    subs["pin"].add_argument("--off", action="store_true", help="unpin instead")
    subs["trust"].add_argument("level", choices=[t.value for t in Trust], metavar="LEVEL")
    subs["export"].add_argument("--out", type=Path, metavar="FILE",
                                help="write here instead of standard output")
    for sub in subs.values():
        sub.add_argument("--config", required=True, metavar="POLICY.toml",
                         help="the policy file (its [crypto.directory])")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the chosen action."""
    try:
        directory = _directory(args.config)
        return _ACTIONS[args.keys_action](directory, args)
    except ConfigError as error:
        return report_config_error(error)
    except TemporaryError as error:  # the status line first (CLI.md), as for every 75
        sys.stderr.write(f"{error.reply.status} {error}\n")
        return ExitCode.TEMPFAIL
    except (PolicyError, LookupError) as error:
        sys.stderr.write(f"mailroute: {error.args[0] if error.args else error}\n")
        return ExitCode.NEGATIVE


def _directory(config: str) -> KeyDirectory:
    pipeline = load_policy(config)
    directory = pipeline.context.keys.get(DIRECTORY_KEY) if pipeline.context else None
    if not isinstance(directory, KeyDirectory):
        raise ConfigError("the policy has no [crypto] section (no key directory)",
                          source=config)
    return directory


def _iso(stamp: float) -> str | None:
    if not stamp:
        return None
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_json(record: KeyRecord) -> dict[str, object]:
    """The stable JSON form of one key (docs/keys.md)."""
    return {"fingerprint": record.fingerprint, "address": record.address,
            "kind": record.kind.value, "trust": record.trust.value,
            "state": record.state.value, "pinned": record.pinned,
            "revoked": record.revoked, "not_before": _iso(record.not_before),
            "not_after": _iso(record.not_after),
            "capabilities": list(record.capabilities), "preferred": record.preferred,
            "source": record.source, "first_seen": _iso(record.first_seen),
            "last_seen": _iso(record.last_seen)}


def _emit(args: argparse.Namespace, document: Mapping[str, object], text: str) -> None:
    if args.json:
        write_stdout_text(json.dumps({"version": JSON_VERSION, **document}, indent=2) + "\n")
    else:
        write_stdout_text(text)


def _line(record: KeyRecord) -> str:
    flags = ",".join(f for f in ("pinned" if record.pinned else "",
                                 "revoked" if record.revoked else "") if f) or "-"
    return (f"{record.fingerprint[:16]} {record.address} {record.kind.value} "
            f"{record.trust.value} {record.state.value} {flags} "
            f"{_iso(record.not_after) or '-'} {','.join(record.capabilities) or '-'}\n")


def _resolve(directory: KeyDirectory, text: str) -> list[KeyRecord]:
    """Every entry of the key ``text`` names (a fingerprint or a unique prefix)."""
    if not _HEX.fullmatch(text):
        raise LookupError(f"{text!r} is not a fingerprint (at least 8 hex digits)")
    wanted = text.lower()
    entries = [r for r in directory.all_keys() if r.fingerprint.lower().startswith(wanted)]
    fingerprints = {r.fingerprint for r in entries}
    if not fingerprints:
        raise LookupError(f"no key {text}")
    if len(fingerprints) > 1:
        raise LookupError(f"{text} names {len(fingerprints)} keys; give more digits")
    return entries


def _list(directory: KeyDirectory, args: argparse.Namespace) -> int:
    records = directory.all_keys(address=args.address)
    _emit(args, {"keys": [record_json(r) for r in records]},
          "".join(_line(r) for r in records))
    return ExitCode.OK


def _show(directory: KeyDirectory, args: argparse.Namespace) -> int:
    entries = _resolve(directory, args.fingerprint)
    details = _details(entries[0])
    document = {"keys": [record_json(r) for r in entries], "details": details}
    text = "".join(_line(r) for r in entries) + "".join(f"  {k}: {v}\n"
                                                       for k, v in details.items())
    _emit(args, document, text)
    return ExitCode.OK


def _details(record: KeyRecord) -> dict[str, object]:
    if record.kind is not KeyKind.SMIME:
        return {"fingerprint": record.fingerprint}
    from cryptography import x509
    cert = x509.load_der_x509_certificate(record.data)
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "serial": format(cert.serial_number, "x"), "sha256": record.fingerprint}


def _change(action: Callable[[KeyDirectory, str, argparse.Namespace], object], done: str
            ) -> Callable[[KeyDirectory, argparse.Namespace], int]:
    def handler(directory: KeyDirectory, args: argparse.Namespace) -> int:
        fingerprint = _resolve(directory, args.fingerprint)[0].fingerprint
        action(directory, fingerprint, args)
        result = done if not getattr(args, "off", False) else "unpinned"
        _emit(args, {"fingerprint": fingerprint, "result": result},
              f"{fingerprint[:16]} {result}\n")
        return ExitCode.OK
    return handler


def _export(directory: KeyDirectory, args: argparse.Namespace) -> int:
    record = _resolve(directory, args.fingerprint)[0]
    if record.kind is KeyKind.SMIME:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding
        data = x509.load_der_x509_certificate(record.data).public_bytes(Encoding.PEM)
    else:
        data = record.data
    if args.out is not None:
        args.out.write_bytes(data)
    elif args.json:
        _emit(args, {"fingerprint": record.fingerprint, "kind": record.kind.value,
                     "data": base64.b64encode(data).decode("ascii")}, "")
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return ExitCode.OK


def _import(directory: KeyDirectory, args: argparse.Namespace) -> int:
    from mailroute.keys.secretfile import read_public_file
    data = read_public_file(args.file, what="key file")
    trust = Trust(args.trust)
    records = _records(data, trust, args.address, args.file, args.ca)
    if not records:
        raise LookupError(f"no usable key for {args.address or 'any address'} in {args.file}")
    results = []
    now = time.time()
    for record in records:
        state = directory.put(record, now)
        if args.pin and state.value == "active":
            directory.set_pinned(record.fingerprint, True)
        results.append({"fingerprint": record.fingerprint, "address": record.address,
                        "kind": record.kind.value, "state": state.value})
    _emit(args, {"imported": results},
          "".join(f"{r['fingerprint']!s:.16} {r['address']} {r['kind']} {r['state']}\n"
                  for r in results))
    return ExitCode.OK


def _records(data: bytes, trust: Trust, address: str | None, path: Path,
             anchors: list[Path]) -> list[KeyRecord]:
    from mailroute.filters.crypto import pgp_records, smime_record
    from mailroute.keys.addresses import certificate_emails
    wanted = address.strip().lower() if address else None
    if b"-----BEGIN PGP" in data or (data[:1] and data[0] & 0x80 and data[:1] != b"\x30"):
        if trust is Trust.VERIFIED:
            raise ConfigError("--trust verified is for certificates that chain to --ca",
                              source=str(path))
        return list(pgp_records(data, trust, source="import", address=wanted))
    from mailroute.keys.certstore import all_certificates, load_certificates
    certificates = load_certificates(path)
    if trust is Trust.VERIFIED:
        from mailroute.smime import TrustAnchors
        roots = TrustAnchors(tuple(all_certificates(anchors)))
        verdict = roots.check(certificates[0], certificates[1:],
                              datetime.datetime.now(datetime.UTC))
        if verdict.status != "valid":
            raise LookupError(f"{path}: not verified against --ca: {verdict.status} "
                              f"({verdict.detail})")
        certificates = certificates[:1]
    return [smime_record(cert, email.lower(), trust, source="import")
            for cert in certificates for email in certificate_emails(cert)
            if wanted is None or email.lower() == wanted]


_ACTIONS: dict[str, Callable[[KeyDirectory, argparse.Namespace], int]] = {
    "import": _import,
    "list": _list,
    "show": _show,
    "pin": _change(lambda d, f, a: d.set_pinned(f, not a.off), "pinned"),
    "trust": _change(lambda d, f, a: d.set_trust(f, Trust(a.level)), "trust changed"),
    "hold": _change(lambda d, f, a: d.hold(f), "held"),
    "release": _change(lambda d, f, a: d.release(f, time.time()), "released"),
    "remove": _change(lambda d, f, a: d.remove(f), "removed"),
    "export": _export,
}
