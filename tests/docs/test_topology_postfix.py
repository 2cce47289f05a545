"""The Postfix side of each Exchange Online topology (examples/postfix/t*/) is valid Postfix
configuration that agrees with the topology file the Exchange side is generated from:
the filter is set with -o on the receiving smtpd only, mail goes to the tenant's endpoint,
the gateway presents the certificate its connectors identify it by, and only Exchange
Online's ranges may relay (or, in T2, connect)."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from mailroute.routing import load_topology

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
POSTFIX = EXAMPLES / "postfix"
TOPOLOGIES = ("t1-in-front", "t2-beside-mx-eop", "t3-beside-mx-gateway")

pytestmark = pytest.mark.interop


def _postconf(config: Path, *args: str) -> str:
    done = subprocess.run(["postconf", "-c", str(config), *args], capture_output=True,
                          text=True, check=True, timeout=30)
    assert done.stderr == "", done.stderr  # unknown or unused parameters are warnings
    return done.stdout


def _configuration(name: str, folder: Path) -> Path:
    """Debian's master.cf with the common services of examples/postfix/master.cf and the
    topology's receiving smtpd; main.cf = examples/postfix/main.cf + the topology's."""
    folder.mkdir()
    shutil.copy(Path("/etc/postfix/master.cf"), folder / "master.cf")
    (folder / "main.cf").write_text("")
    _postconf(folder, "-MX", "smtp/inet")
    with (folder / "master.cf").open("a") as master:
        master.write((POSTFIX / "master.cf").read_text())
    _postconf(folder, "-MX", "smtp/inet")
    with (folder / "master.cf").open("a") as master:
        master.write((POSTFIX / name / "master.cf").read_text())
    (folder / "main.cf").write_text((POSTFIX / "main.cf").read_text()
                                    + (POSTFIX / name / "main.cf").read_text())
    return folder


def _setting(config: Path, name: str) -> str:
    return _postconf(config, "-hx", name).strip()


def _lookup(config: Path, key: str, table: str) -> str:
    done = subprocess.run(["postmap", "-c", str(config), "-q", key, table],
                          capture_output=True, text=True, check=False, timeout=30)
    assert done.stderr == "", done.stderr
    return done.stdout.strip()


def _cidr_ranges() -> tuple[str, ...]:
    lines = (POSTFIX / "exchange-online.cidr").read_text().splitlines()
    ranges = [line.split()[0] for line in lines if line and not line.startswith("#")]
    assert all(line.split()[1] == "OK" for line in lines if line and not line.startswith("#"))
    return tuple(str(ipaddress.ip_network(r)) for r in ranges)


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_topology_configuration_is_valid_and_matches_the_topology(name: str,
                                                                  tmp_path: Path) -> None:
    assert shutil.which("postconf"), "Postfix is installed by scripts/setup-system"
    topology = load_topology(EXAMPLES / "topologies" / f"{name}.toml")
    config = _configuration(name, tmp_path / name)
    smtpd = _postconf(config, "-M", "smtp/inet")
    # the filter on the receiving smtpd, never globally (reinjected mail would loop)
    assert "-o content_filter=mailroute:dummy" in smtpd
    assert _setting(config, "content_filter") == ""
    assert "content_filter" not in (POSTFIX / name / "main.cf").read_text().replace(
        "-o content_filter", "")
    reinject = _postconf(config, "-M", "127.0.0.1:10026/inet")
    assert "-o content_filter= " in reinject
    # the tenant's endpoint
    endpoint = f"[{topology.tenant.exo_smart_host}]:25"
    if topology.gateway.topology.value == "T1":
        assert _setting(config, "relayhost") == ""
        # the maps as Postfix reads them (postconf does not parse inline: tables)
        assert _lookup(config, "example.net", _setting(config, "transport_maps")) == \
            f"smtp:{endpoint}"
        assert _lookup(config, endpoint, _setting(config, "smtp_tls_policy_maps")) == "secure"
    else:
        assert _setting(config, "relayhost") == endpoint
        assert _setting(config, "smtp_tls_security_level") == "secure"
    # the certificate the connectors identify the gateway by, client and server side
    identity = topology.gateway.tls_identity
    assert _setting(config, "smtp_tls_cert_file").endswith(f"/{identity}.crt")
    assert _setting(config, "smtpd_tls_cert_file").endswith(f"/{identity}.crt")
    assert topology.gateway.hostname == identity == _setting(config, "myhostname")
    # only Exchange Online's ranges may relay; in T2 only they may connect at all
    assert _cidr_ranges() == topology.gateway.exo_ip_ranges
    relay = _setting(config, "smtpd_relay_restrictions")
    assert "check_client_access cidr:/etc/postfix/exchange-online.cidr" in relay
    if topology.gateway.topology.value == "T2":
        assert relay.endswith(", reject")
        assert "-o smtpd_client_restrictions=$exo_clients,reject" in smtpd
        assert "-o smtpd_tls_security_level=encrypt" in smtpd
        assert _setting(config, "relay_domains") == ""
    else:
        assert relay.endswith("reject_unauth_destination")
        domains = {d.domain for d in topology.tenant.accepted_domains if not d.is_initial}
        assert set(_setting(config, "relay_domains").split()) <= domains
        assert "example.net" in _setting(config, "relay_domains")


def test_the_policy_recognises_exchange_by_the_same_ranges() -> None:
    policy = tomllib.loads((POSTFIX / "policy.toml").read_text())
    verify = next(p for p in policy["pipeline"] if p["filter"] == "marker-verify")
    assert verify["source"] == "networks"
    assert tuple(verify["return_path_networks"]) == _cidr_ranges()


def test_cidr_table_is_what_postfix_reads(tmp_path: Path) -> None:
    config = tmp_path / "etc"
    config.mkdir()
    (config / "main.cf").write_text("")
    (config / "master.cf").write_text("")
    table = f"cidr:{POSTFIX / 'exchange-online.cidr'}"
    assert _postconf(config, "-h", "mail_version")
    for address, expected in (("40.107.1.2", "OK"), ("104.47.127.255", "OK"),
                              ("104.47.128.1", ""), ("192.0.2.1", "")):
        found = subprocess.run(["postmap", "-c", str(config), "-q", address, table],
                               capture_output=True, text=True, check=False, timeout=30)
        assert found.stdout.strip() == expected, address
