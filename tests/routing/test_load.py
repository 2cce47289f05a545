"""Topology TOML loading: every example loads; bad keys name the file and the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroute.errors import ConfigError
from mailroute.routing import TopologyKind, load_topology, parse_topology
from mailroute.routing.model import DomainType, RecipientKind
from tests.routing.support import EXAMPLES, FILES

MINIMAL = """
[tenant]
name = "example.net"
tenant_id = "t-1"
initial_domain = "examplenet.onmicrosoft.com"
[[tenant.accepted_domains]]
domain = "example.net"
[gateway]
topology = "T2"
hostname = "gw.example.net"
tls_identity = "gw.example.net"
[gateway.marker]
tag = "g7k2qd"
"""


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "topology.toml"
    path.write_text(text, encoding="utf-8")
    return load_topology(path)


@pytest.mark.parametrize("name", sorted(FILES))
def test_examples_load(name: str) -> None:
    topology = load_topology(EXAMPLES / FILES[name])
    assert topology.gateway.topology is TopologyKind(name.upper())
    assert topology.tenant.accepted_domain("example.net") is not None


def test_minimal_file_gets_exchange_defaults(tmp_path: Path) -> None:
    topology = parse_topology(__import__("tomllib").loads(MINIMAL))
    assert topology.tenant.exo_smart_host == "example-net.mail.protection.outlook.com"
    assert topology.tenant.accepted_domains[0].type is DomainType.AUTHORITATIVE
    assert topology.tenant.org.hop_limit == 20
    assert topology.gateway.max_received == 100
    assert topology.gateway.marker.header == "X-Mailroute-Mark"
    assert topology.tenant.accepted_domain("examplenet.onmicrosoft.com") is not None
    assert _load(tmp_path, MINIMAL) == topology


@pytest.mark.parametrize(("extra", "key", "message"), [
    ("[tenant.org]\nhop_limt = 3\n", "tenant.org.hop_limt", "unknown key"),
    ("[[tenant.directory.recipients]]\nprimary = 'a@example.net'\nkind = 'Robot'\n",
     "tenant.directory.recipients[0].kind", "expected one of"),
    ("[[tenant.transport_rules]]\nname = 'r'\n[tenant.transport_rules.conditions]\n"
     "header_matches = { header = 'X', patterns = ['(unclosed'] }\n",
     "tenant.transport_rules[0].conditions.header_matches.patterns", "regular expression"),
    ("[[tenant.transport_rules]]\nname = 'r'\n[tenant.transport_rules.actions]\n"
     "stop = true\n", "tenant.transport_rules[0].actions.stop", "unknown key"),
    ("[[tenant.inbound_connectors]]\nname = 'c'\nrequire_tls = 'yes'\n",
     "tenant.inbound_connectors[0].require_tls", "expected a bool"),
    ("[tenant.org]\nhop_limit = true\n", "tenant.org.hop_limit", "expected an integer"),
    ("[[tenant.outbound_connectors]]\nsmart_hosts = ['h']\n",
     "tenant.outbound_connectors[0].name", "missing required key"),
    ("[exo_config]\nplacement = 'middle'\n", "exo_config.placement", "expected one of"),
    ("[tenant.mx]\n'example.net' = 5\n", "tenant.mx.example.net", "expected a str"),
])
def test_invalid_keys_raise_config_error_with_file_and_key(
        tmp_path: Path, extra: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        _load(tmp_path, MINIMAL + extra)
    assert caught.value.key == key
    assert caught.value.source == str(tmp_path / "topology.toml")
    assert key in str(caught.value)


def test_bad_marker_tag_names_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, MINIMAL.replace('tag = "g7k2qd"', 'tag = "v1.x"'))
    assert caught.value.key == "gateway.marker.tag"


@pytest.mark.parametrize(("old", "new", "key"), [
    ('tag = "g7k2qd"', 'tag = "g7k2qd"\nheader = "X Bad Header:"', "gateway.marker.header"),
    ('tag = "g7k2qd"', 'tag = "g7k2qd"\nheader = "X-M\u00e4rk"', "gateway.marker.header")])
def test_a_marker_header_that_is_no_field_name_names_its_key(tmp_path: Path, old: str,
                                                             new: str, key: str) -> None:
    """Found by the routing audit: generated as -HeaderMatchesMessageHeader 'X Bad Header:',
    which stops the install script part-way."""
    with pytest.raises(ConfigError, match="no header field name") as caught:
        _load(tmp_path, MINIMAL.replace(old, new))
    assert caught.value.key == key


def test_unknown_top_level_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, MINIMAL + "[routing]\nx = 1\n")
    assert caught.value.key == "routing"


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        _load(tmp_path, "[tenant\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_topology(tmp_path / "absent.toml")


def test_directory_indexes_every_proxy_address() -> None:
    topology = load_topology(EXAMPLES / FILES["t2"])
    alice = topology.tenant.directory.lookup("A.Smith@Example.NET")
    assert alice is not None
    assert alice.primary == "alice@example.net"
    sales = topology.tenant.directory.lookup("sales@example.net")
    assert sales is not None
    assert sales.kind is RecipientKind.DISTRIBUTION_GROUP
