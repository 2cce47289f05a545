"""``mailroute serve`` beside a real Exim 4.96 through the shipped router and transport
(examples/exim-serve): every message passes the service once and comes back on the
reinjection port; with the service down Exim defers and delivers once it is back."""

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

from tests.mta.common import ambiguous_message, free_port, wait_until
from tests.mta.exim import (
    ACL_SECTION,
    EximInstance,
    exim_available,
    main_section,
    recipe_part,
)
from tests.serve.harness import Process
from tests.smtpsink import SmtpSink, Transaction

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not exim_available(), reason="needs root, unshare, the Debian exim4 "
                                                     "packages (apt-get download) and the "
                                                     "Debian-exim user"),
]

RECIPE = Path(__file__).resolve().parents[2] / "examples" / "exim-serve" / "mailroute-serve.conf"


@dataclass
class World:
    exim: EximInstance
    sink: SmtpSink
    port: int
    filter_port: int
    reinject: int
    policy: Path

    def send(self, subject: str, rcpts: list[str]) -> None:
        message = (f"From: <a@corp.example>\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}"
                   f"\r\nMessage-ID: <{subject}@corp.example>\r\n\r\nHello from Exim.\r\n")
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
            client.sendmail("a@corp.example", rcpts, message.encode())

    def serve(self) -> Process:
        return Process(self.policy, self.reinject, port=self.filter_port)

    def arrived(self, subject: str) -> list[Transaction]:
        return [t for t in self.sink.delivered if f"Subject: {subject}".encode() in t.body]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="mailroute-exim-serve-"))
    root.chmod(0o755)
    (root / "d.txt").write_text("-- \nDISCLAIMER-FROM-SERVE\n")
    policy = root / "policy.toml"
    policy.write_text('[[pipeline]]\nfilter = "disclaimer"\ntext = "d.txt"\n')
    exim: EximInstance | None = None
    try:
        with SmtpSink() as sink:
            port, filter_port, reinject = free_port(), free_port(), free_port()
            router = recipe_part(RECIPE, "mailroute_serve").replace("10026", str(reinject))
            transport = recipe_part(RECIPE, "mailroute_smtp").replace(
                "port = 10025", f"port = {filter_port}")
            assert f"port = {filter_port}" in transport
            config = main_section(root, (port, reinject)) + f"""
{ACL_SECTION}
begin routers
{router}
outside:
  driver = manualroute
  route_list = * 127.0.0.1
  transport = to_sink
  self = send

begin transports
{transport}
to_sink:
  driver = smtp
  port = {sink.port}
  hosts_override
  allow_localhost

begin retry
*  *  F,10m,2s
"""
            exim = EximInstance(root, config)
            exim.start((port, reinject))
            yield World(exim, sink, port, filter_port, reinject, policy)
    finally:
        if exim is not None:
            exim.stop()
        if not os.environ.get("MAILROUTE_KEEP_EXIM"):
            shutil.rmtree(root, ignore_errors=True)


def test_mail_passes_serve_once_and_comes_back_through_the_reinjection_port(
        world: World) -> None:
    rcpts = ["b@partner.example", "c@other.example"]
    with world.serve():
        world.send("exim-serve", rcpts)
        assert wait_until(lambda: world.arrived("exim-serve")), world.exim.log()
        time.sleep(1.0)
    arrivals = world.arrived("exim-serve")
    assert sorted(r for t in arrivals for r in t.recipients) == sorted(rcpts)
    for tx in arrivals:
        assert tx.body.count(b"DISCLAIMER-FROM-SERVE") == 1
    # The first attempt went through (Exim half-closes after a pipelined QUIT; the
    # service answers anyway): one pass through mailroute for both recipients, no defer.
    log = world.exim.log()
    through = [line.split()[3] for line in log.splitlines()
               if "T=mailroute_smtp" in line and any(r in line for r in rcpts)]
    assert through == ["=>", "->"], log


def test_with_serve_down_exim_defers_and_delivers_once_it_is_back(world: World) -> None:
    world.send("exim-while-down", ["d@partner.example"])
    assert wait_until(lambda: "T=mailroute_smtp defer" in world.exim.log()
                      or "== d@partner.example" in world.exim.log()), world.exim.log()
    assert world.arrived("exim-while-down") == []
    with world.serve():
        assert wait_until(lambda: world.arrived("exim-while-down"), timeout=60), \
            world.exim.log()
        time.sleep(1.0)
    arrivals = world.arrived("exim-while-down")
    assert len(arrivals) == 1
    assert arrivals[0].body.count(b"DISCLAIMER-FROM-SERVE") == 1


def test_a_refused_message_bounces_at_once_and_the_bounce_passes_serve(world: World) -> None:
    """The policy's 5xx reaches Exim although Exim half-closes after its pipelined QUIT
    (the answer was lost: Exim deferred), and Exim's bounce, MAIL FROM:<>, passes serve
    with the null sender (it was sent on as <<>>: 501, the bounce froze)."""
    def bounces() -> list[Transaction]:
        return world.sink.bounces("a@corp.example", b"<exim-refused@corp.example>")

    with world.serve():
        with smtplib.SMTP("127.0.0.1", world.port, timeout=30) as client:
            client.sendmail("a@corp.example", ["e@partner.example"],
                            ambiguous_message("exim-refused"))
        assert wait_until(lambda: bool(bounces())), world.exim.log()
        time.sleep(1.0)
    assert len(bounces()) == 1
    assert b"5.6.0" in bounces()[0].body
    assert [t for t in world.arrived("exim-refused") if t.sender] == []
    mine = [line for line in world.exim.log().splitlines() if "e@partner.example" in line]
    assert len(mine) == 1, mine   # no defer first
    assert " ** e@partner.example " in mine[0]
