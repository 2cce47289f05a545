"""``mailroute smime sign|encrypt|decrypt|verify`` (CLI.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mailroute.commands.common import (
    add_envelope_arguments,
    add_io_arguments,
    envelope_from_args,
    options_from_args,
    read_message,
    report_config_error,
    run_filter_command,
    unix_time,
    write_stdout_text,
)
from mailroute.errors import ConfigError, MalformedMessageError
from mailroute.exitcodes import ExitCode
from mailroute.item import Context, Filter, MailItem
from mailroute.policy import build_filter
from mailroute.records import record
from mailroute.results import Outcome

if TYPE_CHECKING:
    from mailroute.smime.verify import SignerResult, Verification

__all__ = ["register"]

_SIGN = ("cert", "key", "chain", "opaque", "passphrase_file", "pss", "digest")
_ENCRYPT = ("recipient_cert", "cipher", "oaep")
_DECRYPT = ("cert", "key", "passphrase_file", "on_failure", "flag")
_VERIFY = ("trust", "from_match")
# Spelled out rather than imported: this module is loaded for every `mailroute` run, and
# mailroute.smime needs the optional asn1crypto (the smime extra).
_CIPHERS = ("aes-256-gcm", "aes-128-gcm", "aes-256-cbc", "aes-128-cbc")
_DIGESTS = ("sha224", "sha256", "sha384", "sha512")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``smime`` and its four subcommands."""
    smime = subparsers.add_parser("smime", help="S/MIME sign, encrypt, decrypt, verify",
                                  description="S/MIME (RFC 8551) for one message.")
    commands = smime.add_subparsers(dest="smime_command", metavar="ACTION", required=True)

    sign = commands.add_parser(
        "sign", help="sign (detached multipart/signed unless --opaque)",
        description="Sign the message. The entity is canonicalised (CRLF, 7-bit transfer "
                    "encodings) and the bytes written are exactly the bytes signed.")
    sign.add_argument("--cert", required=True, type=Path, metavar="FILE",
                      help="signer certificate (PEM or DER)")
    sign.add_argument("--key", required=True, type=Path, metavar="FILE",
                      help="signer private key (PEM or DER; RSA, EC or Ed25519)")
    sign.add_argument("--chain", action="append", default=[], metavar="FILE",
                      help="intermediate certificates to include (repeatable)")
    sign.add_argument("--opaque", action="store_true", default=None,
                      help="application/pkcs7-mime signed-data instead of multipart/signed")
    sign.add_argument("--passphrase-file", type=Path, metavar="FILE",
                      help="file whose first line decrypts the key")
    sign.add_argument("--pss", action="store_true", default=None,
                      help="RSASSA-PSS instead of PKCS#1 v1.5 for RSA keys")
    sign.add_argument("--digest", choices=_DIGESTS, help="digest (default sha256)")
    _common(sign, lambda a: run_filter_command(a, "smime-sign", _SIGN))

    encrypt = commands.add_parser("encrypt", help="encrypt to every certificate given",
                                  description="Encrypt the message (application/pkcs7-mime).")
    encrypt.add_argument("--recipient-cert", action="extend", nargs="+", required=True,
                         metavar="FILE",
                         help="recipient certificates (one or more; repeatable)")
    encrypt.add_argument("--cipher", choices=_CIPHERS,
                         help="content cipher (default aes-256-gcm, AuthEnvelopedData; "
                              "CBC for clients that cannot read it)")
    encrypt.add_argument("--oaep", action="store_true", default=None,
                         help="RSAES-OAEP (SHA-256) key transport instead of PKCS#1 v1.5")
    _common(encrypt, lambda a: run_filter_command(a, "smime-encrypt", _ENCRYPT))

    decrypt = commands.add_parser(
        "decrypt", help="decrypt; writes the inner message",
        description="Decrypt a top-level S/MIME encrypted message. Writes the outer header "
                    "fields (without the encrypted layer's Content-* fields) and the "
                    "decrypted entity. Exit 65 when the message is not encrypted, 69 when "
                    "it cannot be decrypted (one message for every cause). CBC content, "
                    "which anyone on the way could have changed, is noted on stderr.")
    decrypt.add_argument("--cert", required=True, type=Path, metavar="FILE",
                         help="our certificate")
    decrypt.add_argument("--key", required=True, type=Path, metavar="FILE",
                         help="our private key (RSA)")
    decrypt.add_argument("--passphrase-file", type=Path, metavar="FILE",
                         help="file whose first line decrypts the key")
    # The output is the inner message as it was encrypted (CLI.md): no flag field.
    decrypt.set_defaults(on_failure="reject", flag=False)
    _common(decrypt, lambda a: run_filter_command(a, "smime-decrypt", _DECRYPT,
                                                  wrap=_NoteUnauthenticated))

    verify = commands.add_parser(
        "verify", help="verify every signer; exit 0 only when all are valid",
        description="Verify the top-level S/MIME signature against the trust anchors. Exit 0 "
                    "when every signer is valid, 1 otherwise (unsigned included), 65 for a "
                    "message that cannot be parsed.")
    verify.add_argument("--trust", action="extend", nargs="+", required=True, metavar="FILE",
                        help="trust anchor certificates (one or more; repeatable)")
    verify.add_argument("--from-match", action=argparse.BooleanOptionalAction, default=None,
                        help="require a signer address equal to From (default: on)")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.add_argument("--now", type=unix_time, metavar="UNIX_TIME",
                        help="judge certificate validity at this time instead of the clock "
                             "(like openssl cms -verify -attime)")
    add_io_arguments(verify)
    add_envelope_arguments(verify)
    verify.set_defaults(handler=run_verify)


def _common(parser: argparse.ArgumentParser, handler: object) -> None:
    add_io_arguments(parser)
    add_envelope_arguments(parser)
    parser.set_defaults(handler=handler)


@record(frozen=True)
class _NoteUnauthenticated:
    """Runs ``inner`` and says on stderr when the plaintext had no integrity protection."""

    inner: Filter
    name: str = "smime-decrypt"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        """Run the inner filter; write a warning line when it decrypted CBC content."""
        result = self.inner.apply(item, ctx)
        if isinstance(result, MailItem) and result.annotation("smime.authenticated") == "no":
            sys.stderr.write(f"warning: {result.annotation('smime.cipher')} content "
                             "is not integrity-protected; it may have been changed in transit\n")
        return result


def run_verify(args: argparse.Namespace) -> int:
    """Verify the input message's S/MIME signature and report every signer."""
    try:
        options = options_from_args(args, _VERIFY)
        step = build_filter("smime-verify", options)
        options.finish()
    except ConfigError as error:
        return report_config_error(error)
    from mailroute.filters.smime import SmimeVerify, verify_message

    assert isinstance(step, SmimeVerify)
    message = read_message(args)
    if isinstance(message, ExitCode):
        return message
    item = MailItem(envelope=envelope_from_args(args), message=message)
    try:
        now: float | None = args.now
        ctx = Context() if now is None else Context(clock=lambda: now)
        found = verify_message(item, ctx, step.trust, from_match=step.from_match)
        report = (_report(found[1], found[0].path) if found is not None
                  else _report(None))
    except MalformedMessageError:
        report = {"valid": False, "reason": "malformed", "signers": [], "signed_part": None}
    if args.json:
        write_stdout_text(json.dumps(report) + "\n")
    else:
        part = f" (only part {report['signed_part']} is signed)" if report["signed_part"] else ""
        sys.stderr.write(f"smime {report['reason']}{part}\n")
        for signer in report["signers"]:  # type: ignore[attr-defined]
            sys.stderr.write(f"signer {signer['email'] or signer['subject']}: "
                             f"{signer['reason']}\n")
    return ExitCode.OK if report["valid"] else ExitCode.NEGATIVE


def _report(result: Verification | None, path: tuple[int, ...] = ()) -> dict[str, object]:
    """The JSON report; ``signed_part`` (an added key) names the signed part when the
    signature covers one part of the message only (a disclaimer wrap, docs/smime.md), and
    the message is then not valid: ``partial``, as ``pgp verify`` says."""
    if result is None:
        return {"valid": False, "reason": "no-signature", "signers": [], "signed_part": None}
    part = ".".join(str(i + 1) for i in path) if path else None
    reason = "partial" if part is not None and result.valid else result.reason
    return {"valid": result.valid and part is None, "reason": reason,
            "signers": [_signer_report(s) for s in result.signers], "signed_part": part}


def _signer_report(signer: SignerResult) -> dict[str, object]:
    """One signer: the CLI.md keys, then ``encryption_key_preference`` and
    ``smime_capabilities``/``aes_gcm`` (added keys, docs/smime.md)."""
    preference: dict[str, object] | None = None
    if signer.key_preference is not None:
        target = signer.encryption_certificate
        preference = {**signer.key_preference.to_json(),
                      "certificate_subject": target.subject.rfc4514_string() if target else ""}
    return {"email": signer.email, "subject": signer.subject, "valid": signer.valid,
            "reason": signer.status.value, "encryption_key_preference": preference,
            "smime_capabilities": list(signer.capabilities), "aes_gcm": signer.aes_gcm}
