"""``source = "networks"``: the return path recognised by client address, without a TLS name.

Postfix pipe(8) and Exim pipe transports cannot pass the peer's verified certificate name, so
``source = "auto"`` sees every arrival as internet mail there; ``networks`` decides by the
client address (``--client-ip``) and, when configured, the tenant id.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroute.config.options import Options
from mailroute.errors import ConfigError
from mailroute.filters.marker import build_verify
from mailroute.gateway import Arrival, ArrivalSource, GatewaySettings, classify_source
from mailroute.marker.verify import MarkerCheck
from mailroute.results import MarkerVerdict
from mailroute.testing import write_fake_key_file

NETWORKS = ("40.92.0.0/15", "52.100.0.0/14")
MISSING = MarkerCheck(verdict=MarkerVerdict.MISSING, reason="no marker")


def _arrival(ip: str | None, *, tls: tuple[str, ...] = (), tenant: tuple[str, ...] = ()
             ) -> Arrival:
    return Arrival(tls_peer_names=tls, client_address=ip, tenant_ids=tenant, marker=MISSING)


@pytest.mark.parametrize(("ip", "expected"), [
    ("40.92.1.2", ArrivalSource.RETURN_PATH),
    ("52.101.0.9", ArrivalSource.RETURN_PATH),
    ("198.51.100.7", ArrivalSource.INTERNET),
    (None, ArrivalSource.INTERNET),
    ("not-an-ip", ArrivalSource.INTERNET),
])
def test_networks_decides_by_client_address_alone(ip: str | None,
                                                  expected: ArrivalSource) -> None:
    settings = GatewaySettings(source="networks", return_path_networks=NETWORKS)  # type: ignore[arg-type]
    assert classify_source(_arrival(ip), settings) is expected


def test_auto_without_a_tls_name_is_internet_even_from_the_networks() -> None:
    settings = GatewaySettings(return_path_networks=NETWORKS)
    assert classify_source(_arrival("40.92.1.2"), settings) is ArrivalSource.INTERNET


def test_networks_checks_the_tenant_id_when_given() -> None:
    settings = GatewaySettings(source="networks", return_path_networks=NETWORKS,  # type: ignore[arg-type]
                               tenant_id="0000-TENANT")
    assert classify_source(_arrival("40.92.1.2", tenant=("0000-tenant",)),
                           settings) is ArrivalSource.RETURN_PATH
    assert classify_source(_arrival("40.92.1.2", tenant=("other",)),
                           settings) is ArrivalSource.INTERNET
    assert classify_source(_arrival("40.92.1.2"), settings) is ArrivalSource.INTERNET


def test_networks_needs_networks() -> None:
    with pytest.raises(ValueError, match="needs return_path_networks"):
        GatewaySettings(source="networks")  # type: ignore[arg-type]


def test_policy_option(tmp_path: Path) -> None:
    key_file = write_fake_key_file(tmp_path / "keys.toml")
    built = build_verify(Options({"key_file": str(key_file), "source": "networks",
                                  "return_path_networks": list(NETWORKS)}, source="p"))
    assert built.settings.source == "networks"
    with pytest.raises(ConfigError, match="source"):
        build_verify(Options({"key_file": str(key_file), "source": "networks"}, source="p"))
