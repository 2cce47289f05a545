"""The Postfix side of each topology run for real: examples/postfix/tN-*/ plus the common
examples/postfix/ services, on a throwaway Postfix per topology. The test plays Exchange Online
on both sides: it delivers over STARTTLS after checking the gateway's certificate name (the
outbound connector's DomainValidation), and it receives mail for the tenant on a TLS sink that
insists on the gateway's client certificate (the return or lock-down connector's
TlsSenderCertificateName). Only host names, ports and file locations are changed; every other
setting is the shipped one. "Exchange Online" connects from 127.0.0.3, an internet sender
from 127.0.0.2."""

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
from tests.docs.tls_sink import (
    TlsSink,
    exchange_recipients,
    processed_recipients,
    sample_message,
)
from tests.mta.common import FILTER_USER, free_port, interpreter_wrapper, pipe_policy
from tests.mta.postfix import PostfixInstance, postfix_available
from tests.mta.test_postfix_pipe import _example_block, _pipe_service

ROOT = Path(__file__).resolve().parents[2]
POSTFIX = ROOT / "examples" / "postfix"
EXO_CLIENT, INTERNET = "127.0.0.3", "127.0.0.2"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not postfix_available(), reason="needs Postfix (scripts/setup-system) "
                                                       "and root"),
]


def _settings(text: str) -> dict[str, str]:
    settings = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = (part.strip() for part in line.split("=", 1))
            settings[key] = value
    return settings


def _shipped_main(name: str, endpoint_port: int, pki: dict[str, Path],
                  cidr: Path) -> dict[str, str]:
    """examples/postfix/main.cf + NAME/main.cf with test locations. The tenant's endpoint is
    named by address here, so its certificate is checked against the shipped name instead
    (Exchange's wildcard certificate must match it)."""
    settings = _settings((POSTFIX / "main.cf").read_text() + (POSTFIX / name / "main.cf")
                         .read_text())
    endpoint, here = f"[{EXO}]:25", f"[127.0.0.1]:{endpoint_port}"
    swaps = {"smtp_tls_CAfile": ("/etc/ssl/certs/ca-certificates.crt", str(pki["ca"])),
             "exo_clients": ("/etc/postfix/exchange-online.cidr", str(cidr))}
    if settings.get("relayhost"):
        swaps["relayhost"] = (endpoint, here)
        settings["smtp_tls_secure_cert_match"] = EXO
    else:  # T1: only the organisation's mail goes to the tenant
        swaps["transport_maps"] = (f"smtp:{endpoint}", f"smtp:{here}")
        swaps["smtp_tls_policy_maps"] = (f"{endpoint}=secure",
                                         f"{{ {here} = secure match={EXO} }}")
    for key, (shipped, test) in swaps.items():
        assert shipped in settings[key], key
        settings[key] = settings[key].replace(shipped, test)
    for key in ("smtpd_tls_cert_file", "smtp_tls_cert_file"):
        assert settings[key] == f"/etc/mailroute/tls/{GATEWAY}.crt"
        settings[key] = str(pki["gateway_cert"])
    for key in ("smtpd_tls_key_file", "smtp_tls_key_file"):
        settings[key] = str(pki["gateway_key"])
    return settings


@dataclass
class World:
    name: str
    postfix: PostfixInstance
    exo: TlsSink
    port: int
    ca: Path


@pytest.fixture(scope="module", params=["t1-in-front", "t2-beside-mx-eop",
                                        "t3-beside-mx-gateway"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    name = request.param
    root = Path(tempfile.mkdtemp(prefix=f"mailroute-{name[:2]}-"))
    root.chmod(0o755)
    postfix: PostfixInstance | None = None
    try:
        pki = make_pki(root)
        with TlsSink(exo_endpoint_context(pki)) as exo:
            cidr = root / "exchange-online.cidr"
            cidr.write_text(f"{EXO_CLIENT}/32 OK\n")
            policy = pipe_policy(root, owner=FILTER_USER)
            wrapper = interpreter_wrapper(root)
            port, reinject = free_port(), free_port()
            receiving = (POSTFIX / name / "master.cf").read_text()
            shipped = "smtp      inet  n       -       y       -       -       smtpd"
            assert shipped in receiving
            receiving = receiving.replace(shipped, f"127.0.0.1:{port} inet n - n - - smtpd")
            master = (receiving
                      + _example_block("127.0.0.1:10026").replace("127.0.0.1:10026",
                                                                  f"127.0.0.1:{reinject}")
                      + _pipe_service("mailroute", wrapper, policy, reinject))
            postfix = PostfixInstance(root, {"mynetworks": "127.0.0.1/32",
                                             **_shipped_main(name, exo.port, pki, cidr)}, master)
            postfix.start((port, reinject))
            yield World(name, postfix, exo, port, pki["ca"])
    finally:
        if postfix is not None:
            postfix.stop()
        shutil.rmtree(root, ignore_errors=True)


def _tls_client(world: World, source: str) -> smtplib.SMTP:
    """A client from ``source`` after STARTTLS with the gateway's name checked."""
    client = gateway_client(world.port, source)
    client.ehlo("client.test")
    client.starttls(context=ssl.create_default_context(cafile=str(world.ca)))
    client.ehlo("client.test")
    return client


def _arrived(world: World, subject: str, recipients: list[str]) -> bool:
    """True once ``recipients`` reached the tenant with ``subject`` (each message checked)."""
    return world.postfix.wait_until(lambda: processed_recipients(
        world.exo, subject, GATEWAY, world.postfix.log()[-3000:]) == recipients)


def test_mail_from_exchange_is_filtered_and_handed_to_the_tenant_with_the_certificate(
        world: World) -> None:
    recipients = exchange_recipients(world.name)
    with _tls_client(world, EXO_CLIENT) as client:
        client.sendmail("alice@example.net", recipients, sample_message(f"{world.name}-exo"))
    assert _arrived(world, f"{world.name}-exo", recipients)


def test_exchange_may_relay_and_the_internet_may_not(world: World) -> None:
    with gateway_client(world.port, EXO_CLIENT) as client:   # without STARTTLS
        client.ehlo("exo.test")
        tls_required = world.name == "t2-beside-mx-eop"       # T1 and T3 are MXs
        assert client.mail("alice@example.net")[0] == (530 if tls_required else 250)
    with _tls_client(world, EXO_CLIENT) as client:
        assert client.mail("alice@example.net")[0] == 250
        assert client.rcpt("max@partner.example")[0] == 250
    with _tls_client(world, INTERNET) as client:
        assert client.mail("x@example.org")[0] == 250
        code, text = client.rcpt("max@partner.example")
    assert code == 554
    expected = b"Client host rejected" if world.name == "t2-beside-mx-eop" else b"Relay access"
    assert expected in text


def test_internet_mail_for_the_organisation(world: World) -> None:
    """T1 and T3 are the MX: internet mail for example.net is filtered and handed to the
    tenant; T2 is not, and takes nothing from outside Exchange Online's ranges."""
    with _tls_client(world, INTERNET) as client:
        client.mail("max@partner.example")
        code, _ = client.rcpt("bob@example.net")
        if world.name == "t2-beside-mx-eop":
            assert code == 554
            return
        assert code == 250
        client.data(sample_message(f"{world.name}-mx"))
    assert _arrived(world, f"{world.name}-mx", ["bob@example.net"])
