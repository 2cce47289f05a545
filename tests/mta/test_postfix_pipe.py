"""``mailroute pipe`` behind a real Postfix ``pipe(8)`` content filter (examples/postfix).

One throwaway Postfix per module on 127.0.0.1: the receiving smtpd has
``-o content_filter=mailroute:dummy``; mailroute reinjects over SMTP to a second smtpd without
the filter (postdrop refuses a non-default config directory, so sendmail cannot be used here);
internal mail is relayed to one sink, internet mail to another. A third smtpd is hooked
wrongly on purpose (its filter reinjects into itself) to show the loop guard: the SQLite
processed-message store shared by the pipe processes stops the message on its second pass.
"""

from __future__ import annotations

import base64
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from tests.mta.common import FILTER_USER, free_port, interpreter_wrapper, pipe_policy
from tests.mta.postfix import PostfixInstance, master_block, postfix_available
from tests.smtpsink import SmtpSink, Transaction

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not postfix_available(), reason="needs Postfix (scripts/setup-system) "
                                                       "and root"),
]

@dataclass
class World:
    postfix: PostfixInstance
    internal: SmtpSink      # corp.example's mailbox server
    internet: SmtpSink      # everything else
    port: int               # the filtered smtpd
    loop_port: int          # the mis-hooked smtpd
    faulty_key: Path
    good_key_text: bytes
    reinject_port: int      # the smtpd without the filter
    policy: Path

    def send(self, sender: str, rcpts: list[str], subject: str, *, port: int | None = None,
             body: str = "Hello.\r\n.leading dot\r\n") -> None:
        message = (f"From: <{sender}>\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
                   f"Message-ID: <{subject}@corp.example>\r\n\r\n{body}")
        with smtplib.SMTP("127.0.0.1", port or self.port, timeout=30) as client:
            client.sendmail(sender, rcpts, message.encode())

    def arrived(self, token: str) -> list[Transaction]:
        """Every completed transaction at either sink whose message mentions ``token``."""
        return [t for sink in (self.internal, self.internet) for t in sink.delivered
                if token.encode() in t.body]


EXAMPLE_MASTER = Path(__file__).resolve().parents[2] / "examples" / "postfix" / "master.cf"


def _example_block(name: str) -> str:
    """The ``name`` service of examples/postfix/master.cf with its continuation lines."""
    return master_block(EXAMPLE_MASTER, name)


def _example_main() -> dict[str, str]:
    """The settings of examples/postfix/main.cf."""
    text = (EXAMPLE_MASTER.parent / "main.cf").read_text()
    pairs = (line.split("=", 1) for line in text.splitlines()
             if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def _pipe_service(name: str, wrapper: Path, policy: Path, reinject_port: int) -> str:
    """The shipped pipe service, pointed at this instance (and run as the filter user)."""
    block = _example_block("mailroute").replace("mailroute unix", f"{name} unix", 1)
    for shipped, here in (("/usr/local/bin/mailroute", str(wrapper)),
                          ("/etc/mailroute/policy.toml", str(policy)),
                          ("user=mailroute", f"user={FILTER_USER}"),
                          ("127.0.0.1:10026", f"127.0.0.1:{reinject_port}"),
                          ("--sender ", "--log stderr --sender ")):
        assert shipped in block
        block = block.replace(shipped, here)
    return block


FAULTY_KEY = ('tag = "testaa"\norg_id = "test-org"\n\n[[key]]\nid = "old"\n'
              'secret = "{secret}"\nnot_before = 2000-01-01T00:00:00Z\n'
              'sign_until = 2000-02-01T00:00:00Z\n')


def _smime_identity(folder: Path) -> tuple[Path, Path]:
    """A self-signed RSA certificate and its key (mode 0600) for smime-decrypt, by openssl."""
    cert, key = folder / "smime-cert.pem", folder / "smime-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=gw.corp.example", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    key.chmod(0o600)
    cert.chmod(0o644)
    return cert, key


def _write_owned(path: Path, data: bytes, mode: int) -> None:
    path.write_bytes(data)
    path.chmod(mode)
    shutil.chown(path, FILTER_USER)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="mailroute-postfix-"))
    root.chmod(0o755)
    postfix: PostfixInstance | None = None
    try:
        with SmtpSink() as internal, SmtpSink() as internet:
            secret = base64.b64encode(b"s" * 32).decode()
            faulty = root / "faulty-keys.toml"
            _write_owned(faulty, FAULTY_KEY.format(secret=secret).encode(), 0o600)
            policy = pipe_policy(root, owner=FILTER_USER, tempfail_key=faulty,
                                 smime_identity=_smime_identity(root))
            good = (root / "keys.toml").read_bytes()
            wrapper = interpreter_wrapper(root)
            port, reinject, loop_port = free_port(), free_port(), free_port()
            receiving = _example_block("smtp").replace("smtp      inet  n       -       y",
                                                       f"127.0.0.1:{port} inet n - n", 1)
            assert receiving.startswith(f"127.0.0.1:{port} inet")
            reinjecting = _example_block("127.0.0.1:10026").replace("127.0.0.1:10026",
                                                                    f"127.0.0.1:{reinject}")
            master = (
                receiving + reinjecting +
                f"127.0.0.1:{loop_port} inet n - n - - smtpd\n"
                f"  -o content_filter=mailroute-loop:dummy\n"
                + _pipe_service("mailroute", wrapper, policy, reinject)
                + _pipe_service("mailroute-loop", wrapper, policy, loop_port))
            postfix = PostfixInstance(root, {
                "myhostname": "mx.corp.example",
                "relayhost": f"[127.0.0.1]:{internet.port}",
                "transport_maps": f"inline:{{corp.example=smtp:[127.0.0.1]:{internal.port}}}",
                **_example_main(),
            }, master)
            postfix.start((port, reinject, loop_port))
            yield World(postfix, internal, internet, port, loop_port, faulty, good, reinject,
                        policy)
            _no_blank_message(internal, internet)
    finally:
        if postfix is not None:
            postfix.stop()
        if not os.environ.get("MAILROUTE_KEEP_POSTFIX"):
            shutil.rmtree(root, ignore_errors=True)


def _no_blank_message(*sinks: SmtpSink) -> None:
    for sink in sinks:
        for tx in sink.delivered:
            header, _, body = tx.body.partition(b"\r\n\r\n")
            assert b"Subject:" in header, tx.body[:200]
            assert body.strip(), f"a blank message arrived: {tx.body[:200]!r}"


def _subject_arrivals(world: World, token: str) -> list[Transaction]:
    return [t for t in world.arrived(f"Subject: {token}") if t.sender]


def test_three_recipients_one_internal_two_external_arrive_once_processed_once(world: World
                                                                               ) -> None:
    rcpts = ["b@corp.example", "c@partner.example", "d@other.example"]
    world.send("a@corp.example", rcpts, "three-rcpts")
    assert world.postfix.wait_until(lambda: len({r for t in _subject_arrivals(
        world, "three-rcpts") for r in t.recipients}) == 3), world.postfix.log()[-3000:]
    arrivals = _subject_arrivals(world, "three-rcpts")
    got = sorted(r for t in arrivals for r in t.recipients)
    assert got == sorted(rcpts)                               # each recipient exactly once
    assert [t.recipients for t in arrivals if t in world.internal.delivered] == [
        ["b@corp.example"]]
    for tx in arrivals:
        assert tx.body.count(b"X-Processed: mailroute") == 1
        assert tx.body.count(b"X-Mailroute-Mark:") == 1
        assert b"\r\n.leading dot\r\n" in tx.body
    assert world.postfix.wait_until(world.postfix.queue_is_empty)


def test_a_rejected_message_bounces_to_the_sender_and_reaches_no_recipient(world: World
                                                                            ) -> None:
    world.send("reject@corp.example", ["e@partner.example"], "rejected-one")
    bounced = partial(world.internal.bounces, "reject@corp.example", b"rejected-one")
    assert world.postfix.wait_until(lambda: bool(bounced())), world.postfix.log()[-3000:]
    [bounce] = bounced()
    assert b"5.7.1" in bounce.body
    assert _subject_arrivals(world, "rejected-one") == []
    assert "status=bounced" in world.postfix.log()


def test_a_tempfail_stays_queued_and_is_delivered_once_after_the_fix(world: World) -> None:
    world.send("tempfail@corp.example", ["f@partner.example", "g@corp.example"], "deferred-one")
    assert world.postfix.wait_until(lambda: "4.3.0" in world.postfix.log()
                                    and "status=deferred" in world.postfix.log())
    assert not world.postfix.queue_is_empty()
    assert _subject_arrivals(world, "deferred-one") == []
    # One message's deferral does not hold up the others.
    world.send("a@corp.example", ["l@partner.example"], "after-deferral")
    assert world.postfix.wait_until(lambda: bool(_subject_arrivals(world, "after-deferral")),
                                    timeout=15), world.postfix.log()[-3000:]
    _write_owned(world.faulty_key, world.good_key_text, 0o600)     # the fix
    # Postfix's default backoff (300 s) applies; the administrator retries at once, as the
    # docs say. (With 1 s queue timers, qmgr rescanning while pipe(8) still held the lock
    # parked the message in incoming for 60 s: a test-timer artefact, not mailroute's.)
    world.postfix.flush()
    assert world.postfix.wait_until(lambda: len(_subject_arrivals(world, "deferred-one")) == 2,
                                    timeout=40), world.postfix.log()[-3000:]
    assert world.postfix.wait_until(world.postfix.queue_is_empty)
    arrivals = _subject_arrivals(world, "deferred-one")
    assert sorted(r for t in arrivals for r in t.recipients) == ["f@partner.example",
                                                                 "g@corp.example"]
    for tx in arrivals:
        assert tx.body.count(b"X-Processed: mailroute") == 1


def test_a_loop_through_a_mis_hooked_filter_stops_on_its_second_pass(world: World) -> None:
    world.send("loop@corp.example", ["h@partner.example"], "looping-one", port=world.loop_port)
    bounced = partial(world.internal.bounces, "loop@corp.example", b"looping-one")
    assert world.postfix.wait_until(lambda: bool(bounced())), world.postfix.log()[-3000:]
    assert b"5.4.6" in bounced()[0].body
    passes = [line for line in world.postfix.log().splitlines()
              if "relay=mailroute-loop" in line]
    assert len(passes) == 2, passes                  # processed once, refused the second time
    [sent] = [line for line in passes if "status=sent" in line]   # in either log order
    [refused] = [line for line in passes if "status=bounced" in line]
    assert sent.split()[5] != refused.split()[5]      # two queue ids: the second pass is new mail
    assert _subject_arrivals(world, "looping-one") == []


def test_reinjection_through_the_real_sendmail_reaches_every_recipient(world: World) -> None:
    """``--reinject sendmail``: Postfix's own sendmail/postdrop, into this instance's pickup
    (which has no content filter). postdrop accepts a non-default configuration directory
    only when the default main.cf lists it, so the run happens in a private mount namespace
    whose /etc/postfix is an overlay with that one line; the real /etc/postfix is untouched."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare")
    root = world.postfix.root
    upper, work = root / "etc-postfix-upper", root / "etc-postfix-work"
    upper.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    (upper / "main.cf").write_text(
        f"alternate_config_directories = {world.postfix.config}\n")
    policy, wrapper = root / "policy.toml", root / "mailroute"
    rcpts = ["i@corp.example", "j@partner.example", "k@other.example"]
    message = (b"From: <a@corp.example>\nTo: i@corp.example\nSubject: via-sendmail\n"
               b"Message-ID: <via-sendmail@corp.example>\n\nHello.\n.leading dot\n")
    script = (f"mount -t overlay overlay -o lowerdir=/etc/postfix,upperdir={upper},"
              f"workdir={work} /etc/postfix && exec {wrapper} pipe --config {policy} "
              f"--sender a@corp.example --reinject sendmail --log stderr -- {' '.join(rcpts)}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], input=message,
                          env={**os.environ, "MAIL_CONFIG": str(world.postfix.config)},
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    assert world.postfix.wait_until(lambda: len({r for t in _subject_arrivals(
        world, "via-sendmail") for r in t.recipients}) == 3), world.postfix.log()[-3000:]
    arrivals = _subject_arrivals(world, "via-sendmail")
    assert sorted(r for t in arrivals for r in t.recipients) == sorted(rcpts)
    for tx in arrivals:
        assert tx.body.count(b"X-Processed: mailroute") == 1
        assert b"\r\n.leading dot\r\n" in tx.body
    assert "postfix/pickup" in world.postfix.log()


ENCRYPTED_UNREADABLE = (
    "MIME-Version: 1.0\r\n"
    'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\r\n'
    "Content-Transfer-Encoding: base64\r\n\r\n"
    "MIAGCSqGSIb3DQEHA6CAMIACAQAxggFAMIIBPAIBADAkMBYxFDASBgNVBAMTC25vdC1mb3ItdXMC\r\n")


def _mailroute(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailroute", *args, "--config",
                           str(world.policy)], capture_output=True, text=True, timeout=60,
                          check=False)


def test_a_quarantined_message_is_held_and_released_once(world: World) -> None:
    """smime-decrypt with ``on_failure = "quarantine"`` and a message it cannot decrypt: the
    pipe exits 0, nothing is handed on, the message waits in the quarantine store (the
    policy's state_dir), and ``mailroute quarantine release`` hands it on exactly once."""
    rcpts = ["q1@partner.example", "q2@corp.example"]
    body = ENCRYPTED_UNREADABLE.replace("MIME-Version", "Subject: held-one\r\nMIME-Version")
    # (not World.send: the S/MIME entity needs header fields of its own)
    with smtplib.SMTP("127.0.0.1", world.port, timeout=30) as client:
        client.sendmail("quarantine@corp.example", rcpts,
                        ("From: <quarantine@corp.example>\r\nTo: q1@partner.example\r\n"
                         "Message-ID: <held-one-smime@corp.example>\r\n" + body).encode())

    def held() -> list[str]:
        listing = _mailroute(world, "quarantine", "list")
        assert listing.returncode == 0, listing.stderr
        return [line for line in listing.stdout.splitlines() if "<quarantine@corp.example>" in
                line]

    assert world.postfix.wait_until(lambda: len(held()) == 1), world.postfix.log()[-3000:]
    [entry] = held()
    assert sorted(entry.split()[4].split(",")) == sorted(rcpts)   # every recipient, one copy
    sent = [line for line in world.postfix.log().splitlines()
            if "relay=mailroute," in line and "status=sent" in line
            and any(f"to=<{r}>" in line for r in rcpts)]
    assert len(sent) >= 2            # the pipe exited 0 for the quarantined message
    smime = [t for t in world.arrived("held-one-smime") if t.sender]
    assert smime == []                                          # nothing was handed on
    released = _mailroute(world, "quarantine", "release", entry.split()[0], "--reinject",
                          f"smtp:127.0.0.1:{world.reinject_port}")
    assert released.returncode == 0, released.stderr
    assert held() == []
    assert world.postfix.wait_until(lambda: sorted(
        r for t in world.arrived("held-one-smime") if t.sender for r in t.recipients)
        == sorted(rcpts)), world.postfix.log()[-3000:]
    assert world.postfix.wait_until(world.postfix.queue_is_empty)
    arrivals = [t for t in world.arrived("held-one-smime") if t.sender]
    assert sorted(r for t in arrivals for r in t.recipients) == sorted(rcpts)  # once each
    for tx in arrivals:
        assert b"application/pkcs7-mime" in tx.body      # as received, for the recipient
