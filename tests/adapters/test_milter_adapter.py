"""The asyncio milter adapter in-process, driven over a unix socket by a scripted MTA:
progress keep-alives, the size limit, internal failures, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailroute.adapters import milter_map
from mailroute.adapters.messagelog import MESSAGE_LOG
from mailroute.adapters.milter import MilterServer, MilterSettings, SocketSpec, parse_socket
from mailroute.item import Context, MailItem
from mailroute.limits import Limits
from mailroute.pipeline import Pipeline
from mailroute.protocols import milter as pm
from mailroute.results import Outcome
from tests.protocols.helpers import optneg, pkt


@dataclass(frozen=True)
class Slow:
    seconds: float
    name: str = "slow"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        time.sleep(self.seconds)
        return item.evolve(message=item.message.with_header("X-Slow", "done"))


@dataclass(frozen=True)
class Identity:
    """A filter that changes nothing (a pipeline with a filter reads the message)."""

    name: str = "identity"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        return item


class FakeMta:
    """Speaks the MTA side over a socket and collects the filter's packets."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()

    async def send(self, *packets: bytes) -> None:
        self.writer.write(b"".join(packets))
        await self.writer.drain()

    async def packet(self, timeout: float = 10.0) -> tuple[bytes, bytes]:
        head = await asyncio.wait_for(self.reader.readexactly(4), timeout)
        body = await asyncio.wait_for(self.reader.readexactly(struct.unpack(">I", head)[0]),
                                      timeout)
        return body[:1], body[1:]

    async def until_final(self) -> list[tuple[bytes, bytes]]:
        """Packets up to and including the final reply to end-of-message."""
        got = []
        while True:
            code, data = await self.packet()
            got.append((code, data))
            if code in b"acdrty" and code:
                return got

    async def start_message(self, body: bytes = b"hello\r\n") -> None:
        await self.send(optneg())
        assert (await self.packet())[0] == b"O"
        await self.send(pkt(b"C", b"client\x004\x00\x19192.0.2.1\x00"), pkt(b"H", b"x\x00"),
                        pkt(b"M", b"<a@corp.example>\x00"), pkt(b"R", b"<b@partner.example>\x00"),
                        pkt(b"T"),
                        pkt(b"L", b"Subject\x00 hi\x00"), pkt(b"N"), pkt(b"B", body))


async def connect(server: MilterServer, path: Path) -> FakeMta:
    await server.start(SocketSpec("unix", path=path), mode=0o660)
    return FakeMta(*await asyncio.open_unix_connection(str(path)))


def one_message(server: MilterServer, path: Path,
                body: bytes = b"hello\r\n") -> list[tuple[bytes, bytes]]:
    """Send one message through ``server``; the packets answering end-of-message."""
    async def scenario() -> list[tuple[bytes, bytes]]:
        mta = await connect(server, path)
        assert path.stat().st_mode & 0o777 == 0o660
        await mta.start_message(body)
        await mta.send(pkt(b"E"))
        got = await mta.until_final()
        await mta.close()
        await server.stop()
        return got

    return asyncio.run(scenario())


def test_parse_socket() -> None:
    assert parse_socket("inet:8891@127.0.0.1") == SocketSpec("inet", "127.0.0.1", 8891)
    assert parse_socket("inet:8891") == SocketSpec("inet", "127.0.0.1", 8891)
    assert parse_socket("unix:/run/m.sock") == SocketSpec("unix", path=Path("/run/m.sock"))
    assert parse_socket("local:/run/m.sock").path == Path("/run/m.sock")
    # IPv6: plain, in brackets, and Sendmail's inet6: spelling
    assert parse_socket("inet:8891@::1") == SocketSpec("inet", "::1", 8891)
    assert parse_socket("inet:8891@[::1]") == SocketSpec("inet", "::1", 8891)
    assert parse_socket("inet6:8891@::1") == SocketSpec("inet", "::1", 8891)
    assert parse_socket("inet6:8891") == SocketSpec("inet", "::1", 8891)
    for bad in ("inet:x@h", "inet:0@h", "tcp:1@h", "unix:", "inet:70000@h", "inet6:x@::1",
                "inet6:8891@127.0.0.1"):
        with pytest.raises(ValueError, match="socket"):
            parse_socket(bad)


def test_slow_policy_sends_progress_then_the_edits(tmp_path: Path) -> None:
    server = MilterServer(Pipeline(filters=(Slow(0.5),)),
                          MilterSettings(progress_interval=0.1, workers=2, inline_size=0))
    got = one_message(server, tmp_path / "m.sock")
    codes = [code for code, _ in got]
    assert codes.count(b"p") >= 2
    assert codes[-2:] == [b"i", b"a"]
    assert got[-2][1] == b"\x00\x00\x00\x01X-Slow\x00 done\x00"   # below Postfix's Received


@dataclass(frozen=True)
class ShowHelo:
    name: str = "show-helo"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        helo = item.envelope.helo or "-"
        return item.evolve(message=item.message.with_header("X-Helo", helo))


def test_the_helo_name_reaches_the_envelope(tmp_path: Path) -> None:
    server = MilterServer(Pipeline(filters=(ShowHelo(),)), MilterSettings(workers=1))
    got = one_message(server, tmp_path / "m.sock")
    assert got[-2] == (b"i", b"\x00\x00\x00\x01X-Helo\x00 x\x00")   # FakeMta says HELO x


@dataclass(frozen=True)
class WhoAmI:
    """Writes the SASL user and the client address the policy saw into a header field."""

    name: str = "whoami"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        seen = f"{item.envelope.auth_user} {item.envelope.client_address}"
        return item.evolve(message=item.message.with_header("X-Seen", seen))


def test_mail_macros_reach_the_envelope(tmp_path: Path) -> None:
    async def scenario() -> list[tuple[bytes, bytes]]:
        server = MilterServer(Pipeline(filters=(WhoAmI(),)), MilterSettings(workers=1))
        mta = await connect(server, tmp_path / "m.sock")
        await mta.send(optneg())
        code, data = await mta.packet()
        assert code == b"O"
        # Skipped with the macro lists taken: connect facts come with MAIL; HELO is kept
        # (its name is no Postfix macro, and SPF needs it for bounces).
        assert struct.unpack(">III", data[:12])[2] & 0x3 == 0x1
        macros = b"M{auth_authen}\x00alice\x00{client_addr}\x00192.0.2.7\x00i\x00Q1\x00"
        await mta.send(pkt(b"D", macros), pkt(b"M", b"<a@corp.example>\x00"),
                       pkt(b"R", b"<b@partner.example>\x00"), pkt(b"L", b"Subject\x00 hi\x00"),
                       pkt(b"B", b"hello\r\n"), pkt(b"E"))
        got = await mta.until_final()
        await mta.close()
        await server.stop()
        return got

    got = asyncio.run(scenario())
    assert got[-2] == (b"i", b"\x00\x00\x00\x01X-Seen\x00 alice 192.0.2.7\x00")
    assert got[-1] == (b"a", b"")


def test_the_next_message_does_not_inherit_the_previous_ones_macros(tmp_path: Path) -> None:
    """Postfix sends an empty macro packet when it has none of the names asked for: the
    second message's SASL login must not be the first one's."""
    async def scenario() -> list[bytes]:
        server = MilterServer(Pipeline(filters=(WhoAmI(),)), MilterSettings(workers=1))
        mta = await connect(server, tmp_path / "m.sock")
        await mta.send(optneg())
        assert (await mta.packet())[0] == b"O"
        seen = []
        for macros in (b"M{auth_authen}\x00alice\x00{client_addr}\x00192.0.2.7\x00", b"M"):
            await mta.send(pkt(b"D", macros), pkt(b"M", b"<a@corp.example>\x00"),
                           pkt(b"R", b"<b@partner.example>\x00"),
                           pkt(b"L", b"Subject\x00 hi\x00"), pkt(b"B", b"hello\r\n"),
                           pkt(b"E"))
            got = await mta.until_final()
            seen.append(got[-2][1])
            await mta.send(pkt(b"A"))
        await mta.close()
        await server.stop()
        return seen

    first, second = asyncio.run(scenario())
    assert first == b"\x00\x00\x00\x01X-Seen\x00 alice 192.0.2.7\x00"
    assert second == b"\x00\x00\x00\x01X-Seen\x00 None 192.0.2.7\x00"


def test_message_over_the_size_limit_is_552(tmp_path: Path) -> None:
    server = MilterServer(Pipeline(filters=(Identity(),), limits=Limits(max_message_size=1000)),
                          MilterSettings(workers=1))
    assert one_message(server, tmp_path / "m.sock", b"x" * 2000) == [
        (b"y", b"552 5.3.4 message too big\x00")]


def test_internal_failure_answers_451(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> list[pm.Action]:
        raise RuntimeError("bug in the mapping")

    monkeypatch.setattr("mailroute.adapters.milter.result_actions", broken)

    server = MilterServer(Pipeline(filters=(Identity(),)), MilterSettings(workers=1))
    [(code, text)] = one_message(server, tmp_path / "m.sock")
    assert (code, text[:9]) == (b"y", b"451 4.3.0")
    assert milter_map.INTERNAL_TEMPFAIL.packets() == [pkt(b"y", text)]


def test_an_older_mta_gets_its_own_version_and_no_macro_lists(tmp_path: Path) -> None:
    async def scenario() -> tuple[bytes, bytes]:
        server = MilterServer(Pipeline(), MilterSettings(workers=1))
        mta = await connect(server, tmp_path / "m.sock")
        await mta.send(optneg(version=2, actions=0x3F, protocol=0x7F))
        got = await mta.packet()
        await mta.close()
        await server.stop()
        return got

    code, data = asyncio.run(scenario())
    assert code == b"O"
    # headers, body, quarantine; no end-of-headers, and (no filters) no header or body
    assert struct.unpack(">III", data) == (2, 0x33, 0x70)


def test_an_idle_mta_is_disconnected(tmp_path: Path) -> None:
    async def scenario() -> bytes:
        server = MilterServer(Pipeline(), MilterSettings(workers=1, idle_timeout=0.2))
        mta = await connect(server, tmp_path / "m.sock")
        await mta.send(optneg())
        await mta.packet()
        rest = await asyncio.wait_for(mta.reader.read(), 5)
        await mta.close()
        await server.stop()
        return rest

    assert asyncio.run(scenario()) == b""


def test_an_mta_silent_inside_a_message_is_disconnected(tmp_path: Path) -> None:
    """Inside a message the content timeout applies (the idle one is far longer); an MTA
    that keeps talking within the timeout is not disconnected."""
    async def scenario() -> tuple[float, bytes]:
        server = MilterServer(Pipeline(filters=(Identity(),)), MilterSettings(
            workers=1, idle_timeout=60, content_timeout=0.4))
        mta = await connect(server, tmp_path / "m.sock")
        await mta.start_message()
        for _ in range(4):  # 0.8 s in all, never 0.4 s silent
            await asyncio.sleep(0.2)
            await mta.send(pkt(b"B", b"more\r\n"))
        started = time.monotonic()
        rest = await asyncio.wait_for(mta.reader.read(), 5)
        waited = time.monotonic() - started
        await mta.close()
        await server.stop()
        return waited, rest

    waited, rest = asyncio.run(scenario())
    assert rest == b""
    assert 0.3 <= waited < 3


def test_protocol_error_closes_the_connection(tmp_path: Path) -> None:
    async def scenario() -> bytes:
        server = MilterServer(Pipeline(), MilterSettings(workers=1))
        mta = await connect(server, tmp_path / "m.sock")
        await mta.send(b"\x00\x00\x00\x00")
        rest = await asyncio.wait_for(mta.reader.read(), 5)
        await mta.close()
        await server.stop()
        return rest

    assert asyncio.run(scenario()) == b""


def test_shutdown_finishes_in_flight_and_refuses_new_transactions(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[list[tuple[bytes, bytes]], tuple[bytes, bytes], float]:
        server = MilterServer(Pipeline(filters=(Slow(0.5),)),
                              MilterSettings(progress_interval=10, workers=2, inline_size=0))
        busy = await connect(server, tmp_path / "m.sock")
        idle = FakeMta(*await asyncio.open_unix_connection(str(tmp_path / "m.sock")))
        await idle.send(optneg())
        await idle.packet()
        await idle.send(pkt(b"C", b"client\x00U"))
        await busy.start_message()
        await busy.send(pkt(b"E"))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        stopping = asyncio.create_task(server.stop())
        await asyncio.sleep(0.05)
        # MAIL needs no reply (SMFIP_NR_MAIL): the refusal answers end-of-message
        await idle.send(pkt(b"M", b"<late@corp.example>\x00"), pkt(b"R", b"<b@x.example>\x00"),
                        pkt(b"L", b"Subject\x00 late\x00"), pkt(b"B", b"hi\r\n"), pkt(b"E"))
        refused = await idle.packet()
        finished = await busy.until_final()
        await stopping
        await busy.close()
        await idle.close()
        return finished, refused, time.monotonic() - started

    with caplog.at_level(logging.INFO, logger=MESSAGE_LOG):
        finished, refused, took = asyncio.run(scenario())
    assert finished[-1] == (b"a", b"")
    assert refused[0] == b"y"
    assert refused[1].startswith(b"421 4.3.2")
    assert took < 5.0
    # one line per message: the refused one too, with its sender
    lines = sorted(r.getMessage() for r in caplog.records if r.name == MESSAGE_LOG)
    assert [line.split(";")[0] for line in lines] == [
        "accept 2.0.0 message accepted",
        "tempfail 4.3.2 mail filter shutting down, try again later"]
    assert "sender=<late@corp.example>" in lines[1]


def test_shutdown_refuses_mail_at_once_when_the_mta_waits_for_its_reply(
        tmp_path: Path) -> None:
    async def scenario() -> tuple[bytes, bytes]:
        server = MilterServer(Pipeline(filters=(Slow(0.5),)),
                              MilterSettings(progress_interval=10, workers=1, inline_size=0))
        busy = await connect(server, tmp_path / "m.sock")
        await busy.start_message()
        await busy.send(pkt(b"E"))
        mta = FakeMta(*await asyncio.open_unix_connection(str(tmp_path / "m.sock")))
        await mta.send(optneg(protocol=0x1FFFFF & ~int(pm.ProtocolFlag.NR_MAIL)))
        await mta.packet()
        await asyncio.sleep(0.1)
        stopping = asyncio.create_task(server.stop())
        await asyncio.sleep(0.05)
        await mta.send(pkt(b"M", b"<late@corp.example>\x00"))
        got = await mta.packet()
        await busy.until_final()
        await stopping
        await mta.close()
        await busy.close()
        return got

    code, text = asyncio.run(scenario())
    assert (code, text[:9]) == (b"y", b"421 4.3.2")


def test_shutdown_tempfails_what_outlives_the_grace(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> list[tuple[bytes, bytes]]:
        server = MilterServer(Pipeline(filters=(Slow(1.0),)),
                              MilterSettings(progress_interval=10, workers=1, inline_size=0,
                                             shutdown_grace=0.3))
        mta = await connect(server, tmp_path / "m.sock")
        await mta.start_message()
        await mta.send(pkt(b"E"))
        await asyncio.sleep(0.1)
        await server.stop()
        got = await mta.until_final()
        await mta.close()
        await asyncio.sleep(1.2)   # the policy run ends after the answer: not logged again
        return got

    with caplog.at_level(logging.INFO, logger=MESSAGE_LOG):
        [(code, text)] = asyncio.run(scenario())
    assert (code, text[:9]) == (b"y", b"451 4.3.0")
    [line] = [r.getMessage() for r in caplog.records if r.name == MESSAGE_LOG]
    assert line.startswith("tempfail 4.3.0 ")


def test_cli_usage_and_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mailroute.cli import main

    policy = tmp_path / "p.toml"
    policy.write_text("")
    assert main(["milter", "--config", str(policy), "--socket", "tcp:1"]) == 2
    assert "inet:PORT@HOST" in capsys.readouterr().err
    for option in (["--socket-group", "postfix"], ["--socket-mode", "0660"]):
        assert main(["milter", "--config", str(policy), "--socket", "inet:8891@127.0.0.1",
                     *option]) == 2
        assert "apply to a unix socket only" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[[pipeline]]\nfilter = 'no-such-filter'\n")
    assert main(["milter", "--config", str(bad), "--socket", "unix:/nonexistent/x"]) == 78
    assert capsys.readouterr().err.startswith("mailroute milter: configuration error")
    (tmp_path / "file").write_text("not a socket")
    assert main(["milter", "--config", str(policy), "--socket",
                 f"unix:{tmp_path / 'file'}"]) == 75   # cannot listen there
    assert "exists and is not a socket" in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "not a socket"


def test_a_socket_another_milter_listens_on_is_not_taken(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Starting a second milter on a live socket's path fails (75) and leaves the first
    one reachable; a stale socket (nothing listens) is replaced."""
    import socket

    from mailroute.adapters.milter import socket_file_id
    from mailroute.cli import main

    policy = tmp_path / "p.toml"
    policy.write_text("")
    path = tmp_path / "m.sock"
    first = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    first.bind(str(path))
    first.listen(8)
    identity = socket_file_id(path)
    try:
        assert main(["milter", "--config", str(policy), "--socket", f"unix:{path}"]) == 75
        assert f"another process listens on {path}" in capsys.readouterr().err
        assert socket_file_id(path) == identity
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(path))   # the first one is still reachable
        probe.close()
    finally:
        first.close()

    async def stale_is_replaced() -> None:
        server = MilterServer(Pipeline(), MilterSettings(workers=1))
        await server.start(SocketSpec("unix", path=path))
        assert socket_file_id(path) != identity
        await server.stop()

    asyncio.run(stale_is_replaced())


def test_a_milter_removes_only_its_own_socket_file(tmp_path: Path) -> None:
    import socket

    from mailroute.adapters.milter import remove_socket_file, socket_file_id

    path = tmp_path / "m.sock"
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old.bind(str(path))
    ours = socket_file_id(path)
    path.unlink()                 # another milter took the path since
    new = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    new.bind(str(path))
    try:
        remove_socket_file(path, ours)
        assert path.exists()
        remove_socket_file(path, socket_file_id(path))
        assert not path.exists()
    finally:
        old.close()
        new.close()


def test_one_log_line_per_message_with_queue_id_and_sasl_user(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The MTA's {i} and {auth_authen} macros reach the message log line, verdict first."""
    import json
    import logging

    from mailroute.adapters.messagelog import MESSAGE_LOG, MessageLog

    async def scenario() -> list[tuple[bytes, bytes]]:
        server = MilterServer(Pipeline(filters=(Slow(0.0),)), MilterSettings(workers=1),
                              message_log=MessageLog("json"))
        mta = await connect(server, tmp_path / "m.sock")
        await mta.send(optneg())
        assert (await mta.packet())[0] == b"O"
        await mta.send(pkt(b"C", b"client\x004\x00\x19192.0.2.1\x00"), pkt(b"H", b"x\x00"),
                       pkt(b"D", b"Mi\x004F2A1\x00{auth_authen}\x00anna\x00"),
                       pkt(b"M", b"<a@corp.example>\x00"))   # MAIL needs no reply (NR_MAIL)
        await mta.send(pkt(b"R", b"<b@partner.example>\x00"), pkt(b"R", b"<c@partner.example>\x00"),
                       pkt(b"L", b"Message-ID\x00 <x1@corp.example>\x00"), pkt(b"N"),
                       pkt(b"B", b"hi\r\n"), pkt(b"E"))
        got = await mta.until_final()
        await mta.close()
        await server.stop()
        return got

    with caplog.at_level(logging.INFO, logger=MESSAGE_LOG):
        got = asyncio.run(scenario())
    assert got[-1][0] == b"a"
    [line] = [r.getMessage() for r in caplog.records if r.name == MESSAGE_LOG]
    document = json.loads(line)
    assert list(document)[:4] == ["verdict", "code", "status", "reply"]
    assert (document["verdict"], document["queue_id"], document["sasl_user"],
            document["message_id"], document["sender"], document["recipients"],
            document["client"], document["filters"]) == (
        "accept", "4F2A1", "anna", "<x1@corp.example>", "a@corp.example", 2, "192.0.2.1",
        [{"name": "slow", "result": "changed"}])
    assert document["exit"] is None


def test_a_message_over_the_limit_is_logged_as_rejected(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from mailroute.adapters.messagelog import MESSAGE_LOG

    server = MilterServer(Pipeline(filters=(Slow(0.0),), limits=Limits(max_message_size=1000)),
                          MilterSettings(workers=1))
    with caplog.at_level(logging.INFO, logger=MESSAGE_LOG):
        one_message(server, tmp_path / "m.sock", b"x" * 2000)
    [line] = [r.getMessage() for r in caplog.records if r.name == MESSAGE_LOG]
    assert line.startswith("reject 5.3.4 message too big; queue_id=- ")


def test_mmap_threshold_is_pinned_on_glibc() -> None:
    import platform

    from mailroute.adapters.heap import pin_mmap_threshold

    assert pin_mmap_threshold() is (platform.libc_ver()[0] == "glibc")


def test_the_command_runs_on_uvloop_when_installed() -> None:
    from mailroute.commands.milter import _event_loop_runner

    uvloop = pytest.importorskip("uvloop")
    assert _event_loop_runner() is uvloop.run


POSTFIX_OFFER = pm.OptionNegotiation(6, pm.ActionFlag(0x1FF), pm.ProtocolFlag(0x1FFFFF))


def test_negotiation_names_a_macro_list_for_every_stage() -> None:
    """Postfix reads an empty list as "send main.cf's macros": no stage is left empty, and
    the stages we need nothing from ask for a name no MTA defines."""
    from mailroute.adapters.milter import NO_MACROS, negotiate

    reply = negotiate(POSTFIX_OFFER)
    lists = dict(reply.macros)
    assert set(lists) == set(pm.Stage)
    assert lists[pm.Stage.EOM] == b"i"
    assert b"{client_addr}" in lists[pm.Stage.ENVFROM].split()
    assert b"i" in lists[pm.Stage.ENVFROM].split()
    others = set(pm.Stage) - {pm.Stage.EOM, pm.Stage.ENVFROM}
    assert {lists[stage] for stage in others} == {NO_MACROS}
    assert reply.protocol & pm.ProtocolFlag.NOCONNECT


def test_negotiation_without_filters_skips_headers_and_body() -> None:
    from mailroute.adapters.milter import negotiate

    with_filters = negotiate(POSTFIX_OFFER, needs_message=True).protocol
    without = negotiate(POSTFIX_OFFER, needs_message=False).protocol
    skipped = pm.ProtocolFlag.NOHDRS | pm.ProtocolFlag.NOBODY
    assert not with_filters & skipped
    assert without & skipped == skipped


def test_negotiation_without_filters_shows_data_and_answers_it() -> None:
    """A policy without filters accepts at DATA: the step is shown, its reply owed, and the
    queue id asked for there (nothing at end-of-message, which the MTA then skips)."""
    from mailroute.adapters.milter import NO_MACROS, negotiate

    with_filters = negotiate(POSTFIX_OFFER, needs_message=True)
    without = negotiate(POSTFIX_OFFER, needs_message=False)
    shown = pm.ProtocolFlag.NODATA | pm.ProtocolFlag.NR_DATA
    assert with_filters.protocol & shown == shown
    assert not without.protocol & shown
    lists = dict(without.macros)
    assert (lists[pm.Stage.DATA], lists[pm.Stage.EOM]) == (b"i", NO_MACROS)


def test_without_filters_the_message_is_accepted_at_data_and_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import json
    import logging

    from mailroute.adapters.messagelog import MESSAGE_LOG, MessageLog

    async def scenario() -> list[tuple[bytes, bytes]]:
        server = MilterServer(Pipeline(), MilterSettings(workers=1),
                              message_log=MessageLog("json"))
        mta = await connect(server, tmp_path / "m.sock")
        await mta.send(optneg())
        assert (await mta.packet())[0] == b"O"
        await mta.send(pkt(b"H", b"x\x00"), pkt(b"M", b"<a@corp.example>\x00"),
                       pkt(b"R", b"<b@partner.example>\x00"),
                       pkt(b"R", b"<c@partner.example>\x00"),
                       pkt(b"D", b"Ti\x004F2A1\x00"), pkt(b"T"))
        got = [await mta.packet()]
        await mta.send(pkt(b"A"), pkt(b"Q"))
        await mta.close()
        await server.stop()
        return got

    with caplog.at_level(logging.INFO, logger=MESSAGE_LOG):
        got = asyncio.run(scenario())
    assert got == [(b"a", b"")]  # accepted at DATA: no content, no end-of-message
    [line] = [r.getMessage() for r in caplog.records if r.name == MESSAGE_LOG]
    document = json.loads(line)
    assert (document["verdict"], document["reply"], document["queue_id"],
            document["recipients"]) == ("accept", "accepted (no filters)", "4F2A1", 2)


def test_negotiation_without_macro_lists_keeps_the_connect_step() -> None:
    """An MTA that does not take macro lists (no SETSYMLIST) gets none, and still shows us
    the connect step (the client address comes from it then)."""
    from mailroute.adapters.milter import negotiate

    offer = pm.OptionNegotiation(6, pm.ActionFlag(0xFF), pm.ProtocolFlag(0x1FFFFF))
    reply = negotiate(offer)
    assert reply.macros == ()
    assert not reply.actions & pm.ActionFlag.SETSYMLIST
    assert not reply.protocol & pm.ProtocolFlag.NOCONNECT
    assert negotiate(offer) == reply  # computed once per offer, the same answer


@dataclass(frozen=True)
class ShowSubject:
    """Adds what the policy saw of the Subject field, as written."""

    name: str = "show-subject"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        field = item.message.headers.get("Subject")
        seen = field.raw.decode().strip() if field is not None else "-"
        return item.evolve(message=item.message.with_header("X-Seen", f"[{seen}]"))


@pytest.mark.parametrize(("version", "protocol", "shown", "given"), [
    (6, 0x1FFFFF, b"Subject\x00 hi\x00", b"X-Seen\x00 [Subject: hi]\x00"),
    (2, 0x7F, b"Subject\x00hi\x00", b"X-Seen\x00[Subject: hi]\x00"),
], ids=["protocol-6", "protocol-2"])
def test_header_values_keep_one_space_whatever_the_protocol_version(
        tmp_path: Path, version: int, protocol: int, shown: bytes, given: bytes) -> None:
    """Before protocol 6 there is no SMFIP_HDR_LEADSPC: the MTA strips the space after the
    colon from what it shows and adds one to what it is given. The policy saw "Subject:hi"
    and Postfix wrote "X-Seen:  [...]" (found with milter_protocol = 2 in a real Postfix)."""
    async def scenario() -> list[tuple[bytes, bytes]]:
        server = MilterServer(Pipeline(filters=(ShowSubject(),)), MilterSettings(workers=1))
        mta = await connect(server, tmp_path / "m.sock")
        await mta.send(optneg(version=version, actions=0x3F, protocol=protocol))
        assert (await mta.packet())[0] == b"O"
        for step in (pkt(b"C", b"client\x004\x00\x19192.0.2.1\x00"),
                     pkt(b"M", b"<a@corp.example>\x00"), pkt(b"R", b"<b@partner.example>\x00"),
                     pkt(b"L", shown), pkt(b"N"), pkt(b"B", b"hello\r\n")):
            await mta.send(step)
            if version < 6:   # every step is answered, and the MTA waits for it
                assert (await mta.packet())[0] == b"c"
        await mta.send(pkt(b"E"))
        got = await mta.until_final()
        await mta.close()
        await server.stop()
        return got

    got = asyncio.run(scenario())
    header_actions = [data for code, data in got if code in (b"h", b"i")]
    assert len(header_actions) == 1
    assert header_actions[0].endswith(given)


@pytest.mark.parametrize("actions", [0x02, 0x00])   # body only; nothing at all
def test_an_edit_the_mta_does_not_allow_is_a_tempfail_not_an_accept(
        tmp_path: Path, actions: int, caplog: pytest.LogCaptureFixture) -> None:
    """The policy adds a field, the MTA's offer does not allow adding fields: the message
    is refused for now (the sender retries), and logged as such, never accepted unedited."""
    import logging

    from mailroute.adapters.messagelog import MESSAGE_LOG

    async def scenario() -> list[tuple[bytes, bytes]]:
        server = MilterServer(Pipeline(filters=(Slow(0.0),)), MilterSettings(workers=1))
        mta = await connect(server, tmp_path / "m.sock")
        await mta.send(optneg(actions=actions))
        assert (await mta.packet())[0] == b"O"
        await mta.send(pkt(b"C", b"client\x004\x00\x19192.0.2.1\x00"), pkt(b"H", b"x\x00"),
                       pkt(b"M", b"<a@corp.example>\x00"), pkt(b"R", b"<b@partner.example>\x00"),
                       pkt(b"L", b"Subject\x00 hi\x00"), pkt(b"N"), pkt(b"B", b"hi\r\n"),
                       pkt(b"E"))
        got = await mta.until_final()
        await mta.close()
        await server.stop()
        return got

    with caplog.at_level(logging.INFO):
        got = asyncio.run(scenario())
    assert got == [(b"y", milter_map.INTERNAL_TEMPFAIL.packets()[0][5:])]
    [line] = [r.getMessage() for r in caplog.records if r.name == MESSAGE_LOG]
    assert line.startswith("tempfail 4.3.0 ")
    assert "milter action InsertHeader" in caplog.text


def test_a_message_over_the_limit_is_logged_with_its_message_id(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from mailroute.adapters.messagelog import MESSAGE_LOG

    async def scenario() -> list[tuple[bytes, bytes]]:
        server = MilterServer(Pipeline(filters=(Slow(0.0),),
                                       limits=Limits(max_message_size=1000)),
                              MilterSettings(workers=1))
        mta = await connect(server, tmp_path / "m.sock")
        await mta.send(optneg())
        assert (await mta.packet())[0] == b"O"
        await mta.send(pkt(b"M", b"<a@corp.example>\x00"), pkt(b"R", b"<b@partner.example>\x00"),
                       pkt(b"L", b"Message-ID\x00 <big1@corp.example>\x00"), pkt(b"N"),
                       pkt(b"B", b"x" * 2000), pkt(b"E"))
        got = await mta.until_final()
        await mta.close()
        await server.stop()
        return got

    with caplog.at_level(logging.INFO, logger=MESSAGE_LOG):
        assert asyncio.run(scenario()) == [(b"y", b"552 5.3.4 message too big\x00")]
    [line] = [r.getMessage() for r in caplog.records if r.name == MESSAGE_LOG]
    assert "message_id=<big1@corp.example> " in line


def test_a_socket_group_the_user_cannot_give_is_named_in_the_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Without membership of the group (and without privileges) chown fails: the message
    says what to change, the command exits 75 and leaves no socket behind."""
    import errno
    import os

    from mailroute.cli import main

    def refused(path: object, uid: int, gid: int) -> None:
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr("mailroute.adapters.milter.os.chown", refused)
    policy = tmp_path / "p.toml"
    policy.write_text("")
    assert main(["milter", "--config", str(policy), "--socket", f"unix:{tmp_path / 'm.sock'}",
                 "--socket-group", "0"]) == 75
    assert ("cannot give the socket the group '0': the user running mailroute must be a "
            "member of it (Operation not permitted)") in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [policy]


def test_an_mta_that_does_not_read_the_replies_is_not_read_either(tmp_path: Path) -> None:
    """Each message's answer is a 1 MB body: an MTA that sends message after message and
    never reads makes the milter stop reading it once the unsent replies pass the write
    buffer's limit, instead of answering (and holding) all of them."""
    import socket
    import threading

    from mailroute.adapters.messagelog import MessageLog
    from mailroute.policy import load_policy
    from tests.adapters.milter_recordings import write_policies

    write_policies(tmp_path)
    lines: list[str] = []
    path = tmp_path / "m.sock"
    body = b"x" * 76 + b"\r\n"
    message = b"".join([pkt(b"M", b"<a@corp.example>\x00"), pkt(b"R", b"<b@partner.example>\x00"),
                        pkt(b"L", b"Subject\x00 hi\x00"),
                        *[pkt(b"B", body * 800) for _ in range(17)], pkt(b"E")])

    def flood(done: threading.Event) -> None:
        with socket.socket(socket.AF_UNIX) as mta:
            mta.settimeout(2.0)
            mta.connect(str(path))
            try:
                mta.sendall(optneg())
                head = mta.recv(4, socket.MSG_WAITALL)
                mta.recv(struct.unpack(">I", head)[0], socket.MSG_WAITALL)
                for _ in range(30):
                    mta.sendall(message)   # never reads a reply
            except TimeoutError:
                pass   # the milter stopped reading: the socket buffers are full
            done.wait(10)

    async def scenario() -> None:
        server = MilterServer(load_policy(str(tmp_path / "disclaimer.toml")),
                              MilterSettings(workers=1), message_log=MessageLog(sink=lines.append))
        await server.start(SocketSpec("unix", path=path))
        done = threading.Event()
        client = threading.Thread(target=flood, args=(done,))
        client.start()
        await asyncio.to_thread(time.sleep, 4.0)
        done.set()
        await asyncio.to_thread(client.join)
        await server.stop()

    asyncio.run(scenario())
    assert 1 <= len(lines) <= 3, len(lines)


def test_a_message_with_more_recipients_than_kept_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from mailroute.adapters.messagelog import MESSAGE_LOG

    monkeypatch.setattr(milter_map, "MAX_RECIPIENTS", 3)

    async def scenario() -> list[list[tuple[bytes, bytes]]]:
        server = MilterServer(Pipeline(filters=(Identity(),)), MilterSettings(workers=1))
        mta = await connect(server, tmp_path / "m.sock")
        await mta.send(optneg())
        assert (await mta.packet())[0] == b"O"
        answers = []
        for count in (4, 3):   # one too many; then as many as are kept
            await mta.send(pkt(b"M", b"<a@corp.example>\x00"),
                           *[pkt(b"R", b"<r%d@partner.example>\x00" % n) for n in range(count)],
                           pkt(b"L", b"Message-ID\x00 <m%d@corp.example>\x00" % count),
                           pkt(b"B", b"hi\r\n"), pkt(b"E"))
            answers.append(await mta.until_final())
        await mta.close()
        await server.stop()
        return answers

    with caplog.at_level(logging.INFO, logger=MESSAGE_LOG):
        too_many, kept = asyncio.run(scenario())
    assert too_many == [(b"y", b"552 5.5.3 too many recipients\x00")]
    assert kept[-1] == (b"a", b"")
    lines = [r.getMessage() for r in caplog.records if r.name == MESSAGE_LOG]
    assert [line.split(";")[0] for line in lines] == ["reject 5.5.3 too many recipients",
                                                       "accept 2.0.0 message accepted"]
    assert " message_id=<m4@corp.example> " in lines[0]
    assert " recipients=3 " in lines[1]
