"""Each topology with Exim: examples/exim/tN-*.conf merged with examples/exim/mailroute.conf
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

from mailroute.routing import load_topology
from tests.docs.tls_pki import EXO, GATEWAY, exo_endpoint_context, gateway_client, make_pki
from tests.docs.tls_sink import (
    TlsSink,
    exchange_recipients,
    processed_recipients,
    sample_message,
)
from tests.mta.common import FILTER_USER, free_port, interpreter_wrapper, pipe_policy, wait_until
from tests.mta.exim import EXIM_USER, EximInstance, daemon_settings, exim_available
from tests.mta.test_exim_pipe import _recipe_part

ROOT = Path(__file__).resolve().parents[2]
EXIM = ROOT / "examples" / "exim"
SHIPPED_KEY = f"/etc/mailroute/tls/{GATEWAY}.key"
SHIPPED_CERT = f"/etc/mailroute/tls/{GATEWAY}.crt"
EXO_CLIENT, INTRUDER = "127.0.0.3", "127.0.0.2"
TOPOLOGIES = ["t1-in-front", "t2-beside-mx-eop", "t3-beside-mx-gateway"]

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
    name: str
    exim: EximInstance
    exo: TlsSink
    port: int
    ca: Path


@pytest.fixture(scope="module", params=TOPOLOGIES)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    name = request.param
    root = Path(tempfile.mkdtemp(prefix=f"mailroute-exim-{name[:2]}-"))
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
            t2 = sections(EXIM / f"{name}.conf")
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
            yield World(name, exim, exo, port, pki["ca"])
    finally:
        if exim is not None:
            exim.stop()
        shutil.rmtree(root, ignore_errors=True)


def _client(world: World, source: str, *, tls: bool = True) -> smtplib.SMTP:
    client = gateway_client(world.port, source)
    client.ehlo("client.test")
    if tls:
        client.starttls(context=ssl.create_default_context(cafile=str(world.ca)))
        client.ehlo("client.test")
    return client


def test_mail_from_exchange_is_filtered_and_handed_to_the_tenant_with_the_certificate(
        world: World) -> None:
    recipients = exchange_recipients(world.name)
    with _client(world, EXO_CLIENT) as client:
        client.sendmail("alice@example.net", recipients, sample_message(f"{world.name}-exo"))
    assert wait_until(lambda: processed_recipients(world.exo, f"{world.name}-exo", GATEWAY,
                                                   world.exim.log()) == recipients, 30)


def test_exchange_may_relay_and_the_internet_may_not(world: World) -> None:
    with _client(world, EXO_CLIENT, tls=False) as client:
        tls_required = world.name == "t2-beside-mx-eop"       # T1 and T3 are MXs
        assert client.mail("alice@example.net")[0] == (550 if tls_required else 250)
    with _client(world, EXO_CLIENT) as client:
        assert client.mail("alice@example.net")[0] == 250
        assert client.rcpt("max@partner.example")[0] == 250
    if world.name == "t2-beside-mx-eop":     # only Exchange Online may even connect
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            _client(world, INTRUDER)
        assert refused.value.smtp_code == 550
        assert refused.value.smtp_error == b"only Exchange Online may connect"
        return
    with _client(world, INTRUDER) as client:
        assert client.mail("x@example.org")[0] == 250
        assert client.rcpt("max@partner.example") == (550, b"relay not permitted")


@pytest.mark.parametrize("world", ["t1-in-front", "t3-beside-mx-gateway"], indirect=True)
def test_internet_mail_for_the_organisation(world: World) -> None:
    """T1 and T3 are the MX: internet mail for example.net is filtered and handed to the
    tenant (T2 refuses the connection: see above)."""
    with _client(world, INTRUDER) as client:
        client.sendmail("max@partner.example", ["bob@example.net"],
                        sample_message(f"{world.name}-mx"))
    assert wait_until(lambda: processed_recipients(world.exo, f"{world.name}-mx", GATEWAY,
                                                   world.exim.log()) == ["bob@example.net"], 30)


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_exchange_ranges_and_endpoint_are_the_topology_s(name: str) -> None:
    listed = [line for line in (EXIM / "exchange-online.hosts").read_text().splitlines()
              if line and not line.startswith("#")]
    topology = load_topology(ROOT / "examples" / "topologies" / f"{name}.toml")
    assert tuple(listed) == topology.gateway.exo_ip_ranges
    recipe = sections(EXIM / f"{name}.conf")
    assert f"route_list = * {topology.tenant.exo_smart_host} byname" in recipe["routers"]
    assert f"primary_hostname = {topology.gateway.tls_identity}" in recipe["main"]
