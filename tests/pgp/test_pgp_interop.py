"""mailroute's PGP/MIME against the real gpg, both ways, Ed25519/Cv25519 and RSA 2048."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mailroute import Filter, Pipeline, Result
from mailroute.filters.pgp import (
    PgpDecryptFilter,
    PgpEncryptFilter,
    PgpSignFilter,
    PgpVerifyFilter,
)
from mailroute.item import Envelope
from mailroute.mime import build_leaf, parse
from mailroute.pgp import KeyStore
from mailroute.results import Action
from tests.pgp.gpgtool import armored_message, gpg, lf_to_crlf, split_signed
from tests.pgp.messages import ENTITY, HEAD, MIXED, PLAIN, PLAIN_LF, from_bob
from tests.pgp.world import BOB_PASS, PgpWorld

pytestmark = pytest.mark.interop


@dataclass(frozen=True)
class Person:
    fpr: str
    address: str
    passphrase: str | None

    def author(self, raw: bytes) -> bytes:
        return from_bob(raw) if self.address.startswith("bob") else raw


@pytest.fixture(params=["ed25519", "rsa2048"])
def person(request: pytest.FixtureRequest, pgp_world: PgpWorld) -> Person:
    if request.param == "ed25519":
        return Person(pgp_world.alice, "alice@example.org", None)
    return Person(pgp_world.bob, "bob@example.net", BOB_PASS)


def run(step: Filter, raw: bytes, rcpt: tuple[str, ...] = ()) -> Result:
    result = Pipeline(filters=(step,)).process(raw, Envelope(rcpt_to=rcpt))
    assert result.action is Action.ACCEPT, result.reply
    return result


def signed_by(store: KeyStore, person: Person, raw: bytes) -> bytes:
    out = run(PgpSignFilter(store, person.address, person.passphrase), raw).data
    assert out is not None
    return out


# -- mailroute output, gpg checks ------------------------------------------------------------

def test_gpg_verifies_mailroute_signature(store: KeyStore, pgp_world: PgpWorld,
                                          person: Person) -> None:
    out = signed_by(store, person, person.author(PLAIN))
    assert b'protocol="application/pgp-signature"' in out
    assert b"micalg=pgp-sha256" in out
    signed, signature = split_signed(out)
    assert signed == ENTITY
    sig_file = pgp_world.peer.parent / f"sig-{person.fpr}.asc"
    sig_file.write_bytes(signature)
    result = gpg(pgp_world.peer, "--verify", str(sig_file), "-", data=signed)
    assert result.line("VALIDSIG").split()[1] == person.fpr
    assert result.has("GOODSIG")


def _gpg_verify(pgp_world: PgpWorld, raw: bytes) -> str:
    signed, signature = split_signed(raw)
    sig_file = pgp_world.peer.parent / "check.asc"
    sig_file.write_bytes(signature)
    result = gpg(pgp_world.peer, "--verify", str(sig_file), "-", data=signed)
    return result.line("VALIDSIG").split()[1] if result.has("VALIDSIG") else ""


def test_lf_message_is_signed_in_crlf_form(store: KeyStore, pgp_world: PgpWorld,
                                           person: Person) -> None:
    out = signed_by(store, person, person.author(PLAIN_LF))
    assert b"\r" not in out  # emitted in the message's own line break
    assert _gpg_verify(pgp_world, lf_to_crlf(out)) == person.fpr  # as sent over SMTP


def test_8bit_multipart_is_made_7bit_safe_before_signing(store: KeyStore, pgp_world: PgpWorld,
                                                         person: Person) -> None:
    out = signed_by(store, person, person.author(MIXED))
    signed, _ = split_signed(out)
    assert signed.isascii()
    assert b"\r\nFrom " not in signed
    assert b" \r\n" not in signed
    assert _gpg_verify(pgp_world, out) == person.fpr
    text = parse(signed)
    assert text.part((0,)).transfer_encoding == "quoted-printable"
    assert text.part((1,)).transfer_encoding == "base64"


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_gpg_decrypts_mailroute_encryption(store: KeyStore, pgp_world: PgpWorld,
                                           person: Person, signed: bool) -> None:
    step = PgpEncryptFilter(store, sign_with=person.address if signed else None,
                            passphrase=person.passphrase)
    out = run(step, person.author(PLAIN), rcpt=(person.address,)).data
    assert out is not None
    message = parse(out)
    assert message.root.mime_type == "multipart/encrypted"
    assert message.root.content_type.param("protocol") == "application/pgp-encrypted"
    version, payload = message.root.children
    assert version.mime_type == "application/pgp-encrypted"
    assert version.body_bytes() == b"Version: 1\r\n"
    assert payload.mime_type == "application/octet-stream"
    result = gpg(pgp_world.peer, "--decrypt", data=armored_message(out),
                 passphrase=person.passphrase)
    assert result.has("DECRYPTION_OKAY")
    assert result.has("GOODMDC")
    assert result.stdout == ENTITY
    assert result.has("GOODSIG") is signed
    if signed:
        assert result.line("VALIDSIG").split()[1] == person.fpr


def test_encryption_to_two_recipients(store: KeyStore, pgp_world: PgpWorld) -> None:
    out = run(PgpEncryptFilter(store), PLAIN, rcpt=("alice@example.org", "bob@example.net")).data
    assert out is not None
    packets = gpg(pgp_world.peer, "--list-packets", data=armored_message(out),
                  passphrase=BOB_PASS)
    assert sum(1 for s in packets.status if s.startswith("ENC_TO")) == 2


def test_a_missing_key_is_refused_naming_the_recipient(store: KeyStore) -> None:
    """Found by the crypto audit: the reply said "a recipient" (encrypt-by-policy names it)."""
    result = Pipeline(filters=(PgpEncryptFilter(store),)).process(
        PLAIN, Envelope(rcpt_to=("alice@example.org", "nokey@example.net")))
    assert (result.action, result.reply) == (Action.REJECT, "550 5.7.1 no PGP key for "
                                                            "nokey@example.net")


# -- gpg output, mailroute checks ------------------------------------------------------------

def gpg_signed_mail(pgp_world: PgpWorld, person: Person, entity: bytes = ENTITY) -> bytes:
    """RFC 3156 section 5, built exactly as notes/smime-pgp.md section 9 does."""
    sig = gpg(pgp_world.peer, "--detach-sign", "--armor", "--digest-algo", "SHA256",
              "-u", person.fpr, data=entity, passphrase=person.passphrase).stdout
    head = person.author(HEAD)
    return (head + b'Content-Type: multipart/signed; micalg=pgp-sha256; '
            b'protocol="application/pgp-signature"; boundary="sig-b"\r\n\r\n'
            b"--sig-b\r\n" + entity + b"\r\n--sig-b\r\n"
            b'Content-Type: application/pgp-signature; name="signature.asc"\r\n\r\n'
            + sig.replace(b"\n", b"\r\n") + b"\r\n--sig-b--\r\n")


def gpg_encrypted_mail(pgp_world: PgpWorld, person: Person, *, sign: bool,
                       extra: tuple[str, ...] = (), entity: bytes = ENTITY) -> bytes:
    args = ["--encrypt", "--armor", "-r", person.fpr, *extra]
    if sign:
        args += ["--sign", "-u", person.fpr]
    enc = gpg(pgp_world.peer, *args, data=entity, passphrase=person.passphrase)
    assert enc.returncode == 0
    return (person.author(HEAD) + b'Content-Type: multipart/encrypted; '
            b'protocol="application/pgp-encrypted"; boundary="enc-b"\r\n\r\n'
            b"--enc-b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n"
            b'--enc-b\r\nContent-Type: application/octet-stream; name="encrypted.asc"\r\n\r\n'
            + enc.stdout.replace(b"\n", b"\r\n") + b"\r\n--enc-b--\r\n")


def test_mailroute_verifies_gpg_signature(store: KeyStore, pgp_world: PgpWorld,
                                          person: Person) -> None:
    result = run(PgpVerifyFilter(store), gpg_signed_mail(pgp_world, person))
    assert result.item is not None
    (auth,) = result.item.auth_results
    assert auth.status.value == "pass"
    assert auth.properties == (("header.from", person.address),)


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_mailroute_decrypts_gpg_message(store: KeyStore, pgp_world: PgpWorld,
                                        person: Person, signed: bool) -> None:
    raw = gpg_encrypted_mail(pgp_world, person, sign=signed)
    result = run(PgpDecryptFilter(store, passphrase=person.passphrase), raw)
    assert result.item is not None
    decrypted = result.item.message.without_header("Authentication-Results").to_bytes()
    assert decrypted == person.author(HEAD) + ENTITY
    assert result.item.annotation("pgp-decrypt") == "decrypted"
    statuses = [a.status.value for a in result.item.auth_results]
    assert statuses == (["pass"] if signed else [])


def test_fields_planted_inside_the_encryption_do_not_reach_the_output(
        store: KeyStore, pgp_world: PgpWorld, person: Person) -> None:
    """pgp.md: trace and authentication fields stay the gateway's. A sender's passing result
    of this gateway and the gateway's own flag inside the encryption came out on top."""
    planted = (b"Authentication-Results: mailroute; pgp=pass header.from=ceo@corp.example\r\n"
               b"X-Mailroute-PGP: decrypted\r\nReceived: from forged by nowhere\r\n")
    raw = gpg_encrypted_mail(pgp_world, person, sign=False, entity=planted + ENTITY)
    result = run(PgpDecryptFilter(store, passphrase=person.passphrase), raw)
    assert result.item is not None
    headers = result.item.message.headers
    for name in ("Authentication-Results", "X-Mailroute-PGP", "Received"):
        assert headers.get(name) is None, name
    assert result.item.message.to_bytes().endswith(ENTITY.split(b"\r\n\r\n", 1)[1])


def test_tampered_signature_fails(store: KeyStore, pgp_world: PgpWorld, person: Person) -> None:
    raw = gpg_signed_mail(pgp_world, person).replace(b"this message", b"this messagE", 1)
    result = run(PgpVerifyFilter(store), raw)
    assert result.item is not None
    (auth,) = result.item.auth_results
    assert auth.status.value == "fail"
    assert auth.reason == "bad"
    rejected = Pipeline(filters=(PgpVerifyFilter(store, on_invalid="reject"),)).process(raw)
    assert rejected.action is Action.REJECT


def test_tampered_ciphertext_is_not_decrypted(store: KeyStore, pgp_world: PgpWorld,
                                              person: Person) -> None:
    raw = gpg_encrypted_mail(pgp_world, person, sign=False)
    lines = raw.split(b"\r\n")
    index = next(i for i, line in enumerate(lines) if len(line) == 64) + 2
    flipped = bytearray(lines[index])
    flipped[10] = ord("A") if flipped[10] != ord("A") else ord("B")
    lines[index] = bytes(flipped)
    tampered = b"\r\n".join(lines)
    result = run(PgpDecryptFilter(store, passphrase=person.passphrase), tampered)
    assert result.data == b"X-Mailroute-PGP: decrypt=failed; reason=failed\r\n" + tampered


@pytest.mark.parametrize("cipher", ["CAST5", "AES256"])
def test_stripped_mdc_is_never_decrypted_into_the_output(store: KeyStore, pgp_world: PgpWorld,
                                                         cipher: str) -> None:
    person = Person(pgp_world.alice, "alice@example.org", None)
    raw = gpg_encrypted_mail(pgp_world, person, sign=False,
                             extra=("--rfc2440", "--cipher-algo", cipher))
    packets = gpg(pgp_world.peer, "--list-packets", data=armored_message(raw))
    assert packets.line("DECRYPTION_INFO").split()[1] == "0"  # mdc_method 0: no MDC
    result = run(PgpDecryptFilter(store), raw)
    assert result.data is not None
    assert b"this message is protected" not in result.data
    assert result.data == b"X-Mailroute-PGP: decrypt=failed; reason=no-integrity\r\n" + raw
    refused = Pipeline(filters=(PgpDecryptFilter(store, on_failure="reject"),)).process(raw)
    assert refused.action is Action.REJECT
    assert refused.data is None


def test_wrapped_signed_message_still_verifies_with_gpg(store: KeyStore, pgp_world: PgpWorld,
                                                       person: Person) -> None:
    out = signed_by(store, person, person.author(PLAIN))
    message = parse(out)
    footer = build_leaf("text/plain", "-- \r\nDisclaimer: confidential.\r\n")
    wrapped = message.wrap((), after=(footer,)).to_bytes()
    assert wrapped.count(b"multipart/mixed") == 1
    assert _gpg_verify(pgp_world, wrapped) == person.fpr
    result = run(PgpVerifyFilter(store), wrapped)
    assert result.item is not None
    (auth,) = result.item.auth_results
    assert auth.status.value == "neutral"
    assert "part 1" in auth.reason


def test_disclaimer_filter_in_wrap_mode_keeps_gpg_verifying(
        store: KeyStore, pgp_world: PgpWorld, person: Person,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    from mailroute.config.options import Options
    from mailroute.policy import build_filter
    folder = tmp_path_factory.mktemp("disclaimer")
    (folder / "d.txt").write_text("Confidential: for the addressee only.\n")
    options = Options({"text": "d.txt"}, source="policy.toml", base_dir=folder)
    disclaimer = build_filter("disclaimer", options)
    options.finish()
    for raw in (signed_by(store, person, person.author(PLAIN)),
                gpg_signed_mail(pgp_world, person)):
        out = run(disclaimer, raw).data
        assert out is not None
        assert parse(out).root.mime_type == "multipart/mixed"
        assert b"Confidential: for the addressee only." in out
        assert _gpg_verify(pgp_world, out) == person.fpr
