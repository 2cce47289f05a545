"""``mailroute pipe`` as an Exim pipe transport, through the shipped recipe (examples/exim).

A throwaway Exim 4.96 (extracted from the Debian packages, see tests/mta/exim.py) on
127.0.0.1: the first router sends every message not received on the reinjection port through
the ``mailroute_pipe`` transport of examples/exim/mailroute.conf; mailroute reinjects over
SMTP on that port, from where manualroute routers relay to an internal and an internet sink.
"""

from __future__ import annotations

import base64
import os
import shutil
import smtplib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from tests.mta.common import (
    FILTER_USER,
    free_port,
    interpreter_wrapper,
    pipe_policy,
    wait_until,
)
from tests.mta.exim import (
    ACL_SECTION,
    EximInstance,
    exim_available,
    main_section,
    recipe_part,
)
from tests.mta.test_postfix_pipe import FAULTY_KEY, _write_owned
from tests.smtpsink import SmtpSink, Transaction

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not exim_available(), reason="needs root, unshare, the Debian exim4 "
                                                     "packages (apt-get download) and the "
                                                     "Debian-exim user"),
]

RECIPE = Path(__file__).resolve().parents[2] / "examples" / "exim" / "mailroute.conf"


def _recipe_part(name: str) -> str:
    """The ``name:`` block (router or transport) of the shipped recipe."""
    return recipe_part(RECIPE, name)


@dataclass
class World:
    exim: EximInstance
    internal: SmtpSink
    internet: SmtpSink
    port: int
    faulty_key: Path
    good_key_text: bytes

    def send(self, sender: str, rcpts: list[str], subject: str) -> None:
        message = (f"From: <{sender}>\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
                   f"Message-ID: <{subject}@corp.example>\r\n\r\nHello from Exim.\r\n")
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
            client.sendmail(sender, rcpts, message.encode())

    def arrivals(self, subject: str) -> list[Transaction]:
        return [t for sink in (self.internal, self.internet) for t in sink.delivered
                if f"Subject: {subject}".encode() in t.body and t.sender]

    def wait_until(self, predicate: Callable[[], object], timeout: float = 30.0) -> bool:
        return wait_until(predicate, timeout)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="mailroute-exim-test-"))
    root.chmod(0o755)
    exim: EximInstance | None = None
    try:
        with SmtpSink() as internal, SmtpSink() as internet:
            secret = base64.b64encode(b"s" * 32).decode()
            faulty = root / "faulty-keys.toml"
            _write_owned(faulty, FAULTY_KEY.format(secret=secret).encode(), 0o600)
            policy = pipe_policy(root, owner=FILTER_USER, tempfail_key=faulty)
            good = (root / "keys.toml").read_bytes()
            wrapper = interpreter_wrapper(root)
            port, reinject = free_port(), free_port()
            router = _recipe_part("mailroute_filter").replace("10026", str(reinject))
            transport = _recipe_part("mailroute_pipe")
            for shipped, here in (("/usr/local/bin/mailroute", str(wrapper)),
                                  ("/etc/mailroute/policy.toml", str(policy)),
                                  ("user = mailroute", f"user = {FILTER_USER}"),
                                  ("127.0.0.1:10026", f"127.0.0.1:{reinject}")):
                assert shipped in transport
                transport = transport.replace(shipped, here)
            # A mis-hooked copy for loop@corp.example: it hands mail back to the filtered
            # port, so every reinjected message would go through mailroute again.
            loop_router = (router.replace("mailroute_filter:", "mailroute_loop:")
                           .replace("mailroute_pipe", "mailroute_pipe_loop")
                           + "  senders = loop@corp.example\n")
            loop_transport = (transport.replace("mailroute_pipe:", "mailroute_pipe_loop:")
                              .replace(f"127.0.0.1:{reinject}", f"127.0.0.1:{port}"))
            # For killed@corp.example: the recipe's transport whose command dies by SIGKILL,
            # as a filter the OOM killer ends would.
            killed_router = (router.replace("mailroute_filter:", "mailroute_killed:")
                             .replace("mailroute_pipe", "mailroute_pipe_killed")
                             + "  senders = killed@corp.example\n")
            command = next(line for line in transport.splitlines() if "command =" in line)
            killed_lines = [line for line in transport.splitlines()
                            if not line.startswith("            ")]  # continuation lines
            killed_transport = "\n".join(killed_lines).replace(
                "mailroute_pipe:", "mailroute_pipe_killed:").replace(
                command, "  command = /bin/sh -c 'kill -KILL \\$\\$'") + "\n"
            config = main_section(root, (port, reinject)) + f"""
message_size_limit = 50M
{ACL_SECTION}
begin routers
{loop_router}
{killed_router}
{router}
internal:
  driver = manualroute
  domains = corp.example
  route_list = * 127.0.0.1
  transport = to_internal
  self = send

outside:
  driver = manualroute
  route_list = * 127.0.0.1
  transport = to_internet
  self = send

begin transports
{transport}
{loop_transport}
{killed_transport}
to_internal:
  driver = smtp
  port = {internal.port}
  hosts_override
  allow_localhost

to_internet:
  driver = smtp
  port = {internet.port}
  hosts_override
  allow_localhost

begin retry
*  *  F,10m,2s
"""
            exim = EximInstance(root, config)
            exim.start((port, reinject))
            yield World(exim, internal, internet, port, faulty, good)
            for sink in (internal, internet):
                for tx in sink.delivered:
                    assert tx.body.partition(b"\r\n\r\n")[2].strip(), "blank message"
    finally:
        if exim is not None:
            exim.stop()
        if not os.environ.get("MAILROUTE_KEEP_EXIM"):
            shutil.rmtree(root, ignore_errors=True)


def test_three_recipients_arrive_once_processed_once(world: World) -> None:
    rcpts = ["b@corp.example", "c@partner.example", "d@other.example"]
    world.send("a@corp.example", rcpts, "exim-three")
    assert world.wait_until(lambda: len({r for t in world.arrivals("exim-three")
                                         for r in t.recipients}) == 3), world.exim.log()
    arrivals = world.arrivals("exim-three")
    assert sorted(r for t in arrivals for r in t.recipients) == sorted(rcpts)
    for tx in arrivals:
        assert tx.body.count(b"X-Processed: mailroute") == 1
        assert tx.body.count(b"X-Mailroute-Mark:") == 1
        assert not tx.body.startswith(b"From ")                 # no mbox line handed on
        assert tx.body.endswith(b"\r\n\r\nHello from Exim.\r\n")   # nor a newline added
    def passes() -> list[str]:
        return [line for line in world.exim.log().splitlines()
                if "T=mailroute_pipe" in line and (" => " in line or " -> " in line)]

    # one batch: Exim logs the three addresses of the one mailroute run (=> then ->)
    assert world.wait_until(lambda: len(passes()) >= 3), world.exim.log()
    batch = [line for line in passes() if any(r in line for r in rcpts)]
    assert len(batch) == 3
    assert [line.split()[3] for line in batch] == ["=>", "->", "->"]


def test_a_rejected_message_bounces_and_reaches_no_recipient(world: World) -> None:
    world.send("reject@corp.example", ["e@partner.example"], "exim-rejected")
    bounced = partial(world.internal.bounces, "reject@corp.example", b"exim-rejected")
    assert world.wait_until(lambda: bool(bounced())), world.exim.log()
    assert b"5.7.1" in bounced()[0].body
    assert world.arrivals("exim-rejected") == []


def test_a_loop_through_a_mis_hooked_transport_stops_on_its_second_pass(world: World) -> None:
    world.send("loop@corp.example", ["m@partner.example"], "exim-looping")
    bounced = partial(world.internal.bounces, "loop@corp.example", b"exim-looping")
    assert world.wait_until(lambda: bool(bounced())), world.exim.log()
    assert b"5.4.6" in bounced()[0].body
    def logged() -> list[str]:
        return [line for line in world.exim.log().splitlines()
                if "T=mailroute_pipe_loop" in line and "m@partner.example" in line]

    # Handed on once, refused the second time. The first run's delivery is logged when that
    # run exits, which can be after the second run's refusal and the bounce: wait for both.
    world.wait_until(lambda: len(logged()) >= 2)
    passes = logged()
    assert len(passes) == 2, "\n".join(passes)
    [sent] = [line for line in passes if " => " in line]
    [refused] = [line for line in passes if " ** " in line]
    assert sent.split()[2] != refused.split()[2]   # two queue ids: the second pass is new mail
    assert world.arrivals("exim-looping") == []


def test_a_tempfail_stays_queued_in_exim_and_is_delivered_once_after_the_fix(world: World
                                                                               ) -> None:
    """``tempfail@corp.example`` is signed with a key whose signing window is over: 4.3.0,
    exit 75, which the recipe's ``temp_errors`` defers; Exim retries (the test's retry rule:
    every 2 s) and, once the key file is fixed, hands the message to mailroute again."""
    rcpts = ["f@partner.example", "g@corp.example"]
    world.send("tempfail@corp.example", rcpts, "exim-deferred")

    def deferrals() -> list[str]:
        return [line for line in world.exim.log().splitlines()
                if " == " in line and "T=mailroute_pipe " in line
                and any(r in line for r in rcpts)]

    assert world.wait_until(lambda: len(deferrals()) >= 2), world.exim.log()
    assert "returned 75" in deferrals()[0], deferrals()[0]
    assert world.arrivals("exim-deferred") == []
    _write_owned(world.faulty_key, world.good_key_text, 0o600)     # the fix
    assert world.wait_until(lambda: sorted(r for t in world.arrivals("exim-deferred")
                                           for r in t.recipients) == sorted(rcpts),
                            timeout=60), world.exim.log()
    queue_id = deferrals()[0].split()[2]
    assert world.wait_until(lambda: f"{queue_id} Completed" in world.exim.log()), \
        world.exim.log()
    arrivals = world.arrivals("exim-deferred")
    assert sorted(r for t in arrivals for r in t.recipients) == sorted(rcpts)  # once each
    for tx in arrivals:
        assert tx.body.count(b"X-Processed: mailroute") == 1
        assert tx.body.count(b"X-Mailroute-Mark:") == 1


def test_a_filter_killed_by_a_signal_freezes_the_message_instead_of_bouncing_it(
        world: World) -> None:
    """Found by the API audit: without ``freeze_signal`` Exim bounced a message whose
    ``mailroute pipe`` was killed (SIGKILL), and no recipient ever got it."""
    world.send("killed@corp.example", ["k@partner.example"], "exim-killed")

    def frozen() -> list[str]:
        return [line for line in world.exim.log().splitlines()
                if "T=mailroute_pipe_killed" in line or "frozen" in line.lower()]

    assert world.wait_until(lambda: any("frozen" in line.lower() for line in frozen())), \
        world.exim.log()
    assert any("signal 9" in line for line in frozen()), world.exim.log()
    time.sleep(3)  # a bounce would be on its way by now (the retry rule runs every 2 s)
    bounces = [t for sink in (world.internal, world.internet) for t in sink.delivered
               if "killed@corp.example" in t.recipients]
    assert bounces == []
    assert world.arrivals("exim-killed") == []


def _listening(port: int) -> set[str]:
    """The IPv4 addresses with a listening TCP socket on ``port`` (/proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, _, hex_port = fields[1].partition(":")
        if int(hex_port, 16) == port and fields[3] == "0A":  # LISTEN
            found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


@pytest.mark.parametrize("recipe", [RECIPE, RECIPE.parents[1] / "exim-serve"
                                    / "mailroute-serve.conf"], ids=["pipe", "serve"])
def test_the_recipes_listen_line_keeps_the_reinjection_port_on_loopback(recipe: Path) -> None:
    """Found by the API audit: ``daemon_smtp_ports = 25 : 10026`` with two interfaces made
    Exim give up ("Address already in use" for 127.0.0.1:25), and would have opened the port
    that skips the filter on every address."""
    line = next(line for line in recipe.read_text().splitlines()
                if line.startswith("local_interfaces"))
    assert not any(setting.startswith("daemon_smtp_ports")
                   for setting in recipe.read_text().splitlines())
    world_port, reinject = free_port(), free_port()
    line = line.replace(".25 ", f".{world_port} ").replace(".10026", f".{reinject}")
    root = Path(tempfile.mkdtemp(prefix="mailroute-exim-listen-"))
    root.chmod(0o755)
    settings = "".join(f"{kept}\n" for kept in main_section(root, (1,)).splitlines()
                       if not kept.startswith(("daemon_smtp_ports", "local_interfaces")))
    exim = EximInstance(root, settings + line + f"\n{ACL_SECTION}\n")
    try:
        exim.start((world_port, reinject))
        assert _listening(world_port) == {"0.0.0.0"}  # noqa: S104 - the recipe's wildcard
        assert _listening(reinject) == {"127.0.0.1"}
    finally:
        exim.stop()
        shutil.rmtree(root, ignore_errors=True)
