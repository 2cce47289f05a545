"""Faults in ``mailroute pipe`` behind a real Postfix ``pipe(8)``: each one defers the message,
nothing reaches a recipient, and after the fault clears every recipient gets it exactly once.

The pipe service is the shipped one (examples/postfix/master.cf) with a wrapper that injects
the fault named in a control file into the ``headers`` filter of the policy: an unexpected
exception, a real MemoryError, SIGTERM, or SIGKILL (the process dies mid-message). A second
filtered port hands on to a reinjection port where nothing listens until the test starts a
listener there (the next hop down, then back). Removing the control file is the fix.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.mta.common import (
    FILTER_USER,
    free_port,
    interpreter_wrapper,
    pipe_policy,
    scratch_root,
)
from tests.mta.postfix import PostfixInstance, postfix_available
from tests.mta.test_postfix_pipe import _example_block, _example_main, _pipe_service
from tests.smtpsink import SmtpSink, Transaction

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not postfix_available(), reason="needs Postfix (scripts/setup-system) "
                                                       "and root"),
]

#: Imported by the pipe service's wrapper instead of ``mailroute``: the fault in the control
#: file (its path is the first argument) goes into HeadersFilter.apply, then the real CLI runs.
SHIM = '''
import os, signal, sys, time
from pathlib import Path

control = Path(sys.argv.pop(1))
fault = control.read_text().strip() if control.exists() else ""
if fault:
    from mailroute.filters import headers
    original = headers.HeadersFilter.apply

    def apply(self, item, ctx):
        if fault == "exception":
            raise RuntimeError("injected fault")
        if fault == "memory":
            bytearray(1 << 46)
        if fault == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if fault == "term":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        return original(self, item, ctx)

    headers.HeadersFilter.apply = apply
from mailroute.cli import entry_point
entry_point()
'''


@dataclass
class World:
    postfix: PostfixInstance
    sink: SmtpSink
    port: int           # filtered; hands on to the reinjection smtpd
    down_port: int      # filtered; hands on to ``next_hop`` (nothing listens at first)
    next_hop: int
    control: Path

    def send(self, subject: str, rcpts: list[str], *, port: int | None = None) -> None:
        message = (f"From: <a@corp.example>\r\nTo: {', '.join(rcpts)}\r\n"
                   f"Subject: {subject}\r\nMessage-ID: <{subject}@corp.example>\r\n\r\n"
                   "Hello.\r\n")
        with smtplib.SMTP("127.0.0.1", port or self.port, timeout=30) as client:
            client.sendmail("a@corp.example", rcpts, message.encode())

    def deferrals(self, service: str) -> int:
        return sum(1 for line in self.postfix.log().splitlines()
                   if f"relay={service}," in line and "status=deferred" in line)


def _arrivals(sink: SmtpSink, subject: str) -> list[Transaction]:
    return [t for t in sink.delivered if f"Subject: {subject}\r\n".encode() in t.body]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with scratch_root("mailroute-faults-", "MAILROUTE_KEEP_POSTFIX") as root, \
            SmtpSink() as sink:
        policy = pipe_policy(root, owner=FILTER_USER)
        plain = interpreter_wrapper(root)
        shim = root / "shim"
        shim.mkdir(mode=0o755)
        (shim / "mailroute_faults.py").write_text(SHIM)
        (shim / "mailroute_faults.py").chmod(0o644)
        control = root / "fault"
        faulty = root / "mailroute-faulty"
        text = plain.read_text()
        assert 'PYTHONPATH="' in text
        assert " -m mailroute " in text
        faulty.write_text(text.replace('PYTHONPATH="', f'PYTHONPATH="{shim}:', 1)
                          .replace(" -m mailroute ", f" -m mailroute_faults {control} "))
        faulty.chmod(0o755)
        port, reinject, down_port, next_hop = (free_port() for _ in range(4))
        receiving = _example_block("smtp").replace("smtp      inet  n       -       y",
                                                   f"127.0.0.1:{port} inet n - n", 1)
        reinjecting = _example_block("127.0.0.1:10026").replace("127.0.0.1:10026",
                                                                f"127.0.0.1:{reinject}")
        master = (receiving + reinjecting
                  + f"127.0.0.1:{down_port} inet n - n - - smtpd\n"
                    f"  -o content_filter=mailroute-down:dummy\n"
                  + _pipe_service("mailroute", faulty, policy, reinject)
                  + _pipe_service("mailroute-down", plain, policy, next_hop))
        postfix = PostfixInstance(root, {
            "myhostname": "mx.corp.example",
            "relayhost": f"[127.0.0.1]:{sink.port}",
            **_example_main(),
        }, master)
        postfix.start((port, reinject, down_port))
        try:
            yield World(postfix, sink, port, down_port, next_hop, control)
        finally:
            postfix.stop()


@pytest.mark.parametrize(("fault", "logged"), [
    ("exception", "dsn=4.3.0, status=deferred (internal error, reference"),
    ("memory", "dsn=4.3.0, status=deferred (internal error, reference"),
    ("term", "dsn=4.3.0, status=deferred (terminated by a signal"),
    ("kill", "status=deferred (Command died with signal 9"),
])
def test_a_fault_defers_and_the_message_arrives_once_after_the_fix(world: World, fault: str,
                                                                   logged: str) -> None:
    subject = f"fault-{fault}"
    rcpts = ["x@partner.example", "y@other.example"]
    before = world.deferrals("mailroute")
    world.control.write_text(fault)
    world.control.chmod(0o644)
    try:
        world.send(subject, rcpts)
        assert world.postfix.wait_until(lambda: world.deferrals("mailroute") > before,
                                        timeout=90), \
            world.postfix.log()[-3000:]
        deferred = [line for line in world.postfix.log().splitlines()
                    if "relay=mailroute," in line and "status=deferred" in line][-1]
        assert logged in deferred, deferred
        assert not world.postfix.queue_is_empty()
        assert _arrivals(world.sink, subject) == []
    finally:
        world.control.unlink(missing_ok=True)                     # the fix
    world.postfix.flush()
    assert world.postfix.wait_until(lambda: sorted(
        r for t in _arrivals(world.sink, subject) for r in t.recipients) == rcpts, timeout=90), \
        world.postfix.log()[-3000:]
    assert world.postfix.wait_until(world.postfix.queue_is_empty)
    arrivals = _arrivals(world.sink, subject)
    assert sorted(r for t in arrivals for r in t.recipients) == rcpts   # exactly once each
    for tx in arrivals:
        assert tx.body.count(b"X-Processed: mailroute") == 1


def test_the_next_hop_down_defers_and_the_message_arrives_once_when_it_is_back(world: World
                                                                                ) -> None:
    rcpts = ["z@partner.example", "w@corp.example"]
    before = world.deferrals("mailroute-down")
    world.send("next-hop-down", rcpts, port=world.down_port)
    assert world.postfix.wait_until(lambda: world.deferrals("mailroute-down") > before,
                                    timeout=90), \
        world.postfix.log()[-3000:]
    assert "dsn=4.3.0, status=deferred (hand-on failed: 127.0.0.1:" in world.postfix.log()
    with SmtpSink(port=world.next_hop) as back:                   # the next hop is back
        world.postfix.flush()
        assert world.postfix.wait_until(lambda: sorted(
            r for t in back.delivered for r in t.recipients) == sorted(rcpts), timeout=90), \
            world.postfix.log()[-3000:]
        assert world.postfix.wait_until(world.postfix.queue_is_empty)
        assert len(back.delivered) == 1                           # one transaction, once
        assert back.delivered[0].body.count(b"X-Processed: mailroute") == 1
    assert _arrivals(world.sink, "next-hop-down") == []
