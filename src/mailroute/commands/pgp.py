"""``mailroute pgp sign|encrypt|decrypt|verify`` (CLI.md), over the ``pgp-*`` filters.

``sign``, ``encrypt`` and ``decrypt`` are transforms (stdin or ``--in`` to stdout or
``--out``, nothing written on failure). ``decrypt`` fails (69, nothing on stdout) when the
message is not PGP-encrypted or cannot be decrypted with an integrity check. ``verify``
prints one line per signature on standard error, or the JSON object of CLI.md with
``--json``, and exits 0 only when a signature covering the whole message is valid and made
by a key of the From address.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mailroute.commands.common import (
    add_envelope_arguments,
    add_io_arguments,
    options_from_args,
    read_message,
    report_config_error,
    run_filter_command,
    write_status,
    write_stdout_text,
)
from mailroute.errors import ConfigError, MessageError, TemporaryError
from mailroute.exitcodes import ExitCode
from mailroute.limits import DEFAULT_LIMITS
from mailroute.policy import build_filter

__all__ = ["register"]

_COMMON = ("gnupghome", "passphrase_file", "timeout")
_SIGN = (*_COMMON, "signer")
_ENCRYPT = (*_COMMON, "recipient", "sign_with", "on_missing_key")
_DECRYPT = (*_COMMON, "on_failure", "require_encrypted")
_VERIFY = ("gnupghome", "timeout")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pgp sign``, ``pgp encrypt``, ``pgp decrypt`` and ``pgp verify``."""
    parser = subparsers.add_parser(
        "pgp", help="PGP/MIME (RFC 3156) sign, encrypt, decrypt, verify with GnuPG",
        description="PGP/MIME over a real gpg, on a private GnuPG home that never uses the "
                    "network. See docs/pgp.md.")
    actions = parser.add_subparsers(dest="pgp_command", metavar="ACTION", required=True)

    sign = actions.add_parser(
        "sign", help="PGP/MIME signature (multipart/signed)",
        description="Sign the message content (canonical CRLF, 7-bit safe) with a detached "
                    "SHA-256 signature: multipart/signed; protocol=\"application/pgp-"
                    "signature\"; micalg=pgp-sha256. Exit 0 ok, 65 malformed input, 69 the "
                    "key cannot sign, 75 gpg timed out, 78 bad configuration.")
    _common(sign, passphrase=True)
    sign.add_argument("--signer", required=True, metavar="ID",
                      help="fingerprint or address of the secret signing key")
    _io(sign, run_sign)

    encrypt = actions.add_parser(
        "encrypt", help="PGP/MIME encryption (multipart/encrypted), optionally signed",
        description="Encrypt the message content to every recipient key (RFC 3156 "
                    "multipart/encrypted); with --sign-with one combined signed and "
                    "encrypted OpenPGP message. Exit 0 ok, 65 malformed input, 69 a recipient "
                    "has no usable key (or --on-missing-key reject), 75 gpg timed out or "
                    "--on-missing-key tempfail, 78 bad configuration.")
    _common(encrypt, passphrase=True)
    encrypt.add_argument("--recipient", required=True, action="extend", nargs="+",
                         metavar="ID", help="fingerprint or address of a recipient key "
                                            "(repeatable)")
    encrypt.add_argument("--sign-with", metavar="ID",
                         help="also sign with this secret key (combined form)")
    encrypt.add_argument("--on-missing-key", choices=("reject", "tempfail", "pass"),
                         help="what a recipient without a usable key does (default reject)")
    _io(encrypt, run_encrypt)

    decrypt = actions.add_parser(
        "decrypt", help="decrypt; write the inner message",
        description="Decrypt a PGP/MIME (or inline PGP) message and write the outer header "
                    "fields, without the encrypted layer's Content-* fields, followed by the "
                    "decrypted entity. Only output authenticated by DECRYPTION_OKAY and an "
                    "integrity check (MDC or AEAD) is written. Exit 0 ok, 65 malformed input, "
                    "69 not encrypted or not decryptable (nothing written), 75 gpg timed out.")
    _common(decrypt, passphrase=True)
    decrypt.set_defaults(on_failure="reject", require_encrypted=True)
    _io(decrypt, run_decrypt)

    verify = actions.add_parser(
        "verify", help="verify; exit 0 only when valid",
        description="Verify every PGP/MIME and inline PGP signature and say what each covers. "
                    "Exit 0 only when a signature covering the whole message is good and "
                    "its key has a user ID with the From address; 1 otherwise (invalid, "
                    "unknown key, signer other than From, only a part signed, unsigned); "
                    "65 malformed input; 75 gpg timed out.")
    _common(verify, passphrase=False)
    verify.add_argument("--json", action="store_true",
                        help='print {"valid", "reason", "signers": [...]} on standard output')
    verify.add_argument("--in", dest="in_file", metavar="FILE", type=Path,
                        help="read the message from FILE instead of standard input")
    verify.set_defaults(handler=run_verify)


def _common(parser: argparse.ArgumentParser, *, passphrase: bool) -> None:
    parser.add_argument("--gnupghome", required=True, metavar="DIR", type=Path,
                        help="the GnuPG home of the key store (mode 0700)")
    parser.add_argument("--timeout", type=int, metavar="SECONDS",
                        help="seconds one gpg call may take (default 30)")
    if passphrase:
        parser.add_argument("--passphrase-file", metavar="FILE", type=Path,
                            help="file holding the secret key's passphrase (one line, "
                                 "mode 0600); never given on the command line")


def _io(parser: argparse.ArgumentParser, handler: object) -> None:
    add_io_arguments(parser)
    add_envelope_arguments(parser)
    parser.set_defaults(handler=handler)


def run_sign(args: argparse.Namespace) -> int:
    """Sign the input message."""
    return run_filter_command(args, "pgp-sign", _SIGN)


def run_encrypt(args: argparse.Namespace) -> int:
    """Encrypt the input message."""
    return run_filter_command(args, "pgp-encrypt", _ENCRYPT)


def run_decrypt(args: argparse.Namespace) -> int:
    """Decrypt the input message."""
    return run_filter_command(args, "pgp-decrypt", _DECRYPT)


def run_verify(args: argparse.Namespace) -> int:
    """Verify the input message and report every signature and its coverage."""
    from mailroute.filters.pgp import PgpVerifyFilter
    from mailroute.pgp.verify import verify_message

    try:
        options = options_from_args(args, _VERIFY)
        step = build_filter("pgp-verify", options)
        options.finish()
    except ConfigError as error:
        return report_config_error(error)
    assert isinstance(step, PgpVerifyFilter)
    message = read_message(args)
    if isinstance(message, ExitCode):
        return message
    try:
        verification = verify_message(step.store, message, limits=DEFAULT_LIMITS)
    except MessageError as error:
        write_status(error.reply)
        return ExitCode.DATAERR
    except TemporaryError as error:
        write_status(error.reply)
        return ExitCode.TEMPFAIL
    if args.json:
        write_stdout_text(json.dumps(verification.to_json()) + "\n")
    else:
        sys.stderr.write(f"pgp {verification.verdict}: {verification.reason}\n")
        if verification.protected is not None:
            sys.stderr.write(f"protected headers: {verification.protected.summary()}\n")
        for signer in verification.reports:
            who = signer.check.primary_fingerprint or signer.check.key_id or "unknown key"
            sys.stderr.write(f"signature by {who} covering {signer.covers_text}: "
                             f"{signer.reason}\n")
    return ExitCode.OK if verification.valid else ExitCode.NEGATIVE
