"""T2 (gateway beside Exchange Online, MX on EOP) with the shipped Postfix files run for
real: examples/postfix/t2-beside-mx-eop/ plus the common examples/postfix/ services, on a
throwaway Postfix. The test plays Exchange Online on both sides: it delivers over STARTTLS
after checking the gateway's certificate name (the outbound connector's DomainValidation),
and it receives the processed message on a TLS sink that insists on the gateway's client
certificate (the return connector's TlsSenderCertificateName). Only the host names, ports and
file locations are changed; every other setting is the shipped one."""

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
from tests.mta.postfix import PostfixInstance, postfix_available
from tests.mta.test_postfix_pipe import _example_block, _pipe_service

ROOT = Path(__file__).resolve().parents[2]
T2 = ROOT / "examples" / "postfix" / "t2-beside-mx-eop"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not postfix_available(), reason="needs Postfix (scripts/setup-system) "
                                                       "and root"),
]


def _shipped_main(relay_port: int, pki: dict[str, Path], cidr: Path) -> dict[str, str]:
    """examples/postfix/main.cf + t2-beside-mx-eop/main.cf with test locations."""
    text = (T2.parent / "main.cf").read_text() + (T2 / "main.cf").read_text()
    settings = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = (part.strip() for part in line.split("=", 1))
            settings[key] = value
    swaps = {"relayhost": (f"[{EXO}]:25", f"[127.0.0.1]:{relay_port}"),
             "smtp_tls_CAfile": ("/etc/ssl/certs/ca-certificates.crt", str(pki["ca"])),
             "exo_clients": ("/etc/postfix/exchange-online.cidr", str(cidr))}
    for key, (shipped, here) in swaps.items():
        assert settings[key].endswith(shipped) or settings[key] == shipped, key
        settings[key] = settings[key].replace(shipped, here)
    for key in ("smtpd_tls_cert_file", "smtp_tls_cert_file"):
        assert settings[key] == f"/etc/mailroute/tls/{GATEWAY}.crt"
        settings[key] = str(pki["gateway_cert"])
    for key in ("smtpd_tls_key_file", "smtp_tls_key_file"):
        settings[key] = str(pki["gateway_key"])
    # the relay host is named by address here: check its certificate against the name the
    # shipped relayhost has (Exchange's wildcard certificate must match it)
    settings["smtp_tls_secure_cert_match"] = EXO
    return settings


@dataclass
class World:
    postfix: PostfixInstance
    exo: TlsSink
    port: int
    ca: Path


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="mailroute-t2-"))
    root.chmod(0o755)
    postfix: PostfixInstance | None = None
    try:
        pki = make_pki(root)
        with TlsSink(exo_endpoint_context(pki)) as exo:
            cidr = root / "exchange-online.cidr"
            cidr.write_text("127.0.0.1/32 OK\n")  # "Exchange Online" is 127.0.0.1 here
            policy = pipe_policy(root, owner=FILTER_USER)
            wrapper = interpreter_wrapper(root)
            port, reinject = free_port(), free_port()
            receiving = (T2 / "master.cf").read_text()
            shipped = "smtp      inet  n       -       y       -       -       smtpd"
            assert shipped in receiving
            receiving = receiving.replace(shipped, f"127.0.0.1:{port} inet n - n - - smtpd")
            master = (receiving
                      + _example_block("127.0.0.1:10026").replace("127.0.0.1:10026",
                                                                  f"127.0.0.1:{reinject}")
                      + _pipe_service("mailroute", wrapper, policy, reinject))
            postfix = PostfixInstance(root, {"mynetworks": "127.0.0.1/32",
                                             **_shipped_main(exo.port, pki, cidr)}, master)
            postfix.start((port, reinject))
            yield World(postfix, exo, port, pki["ca"])
    finally:
        if postfix is not None:
            postfix.stop()
        shutil.rmtree(root, ignore_errors=True)


MESSAGE = (b"From: <alice@example.net>\r\nTo: <max@partner.example>\r\nSubject: t2-live\r\n"
           b"Message-ID: <t2-live@example.net>\r\n\r\nHello through the gateway.\r\n")


def _exo_client(world: World, source: str = "127.0.0.1") -> smtplib.SMTP:
    return gateway_client(world.port, source)


def test_mail_from_exchange_is_filtered_and_returned_with_the_gateway_certificate(
        world: World) -> None:
    domain_validation = ssl.create_default_context(cafile=str(world.ca))
    with _exo_client(world) as client:
        client.ehlo("exo.test")
        assert client.mail("alice@example.net")[0] == 530      # TLS first (encrypt)
        client.rset()
        client.starttls(context=domain_validation)
        client.ehlo("exo.test")
        client.sendmail("alice@example.net", ["max@partner.example", "bob@example.net"],
                        MESSAGE)
    [arrival] = world.exo.wait_for(1)
    assert arrival.client_names == (GATEWAY,), world.postfix.log()[-3000:]
    assert sorted(arrival.recipients) == ["bob@example.net", "max@partner.example"]
    assert arrival.data.count(b"X-Processed: mailroute") == 1
    assert arrival.data.count(b"X-Mailroute-Mark: v1.") == 1
    assert b"Hello through the gateway." in arrival.data
    assert world.postfix.wait_until(world.postfix.queue_is_empty)


def test_a_client_outside_exchange_ranges_is_refused(world: World) -> None:
    with _exo_client(world, source="127.0.0.2") as client:
        client.ehlo("intruder.test")
        client.starttls(context=ssl.create_default_context(cafile=str(world.ca)))
        client.ehlo("intruder.test")
        assert client.mail("x@example.org")[0] == 250
        code, text = client.rcpt("max@partner.example")
    assert code == 554
    assert b"Client host rejected" in text
