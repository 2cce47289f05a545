"""T2 with Exim: examples/exim/t2-beside-mx-eop.conf merged with examples/exim/mailroute.conf
in a throwaway Exim 4.96 (tests/mta/exim.py). As for Postfix, the test plays Exchange Online
on both sides: it delivers over STARTTLS after checking the gateway's certificate name, and
receives the processed message on a TLS sink that insists on the gateway's client
certificate, at the shipped endpoint name (resolved to this host through /etc/hosts inside
Exim's private mount namespace only)."""

from __future__ import annotations

import shutil
import smtplib
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs.tls_pki import EXO, GATEWAY, exo_endpoint_context, gateway_client, make_pki
from tests.docs.tls_sink import TlsSink
from tests.mta.common import FILTER_USER, free_port, interpreter_wrapper, pipe_policy
from tests.mta.exim import EXIM_USER, EximInstance, daemon_settings, exim_available
from tests.mta.test_exim_pipe import _recipe_part

ROOT = Path(__file__).resolve().parents[2]
EXIM = ROOT / "examples" / "exim"
SHIPPED_KEY = f"/etc/mailroute/tls/{GATEWAY}.key"
SHIPPED_CERT = f"/etc/mailroute/tls/{GATEWAY}.crt"
EXO_CLIENT, INTRUDER = "127.0.0.3", "127.0.0.2"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not exim_available(), reason="needs root, unshare, the Debian exim4 "
                                                     "packages (apt-get download) and the "
                                                     "Debian-exim user"),
]


def sections(path: Path) -> dict[str, str]:
    """The parts of a recipe file, by the word after ``# ---``, without comment lines."""
    parts: dict[str, list[str]] = {}
    current = "head"
    for line in path.read_text().splitlines():
        if line.startswith("# --- "):
            current = line.removeprefix("# --- ").split()[0].rstrip(":")
        elif not line.lstrip().startswith("#"):
            parts.setdefault(current, []).append(line)
    return {name: "\n".join(lines).strip() + "\n" for name, lines in parts.items()}


def _replace(text: str, swaps: list[tuple[str, str]]) -> str:
    for shipped, here in swaps:
        assert shipped in text, shipped
        text = text.replace(shipped, here)
    return text


@dataclass
class World:
    exim: EximInstance
    exo: TlsSink
    port: int
    ca: Path


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="mailroute-exim-t2-"))
    root.chmod(0o755)
    exim: EximInstance | None = None
    try:
        pki = make_pki(root)
        shutil.chown(pki["gateway_key"], EXIM_USER)
        with TlsSink(exo_endpoint_context(pki)) as exo:
            hosts = root / "exchange-online.hosts"
            hosts.write_text(f"{EXO_CLIENT}\n")     # "Exchange Online" connects from here
            policy = pipe_policy(root, owner=FILTER_USER)
            wrapper = interpreter_wrapper(root)
            port, reinject = free_port(), free_port()
            t2 = sections(EXIM / "t2-beside-mx-eop.conf")
            tls = [(SHIPPED_CERT, str(pki["gateway_cert"])), (SHIPPED_KEY,
                                                               str(pki["gateway_key"]))]
            main = _replace(t2["main"], [*tls, ("/etc/exim4/exchange-online.hosts",
                                                str(hosts))])
            # "Exchange Online" listens on this host: Exim must be told that is fine.
            router = _replace(t2["routers"], [("transport = exo_smtp",
                                               "transport = exo_smtp\n  self = send")])
            transport = _replace(t2["transports"], [
                *tls, ("port = 25", f"port = {exo.port}\n  allow_localhost"),
                ("/etc/ssl/certs/ca-certificates.crt", str(pki["ca"]))])
            pipe = _replace(_recipe_part("mailroute_pipe"), [
                ("/usr/local/bin/mailroute", str(wrapper)),
                ("/etc/mailroute/policy.toml", str(policy)),
                ("user = mailroute", f"user = {FILTER_USER}"),
                ("127.0.0.1:10026", f"127.0.0.1:{reinject}")])
            config = f"""
{daemon_settings(root, (port, reinject))}
{main}
begin acl
{t2["acl"]}
begin routers
{_recipe_part("mailroute_filter").replace("10026", str(reinject))}
{router}
begin transports
{pipe}
{transport}
begin retry
*  *  F,10m,2s
"""
            upper = root / "etc-upper"
            upper.mkdir()
            (upper / "hosts").write_text(f"127.0.0.1 localhost {EXO}\n")
            exim = EximInstance(root, config)
            exim.start((port, reinject))
            yield World(exim, exo, port, pki["ca"])
    finally:
        if exim is not None:
            exim.stop()
        shutil.rmtree(root, ignore_errors=True)


MESSAGE = (b"From: <alice@example.net>\r\nTo: <max@partner.example>\r\nSubject: t2-exim\r\n"
           b"Message-ID: <t2-exim@example.net>\r\n\r\nHello through the Exim gateway.\r\n")


def _client(world: World, source: str) -> smtplib.SMTP:
    return gateway_client(world.port, source)


def test_mail_from_exchange_is_filtered_and_returned_with_the_gateway_certificate(
        world: World) -> None:
    with _client(world, EXO_CLIENT) as client:
        client.ehlo("exo.test")
        assert client.mail("alice@example.net")[0] == 550      # TLS first
        client.rset()
        client.starttls(context=ssl.create_default_context(cafile=str(world.ca)))
        client.ehlo("exo.test")
        client.sendmail("alice@example.net", ["max@partner.example", "bob@example.net"],
                        MESSAGE)
    [arrival] = world.exo.wait_for(1)
    assert arrival.client_names == (GATEWAY,), world.exim.log()
    assert sorted(arrival.recipients) == ["bob@example.net", "max@partner.example"]
    assert arrival.data.count(b"X-Processed: mailroute") == 1
    assert arrival.data.count(b"X-Mailroute-Mark: v1.") == 1
    assert b"Hello through the Exim gateway." in arrival.data


def test_a_client_outside_exchange_ranges_is_refused(world: World) -> None:
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        _client(world, INTRUDER)
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error == b"only Exchange Online may connect"


def test_exchange_ranges_are_the_topology_s() -> None:
    from mailroute.routing import load_topology

    listed = [line for line in (EXIM / "exchange-online.hosts").read_text().splitlines()
              if line and not line.startswith("#")]
    topology = load_topology(ROOT / "examples" / "topologies" / "t2-beside-mx-eop.toml")
    assert tuple(listed) == topology.gateway.exo_ip_ranges
    assert f"route_list = * {topology.tenant.exo_smart_host} byname" in sections(
        EXIM / "t2-beside-mx-eop.conf")["routers"]
