"""harvest-keys, encrypt-by-policy and sign-by-policy, from a policy file, end to end.

A signed inbound message from a new correspondent harvests his certificate; the next
outbound message to him is encrypted so that ``openssl cms -decrypt`` with his key reads it,
with AES-GCM when his signature advertised it (mailroute's own signer advertises
``aes256_gcm`` first) and AES-CBC when it did not (``openssl cms -sign`` advertises CBC only).
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from mailroute import Envelope
from mailroute.adapters.quarantine import QuarantineStore
from mailroute.cryptopolicy.model import DIRECTORY_KEY
from mailroute.errors import ConfigError
from mailroute.filters.crypto import HarvestKeys, parse_autocrypt
from mailroute.filters.smime import SmimeSign
from mailroute.item import Context, MailItem
from mailroute.keys.directory import KeyDirectory, KeyKind, KeyState, Trust
from mailroute.mime import parse
from mailroute.pipeline import Pipeline
from mailroute.policy import load_policy
from mailroute.results import Action
from mailroute.session import Result
from mailroute.smime import Signer, TrustAnchors
from tests.adapters.test_transport_split import Recorder, run_transport
from tests.pgp.gpgtool import copy_home, gpg, kill_agent, split_signed
from tests.pgp.world import PgpWorld
from tests.smime.pki import Identity, Pki, issue

ALICE = "alice@example.org"  # the correspondent (tests.smime.pki)
ME = "me@corp.example"
ENTITY = (b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
          b"The contract, as agreed.\r\n")


def policy_text(pki: Pki, state_dir: Path, *, gateway: str = "", crypto: str = "",
                middle: str = "", encrypt: str = "") -> str:
    """The test gateway's policy: harvest inbound, encrypt outbound; the arguments add lines
    to [gateway], tables after [crypto.trigger], filters between the two and options of
    encrypt-by-policy."""
    return f"""
[gateway]
internal_domains = ["corp.example"]
state_dir = "{state_dir}"
{gateway}

[crypto.trigger]
authenticated_networks = ["127.0.0.0/8"]
{crypto}

[[pipeline]]
filter = "harvest-keys"
trust = ["{pki.root.cert_path}"]
[pipeline.when]
direction = ["inbound"]
{middle}

[[pipeline]]
filter = "encrypt-by-policy"
{encrypt}
[pipeline.when]
direction = ["outbound"]
"""


def _policy(tmp_path: Path, pki: Pki, **parts: str) -> Pipeline:
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text(pki, tmp_path / "state", **parts))
    return load_policy(policy)


def _inbound_signed_by_mailroute(pki: Pki, *, signer_identity: Identity | None = None) -> bytes:
    identity = signer_identity or pki.alice
    message = (f"From: Alice <{ALICE}>\r\nTo: {ME}\r\nSubject: hello\r\n"
               "MIME-Version: 1.0\r\n").encode() + ENTITY
    item = MailItem(envelope=Envelope(mail_from=ALICE, rcpt_to=(ME,)), message=parse(message))
    signer = Signer(identity.cert, identity.key, (pki.issuing.cert,))
    signed = SmimeSign(signer).apply(item, Context())
    return signed.message.to_bytes()


def _inbound_signed_by_openssl(pki: Pki, tmp_path: Path) -> bytes:
    body = tmp_path / "entity.txt"
    body.write_bytes(ENTITY)
    out = subprocess.run(["openssl", "cms", "-sign", "-binary", "-in", str(body),
                          "-signer", str(pki.alice.cert_path), "-inkey", str(pki.alice.key_path),
                          "-certfile", str(pki.chain_path), "-md", "sha256"],
                         check=True, capture_output=True, timeout=60).stdout
    return (f"From: Alice <{ALICE}>\r\nTo: {ME}\r\nSubject: hello\r\n").encode() + out


def _outbound(subject: str = "Re: hello") -> bytes:
    return (f"From: Me <{ME}>\r\nTo: {ALICE}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
            ).encode() + ENTITY


def _send(pipeline: Pipeline, data: bytes, *, sender: str, rcpt: str, client: str) -> Result:
    return pipeline.process(data, Envelope(mail_from=sender, rcpt_to=(rcpt,),
                                           client_address=client))


def _directory(pipeline: Pipeline) -> KeyDirectory:
    assert pipeline.context is not None
    directory = pipeline.context.keys[DIRECTORY_KEY]
    assert isinstance(directory, KeyDirectory)
    return directory


def _openssl_decrypt(pki: Pki, data: bytes, tmp_path: Path) -> tuple[bytes, str]:
    path = tmp_path / "out.eml"
    path.write_bytes(data)
    plain = subprocess.run(["openssl", "cms", "-decrypt", "-in", str(path), "-recip",
                            str(pki.alice.cert_path), "-inkey", str(pki.alice.key_path)],
                           check=True, capture_output=True, timeout=60).stdout
    printed = subprocess.run(["openssl", "cms", "-cmsout", "-print", "-in", str(path)],
                             check=True, capture_output=True, timeout=60).stdout.decode()
    algorithm = printed.split("contentEncryptionAlgorithm:", 1)[1].split("algorithm:", 1)[1]
    return plain, algorithm.split()[0]


@pytest.mark.parametrize(("signed_by", "cipher"), [("mailroute", "aes-256-gcm"),
                                                    ("openssl", "aes-256-cbc")])
def test_harvest_then_encrypt_end_to_end(pki: Pki, tmp_path: Path, signed_by: str,
                                         cipher: str) -> None:
    pipeline = _policy(tmp_path, pki)
    before = _send(pipeline, _outbound(), sender=ME, rcpt=ALICE, client="127.0.0.1")
    assert before.action is Action.ACCEPT
    assert b"The contract, as agreed." in (before.data or b""), "no key yet: sent in clear"
    inbound = (_inbound_signed_by_mailroute(pki) if signed_by == "mailroute"
               else _inbound_signed_by_openssl(pki, tmp_path))
    result = _send(pipeline, inbound, sender=ALICE, rcpt=ME, client="203.0.113.5")
    assert result.action is Action.ACCEPT
    (record,) = _directory(pipeline).keys_for(ALICE)
    assert (record.kind, record.trust, record.state) == (KeyKind.SMIME, Trust.HARVESTED,
                                                         KeyState.ACTIVE)
    after = _send(pipeline, _outbound(), sender=ME, rcpt=ALICE, client="127.0.0.1")
    assert after.action is Action.ACCEPT
    assert after.data is not None
    assert b"The contract, as agreed." not in after.data
    plain, algorithm = _openssl_decrypt(pki, after.data, tmp_path)
    assert plain == ENTITY
    assert algorithm == cipher


def test_a_forged_signature_harvests_nothing(pki: Pki, tmp_path: Path) -> None:
    pipeline = _policy(tmp_path, pki)
    forged = _inbound_signed_by_mailroute(pki).replace(b"as agreed", b"as ag-reed")
    assert b"as ag-reed" in forged
    _send(pipeline, forged, sender=ALICE, rcpt=ME, client="203.0.113.5")
    assert _directory(pipeline).all_keys() == ()


def test_an_untrusted_chain_harvests_nothing(pki: Pki, tmp_path: Path) -> None:
    stranger = issue(tmp_path, "stranger", issuer=pki.other_root, email=ALICE)
    pipeline = _policy(tmp_path, pki)
    signed = _inbound_signed_by_mailroute(pki, signer_identity=stranger)
    _send(pipeline, signed, sender=ALICE, rcpt=ME, client="203.0.113.5")
    assert _directory(pipeline).all_keys() == ()


def test_a_signature_for_another_from_harvests_nothing(pki: Pki, tmp_path: Path) -> None:
    pipeline = _policy(tmp_path, pki)
    signed = _inbound_signed_by_mailroute(pki).replace(
        f"From: Alice <{ALICE}>".encode(), b"From: Eve <eve@example.org>")
    _send(pipeline, signed, sender="eve@example.org", rcpt=ME, client="203.0.113.5")
    assert _directory(pipeline).all_keys() == ()


def test_mandatory_without_key_is_refused_with_a_clear_text(pki: Pki, tmp_path: Path) -> None:
    pipeline = _policy(tmp_path, pki)
    result = _send(pipeline, _outbound("[secure] figures"), sender=ME, rcpt=ALICE,
                   client="127.0.0.1")
    assert result.action is Action.REJECT
    assert result.reply.startswith("550 5.7.1 "), result.reply
    assert f"encryption is required for {ALICE}" in result.reply


def test_the_trigger_tag_is_removed_before_the_message_is_encrypted(pki: Pki,
                                                                    tmp_path: Path) -> None:
    pipeline = _policy(tmp_path, pki)
    _send(pipeline, _inbound_signed_by_mailroute(pki), sender=ALICE, rcpt=ME,
          client="203.0.113.5")
    result = _send(pipeline, _outbound("Re: [secure] figures"), sender=ME, rcpt=ALICE,
                   client="127.0.0.1")
    assert result.action is Action.ACCEPT
    assert result.data is not None
    assert parse(result.data).headers.value("Subject") == "Re: figures"
    assert result.item is not None
    assert result.item.annotation("crypto.encrypt") == "smime aes-256-gcm"


def test_a_trigger_from_outside_is_ignored_and_left_alone(pki: Pki, tmp_path: Path) -> None:
    pipeline = _policy(tmp_path, pki)
    result = _send(pipeline, _outbound("[secure] figures"), sender=ME, rcpt=ALICE,
                   client="198.51.100.1")
    assert result.action is Action.ACCEPT
    assert result.data is not None
    assert parse(result.data).headers.value("Subject") == "[secure] figures"


def test_a_crypto_filter_without_a_crypto_section_is_a_config_error(pki: Pki,
                                                                    tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[[pipeline]]\nfilter = "encrypt-by-policy"\n')
    with pytest.raises(ConfigError, match=r"p\.toml:2: .*needs a \[crypto\] section"):
        load_policy(policy)


@pytest.mark.parametrize(("text", "key", "line"), [
    ('[crypto.defaults]\nencrypt = "sometimes"\n', "crypto.defaults.encrypt", 2),
    ('[crypto.trigger]\nauthenticated_networks = ["nonsense"]\n',
     "crypto.trigger.authenticated_networks", 2),
    ('[crypto]\nmin_trust = "blind"\n', "crypto.min_trust", 2),
    ('[crypto.directory]\nbackend = "mysql"\n', "crypto.directory.backend", 2),
])
def test_config_errors_name_the_file_key_and_line(tmp_path: Path, text: str, key: str,
                                                  line: int) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\n' + text)
    with pytest.raises(ConfigError) as caught:
        load_policy(policy)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{policy}:{line + 2}: ")


def test_domain_rules_errors_name_the_domain_entry(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\n'
                      '[crypto.domains."partner.example"]\nmethod = "carrier-pigeon"\n')
    with pytest.raises(ConfigError) as caught:
        load_policy(policy)
    assert caught.value.key == 'crypto.domains."partner.example".method'
    assert str(caught.value).startswith(f"{policy}:4: ")


def test_autocrypt_is_harvested_only_from_dmarc_aligned_mail(pgp_world: PgpWorld, pki: Pki,
                                                              tmp_path: Path) -> None:
    pipeline = _policy(tmp_path, pki)
    directory = _directory(pipeline)
    key = subprocess.run(["gpg", "--homedir", str(pgp_world.peer), "--batch", "--export",
                          "alice@example.org"], check=True, capture_output=True,
                         timeout=60).stdout
    header = f"addr={ALICE}; prefer-encrypt=mutual; keydata={base64.b64encode(key).decode()}"
    data = (f"From: {ALICE}\r\nTo: {ME}\r\nSubject: x\r\nAutocrypt: {header}\r\n\r\nhi\r\n"
            ).encode()
    item = MailItem(envelope=Envelope(mail_from=ALICE, rcpt_to=(ME,)), message=parse(data))
    harvest = HarvestKeys(TrustAnchors((pki.root.cert,)))
    context = pipeline.context
    assert context is not None
    unaligned = harvest.apply(item.annotate("dmarc.result", "fail")
                              .annotate("dmarc.aligned", "no"), context)
    assert unaligned.annotation("harvest-keys") == "autocrypt ignored: not DMARC-aligned"
    assert directory.all_keys() == ()
    # an aligned pass for a domain without a DMARC record (dmarc.result none) is aligned
    aligned = harvest.apply(item.annotate("dmarc.result", "none")
                            .annotate("dmarc.aligned", "yes"), context)
    assert aligned.annotation("harvest-keys") == f"autocrypt {ALICE} added"
    (record,) = directory.keys_for(ALICE)
    assert (record.kind, record.fingerprint, record.trust) == (KeyKind.PGP, pgp_world.alice,
                                                               Trust.HARVESTED)
    # an Autocrypt header for someone else than From is ignored
    other = data.replace(f"From: {ALICE}".encode(), b"From: eve@example.org")
    item = MailItem(envelope=Envelope(mail_from="eve@example.org", rcpt_to=(ME,)),
                    message=parse(other)).annotate("dmarc.result", "pass")
    assert "not the From address" in (harvest.apply(item, context).annotation("harvest-keys")
                                      or "")


@pytest.mark.parametrize("value", [
    "addr=a@b.example; keydata=!!!",
    "addr=a@b.example; critical=1; keydata=AAAA",
    "keydata=AAAA",
    "addr=a@b.example",
])
def test_unusable_autocrypt_headers_are_ignored(value: str) -> None:
    assert parse_autocrypt(value) is None


def test_autocrypt_header_parsing() -> None:
    assert parse_autocrypt("addr=A@B.example; _extra=x; keydata=AAEC\r\n AwQ=") == (
        "a@b.example", bytes([0, 1, 2, 3, 4]))


def _sign_policy(tmp_path: Path, pki: Pki) -> Pipeline:
    me = issue(tmp_path, "me", issuer=pki.issuing, email=ME)
    senders = tmp_path / "senders"
    senders.mkdir()
    for source in (me.cert_path, me.key_path, pki.chain_path):
        (senders / source.name).write_bytes(source.read_bytes())
        (senders / source.name).chmod(0o600)
    return _policy(tmp_path, pki, crypto='[crypto.defaults]\nsign = "always"',
                   middle=f'[[pipeline]]\nfilter = "sign-by-policy"\ncert_dir = "{senders}"\n'
                          '[pipeline.when]\ndirection = ["outbound"]')


def _openssl_verify(pki: Pki, data: bytes, tmp_path: Path) -> bytes:
    path = tmp_path / "signed.eml"
    path.write_bytes(data)
    return subprocess.run(["openssl", "cms", "-verify", "-in", str(path), "-CAfile",
                           str(pki.root.cert_path), "-purpose", "smimesign"], check=True,
                          capture_output=True, timeout=60).stdout


def test_sign_by_policy_signs_for_an_authenticated_inside_sender(pki: Pki,
                                                                  tmp_path: Path) -> None:
    pipeline = _sign_policy(tmp_path, pki)
    result = _send(pipeline, _outbound(), sender=ME, rcpt=ALICE, client="127.0.0.1")
    assert result.action is Action.ACCEPT
    assert result.data is not None
    assert _openssl_verify(pki, result.data, tmp_path).replace(b"\r\n", b"\n") == \
        ENTITY.replace(b"\r\n", b"\n")
    # the same message from a client outside the authenticated networks is not signed
    outside = _send(pipeline, _outbound(), sender=ME, rcpt=ALICE, client="198.51.100.1")
    assert outside.item is not None
    assert outside.item.annotation("crypto.sign") == "none"


def test_sign_then_encrypt_with_one_trigger(pki: Pki, tmp_path: Path) -> None:
    pipeline = _sign_policy(tmp_path, pki)
    _send(pipeline, _inbound_signed_by_mailroute(pki), sender=ALICE, rcpt=ME,
          client="203.0.113.5")
    result = _send(pipeline, _outbound("[secure] figures"), sender=ME, rcpt=ALICE,
                   client="127.0.0.1")
    assert result.action is Action.ACCEPT
    assert result.data is not None
    assert result.item is not None
    assert result.item.annotation("crypto.sign") == "smime"
    assert result.item.annotation("crypto.encrypt") == "smime aes-256-gcm"
    assert parse(result.data).headers.value("Subject") == "figures"
    inner, _ = _openssl_decrypt(pki, result.data, tmp_path)
    assert b"multipart/signed" in inner.split(b"\r\n\r\n", 1)[0]
    assert b"The contract, as agreed." in _openssl_verify(pki, inner, tmp_path)


def test_a_changed_certificate_from_a_verified_signature_is_held(pki: Pki,
                                                                 tmp_path: Path) -> None:
    pipeline = _policy(tmp_path, pki)
    _send(pipeline, _inbound_signed_by_mailroute(pki), sender=ALICE, rcpt=ME,
          client="203.0.113.5")
    renewed = issue(tmp_path, "alice-renewed", issuer=pki.issuing, email=ALICE)
    result = _send(pipeline, _inbound_signed_by_mailroute(pki, signer_identity=renewed),
                   sender=ALICE, rcpt=ME, client="203.0.113.5")
    assert result.item is not None
    assert result.item.annotation("harvest-keys") == f"smime {ALICE} held"
    states = sorted(k.state.value for k in _directory(pipeline).all_keys())
    assert states == ["active", "held"]
    # the next outbound message still goes to the certificate first learnt
    after = _send(pipeline, _outbound(), sender=ME, rcpt=ALICE, client="127.0.0.1")
    assert after.data is not None
    plain, _ = _openssl_decrypt(pki, after.data, tmp_path)
    assert plain == ENTITY


def test_encrypt_by_policy_with_pgp_for_a_pgp_recipient(pgp_world: PgpWorld, pki: Pki,
                                                         tmp_path: Path) -> None:
    policy = tmp_path / "pgp.toml"
    policy.write_text(f"""
[gateway]
internal_domains = ["corp.example"]
state_dir = "{tmp_path / 'state'}"

[crypto.users."{ALICE}"]
method = "pgp"
encrypt = "mandatory"

[[pipeline]]
filter = "encrypt-by-policy"
gnupghome = "{tmp_path / 'gnupg'}"
""")
    pipeline = load_policy(policy)
    try:
        _pgp_round_trip(pipeline, pgp_world)
    finally:
        kill_agent(tmp_path / "gnupg")


def _pgp_round_trip(pipeline: Pipeline, pgp_world: PgpWorld) -> None:
    refused = _send(pipeline, _outbound(), sender=ME, rcpt=ALICE, client="127.0.0.1")
    assert refused.action is Action.REJECT
    key = subprocess.run(["gpg", "--homedir", str(pgp_world.peer), "--batch", "--export",
                          ALICE], check=True, capture_output=True, timeout=60).stdout
    from mailroute.filters.crypto import pgp_records
    (record,) = pgp_records(key, Trust.MANUAL, source="test", address=ALICE)
    _directory(pipeline).put(record, 0.0)
    result = _send(pipeline, _outbound(), sender=ME, rcpt=ALICE, client="127.0.0.1")
    assert result.action is Action.ACCEPT
    assert result.data is not None
    assert b"multipart/encrypted" in result.data
    armored = result.data[result.data.index(b"-----BEGIN PGP MESSAGE-----"):
                          result.data.index(b"-----END PGP MESSAGE-----") + 25]
    done = subprocess.run(["gpg", "--homedir", str(pgp_world.peer), "--batch", "--status-fd",
                           "2", "--decrypt"], input=armored, capture_output=True, timeout=60)
    assert b"DECRYPTION_OKAY" in done.stderr
    assert b"The contract, as agreed." in done.stdout


def test_errors_in_the_second_domain_entry_point_at_its_line(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\n'
                      '[crypto.domains."a.example"]\nencrypt = "mandatory"\n\n'
                      '[crypto.domains."b.example"]\nmethod = "smime"\nencrypt = "always"\n')
    with pytest.raises(ConfigError) as caught:
        load_policy(policy)
    assert caught.value.key == 'crypto.domains."b.example".encrypt'
    assert str(caught.value).startswith(f"{policy}:8: ")


def test_an_unavailable_directory_defers_outbound_mail_but_not_inbound(pki: Pki,
                                                                       tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    pipeline = _policy(tmp_path, pki)
    inbound = _send(pipeline, _inbound_signed_by_mailroute(pki), sender=ALICE, rcpt=ME,
                    client="203.0.113.5")
    assert inbound.action is Action.ACCEPT
    assert inbound.item is not None
    assert inbound.item.annotation("harvest-keys") == "directory unavailable"
    outbound = _send(pipeline, _outbound(), sender=ME, rcpt=ALICE, client="127.0.0.1")
    assert outbound.action is Action.TEMPFAIL
    assert outbound.reply.startswith("451 4.3.0"), outbound.reply


def test_mixed_recipients_ask_for_a_split_or_are_resolved_in_one_message(
        pki: Pki, tmp_path: Path) -> None:
    pipeline = _policy(tmp_path, pki)
    _send(pipeline, _inbound_signed_by_mailroute(pki), sender=ALICE, rcpt=ME,
          client="203.0.113.5")
    both = Envelope(mail_from=ME, rcpt_to=(ALICE, "carol@other.example"),
                    client_address="127.0.0.1")
    split = pipeline.process(_outbound(), both)
    assert split.action is Action.TEMPFAIL  # where the adapter cannot split
    assert split.split == ((ALICE,), ("carol@other.example",))
    policy = tmp_path / "single.toml"  # the same key directory, split = false
    policy.write_text(policy_text(pki, tmp_path / "state", encrypt="split = false"))
    single = load_policy(policy)
    result = single.process(_outbound(), both)
    assert result.action is Action.ACCEPT
    assert result.item is not None
    assert result.item.annotation("crypto.encrypt") == "downgraded"


def test_mixed_recipients_get_an_encrypted_and_a_plain_copy(pki: Pki, tmp_path: Path) -> None:
    pipeline = _policy(tmp_path, pki)
    inbound = pipeline.process(_inbound_signed_by_mailroute(pki),
                               Envelope(mail_from=ALICE, rcpt_to=(ME,),
                                        client_address="203.0.113.5"))
    assert inbound.item is not None
    assert inbound.item.annotation("harvest-keys") == f"smime {ALICE} added"
    recorder = Recorder()
    carol = "carol@other.example"
    code, err = run_transport(None, recorder, pipeline=pipeline, data=_outbound(),
                     envelope=Envelope(mail_from=ME, rcpt_to=(ALICE, carol),
                                       client_address="127.0.0.1"))
    assert (code, err) == (0, "")
    (encrypted, to_alice), (plain, to_carol) = recorder.calls
    assert (to_alice, to_carol) == ((ALICE,), (carol,))
    assert b"The contract, as agreed." in plain
    assert b"The contract, as agreed." not in encrypted
    assert _openssl_decrypt(pki, encrypted, tmp_path)[0] == ENTITY


def test_notify_holds_the_message_and_tells_the_sender(pki: Pki, tmp_path: Path) -> None:
    pipeline = _policy(tmp_path, pki, crypto='[crypto.defaults]\nencrypt = "mandatory"\n'
                                             'on_missing_key = "notify"')
    store = QuarantineStore(tmp_path / "quarantine")
    recorder = Recorder()
    code, err = run_transport(None, recorder, pipeline=pipeline, quarantine=store,
                              data=_outbound("=?utf-8?q?Figures_=C3=A9t=C3=A9?="),
                              envelope=Envelope(mail_from=ME, rcpt_to=(ALICE,),
                                                client_address="127.0.0.1"))
    assert (code, err) == (0, "")
    (entry,) = store.entries()
    assert entry.recipients == (ALICE,)
    ((notice, to),) = recorder.calls
    assert (recorder.senders, to) == ([""], (ME,))
    message = parse(notice)
    assert message.headers.value("Auto-Submitted") == "auto-replied"
    subject = message.headers.get("Subject")
    assert subject is not None
    assert subject.decoded() == (
        "Held, not delivered: Figures \u00e9t\u00e9")
    assert "no usable key is known for them yet" in notice.decode()
    assert entry.id in notice.decode()
    assert ALICE in notice.decode()


def test_hold_quarantines_without_telling_anyone(pki: Pki, tmp_path: Path) -> None:
    pipeline = _policy(tmp_path, pki, crypto='[crypto.defaults]\nencrypt = "mandatory"\n'
                                             'on_missing_key = "hold"')
    store = QuarantineStore(tmp_path / "quarantine")
    recorder = Recorder()
    code, _ = run_transport(None, recorder, pipeline=pipeline, quarantine=store,
                            data=_outbound(), envelope=Envelope(
                                mail_from=ME, rcpt_to=(ALICE,), client_address="127.0.0.1"))
    assert code == 0
    assert len(list(store.entries())) == 1
    assert recorder.calls == []


def test_a_sqlite_directory_needs_a_place(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text("[crypto]\nmin_trust = \"manual\"\n")
    with pytest.raises(ConfigError) as caught:
        load_policy(policy)
    assert caught.value.key == "crypto.directory.path"
    assert "is required without [gateway] state_dir" in str(caught.value)


def test_sign_by_policy_signs_with_pgp_for_a_pgp_recipient(pgp_world: PgpWorld,
                                                           tmp_path: Path) -> None:
    home = copy_home(pgp_world.gateway, tmp_path / "senders-gnupg")
    policy = tmp_path / "p.toml"
    policy.write_text(f"""
[gateway]
internal_domains = ["example.org"]
state_dir = "{tmp_path / 'state'}"

[crypto.defaults]
sign = "always"

[crypto.users."bob@example.net"]
method = "pgp"

[crypto.trigger]
authenticated_networks = ["127.0.0.0/8"]

[[pipeline]]
filter = "sign-by-policy"
gnupghome = "{home}"
""")
    data = (b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: signed\r\n"
            b"MIME-Version: 1.0\r\n") + ENTITY
    try:
        result = load_policy(policy).process(data, Envelope(
            mail_from="alice@example.org", rcpt_to=("bob@example.net",),
            client_address="127.0.0.1"))
    finally:
        kill_agent(home)
    assert result.action is Action.ACCEPT
    assert result.item is not None
    assert result.item.annotation("crypto.sign") == "pgp"
    assert result.data is not None
    signed, signature = split_signed(result.data)
    (tmp_path / "sig.asc").write_bytes(signature)
    check = gpg(pgp_world.peer, "--verify", str(tmp_path / "sig.asc"), "-", data=signed)
    assert check.line("VALIDSIG").split()[1] == pgp_world.alice
