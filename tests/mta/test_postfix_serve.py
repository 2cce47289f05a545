"""``mailroute serve`` behind a real Postfix as its after-queue SMTP content filter
(examples/postfix-serve/master.cf): mail passes through mailroute once and is reinjected
and delivered; with mailroute down Postfix defers and delivers once it is back."""

from __future__ import annotations

import os
import shutil
import smtplib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.mta.common import ambiguous_message, free_port
from tests.mta.postfix import PostfixInstance, master_block, postfix_available
from tests.serve.harness import Process
from tests.smtpsink import SmtpSink, Transaction

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not postfix_available(), reason="needs Postfix (scripts/setup-system) "
                                                       "and root"),
]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "postfix-serve" / "master.cf"


@dataclass
class World:
    postfix: PostfixInstance
    sink: SmtpSink
    port: int          # the filtered smtpd
    filter_port: int   # where mailroute serve listens
    reinject: int      # the reinjection smtpd
    policy: Path

    def send(self, subject: str) -> None:
        message = (f"From: <a@corp.example>\r\nTo: <b@partner.example>\r\nSubject: {subject}"
                   f"\r\nMessage-ID: <{subject}@corp.example>\r\n\r\nHello.\r\n"
                   f".leading dot\r\n")
        with smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.test",
                          timeout=30) as client:
            client.sendmail("a@corp.example", ["b@partner.example"], message.encode())

    def serve(self) -> Process:
        return Process(self.policy, self.reinject, port=self.filter_port)

    def arrived(self, subject: str) -> list[Transaction]:
        return [t for t in self.sink.delivered if f"Subject: {subject}".encode() in t.body]


def _service(name: str) -> str:
    return master_block(EXAMPLE, name)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="mailroute-postfix-serve-"))
    root.chmod(0o755)
    (root / "d.txt").write_text("-- \nDISCLAIMER-FROM-SERVE\n")
    policy = root / "policy.toml"
    policy.write_text('[[pipeline]]\nfilter = "disclaimer"\ntext = "d.txt"\n')
    postfix: PostfixInstance | None = None
    try:
        with SmtpSink() as sink:
            port, filter_port, reinject = free_port(), free_port(), free_port()
            receiving = _service("smtp").replace(
                "smtp      inet  n       -       y", f"127.0.0.1:{port} inet n - n", 1)
            receiving = receiving.replace("[127.0.0.1]:10025", f"[127.0.0.1]:{filter_port}")
            assert f"content_filter=mailroute-smtp:[127.0.0.1]:{filter_port}" in receiving
            master = (receiving + _service("mailroute-smtp")
                      + _service("127.0.0.1:10026").replace("127.0.0.1:10026",
                                                            f"127.0.0.1:{reinject}"))
            postfix = PostfixInstance(root, {"myhostname": "mx.corp.example",
                                             "relayhost": f"[127.0.0.1]:{sink.port}"}, master)
            postfix.start((port, reinject))
            yield World(postfix, sink, port, filter_port, reinject, policy)
    finally:
        if postfix is not None:
            postfix.stop()
        if not os.environ.get("MAILROUTE_KEEP_POSTFIX"):
            shutil.rmtree(root, ignore_errors=True)


def test_mail_passes_mailroute_once_and_is_reinjected_and_delivered(world: World) -> None:
    with world.serve() as serve:
        world.send("through-serve")
        assert world.postfix.wait_until(lambda: world.arrived("through-serve")), \
            world.postfix.log()[-3000:]
        assert world.postfix.wait_until(world.postfix.queue_is_empty)
        _, log = serve.stop()
    arrivals = world.arrived("through-serve")
    assert len(arrivals) == 1
    body = arrivals[0].body
    assert body.count(b"DISCLAIMER-FROM-SERVE") == 1
    assert b"\r\n.leading dot\r\n" in body
    assert arrivals[0].recipients == ["b@partner.example"]
    # XFORWARD: the log line names the original client's HELO, not Postfix's.
    line = next(x for x in log.splitlines() if "message_id=<through-serve@corp.example>" in x)
    assert line.startswith("mailroute: accept 2.0.0 Ok: next hop said: 2.0.0 Ok: queued")
    assert "client=127.0.0.1 helo=client.test" in line


def test_with_mailroute_down_postfix_defers_and_delivers_once_it_is_back(
        world: World) -> None:
    world.send("while-down")
    assert world.postfix.wait_until(lambda: "status=deferred" in world.postfix.log()), \
        world.postfix.log()[-3000:]
    time.sleep(0.5)
    assert world.arrived("while-down") == []
    with world.serve():
        world.postfix.flush()
        assert world.postfix.wait_until(lambda: world.arrived("while-down")), \
            world.postfix.log()[-3000:]
        assert world.postfix.wait_until(world.postfix.queue_is_empty)
        time.sleep(0.5)
    arrivals = world.arrived("while-down")
    assert len(arrivals) == 1
    assert arrivals[0].body.count(b"DISCLAIMER-FROM-SERVE") == 1


def test_a_message_the_policy_refuses_bounces_once_and_reaches_no_one(world: World) -> None:
    def bounces() -> list[Transaction]:
        return world.sink.bounces("a@corp.example", b"<refused-once@corp.example>")

    with world.serve():
        with smtplib.SMTP("127.0.0.1", world.port, local_hostname="client.test",
                          timeout=30) as client:
            client.sendmail("a@corp.example", ["e@partner.example"],
                            ambiguous_message("refused-once"))
        assert world.postfix.wait_until(lambda: bool(bounces())), world.postfix.log()[-3000:]
        assert world.postfix.wait_until(world.postfix.queue_is_empty)
    assert len(bounces()) == 1
    assert b"5.6.0" in bounces()[0].body
    assert [t for t in world.arrived("refused-once") if t.sender] == []
