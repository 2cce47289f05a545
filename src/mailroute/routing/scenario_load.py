"""Scenario TOML -> the topology, the tenant to simulate, the :class:`~.scenario.Scenario`
and the message (docs/routing/scenario.md).

A scenario file sits beside a topology file and names it (``topology = "t2.toml"``, relative
to the scenario file). Its tables mirror the dataclasses of :mod:`.scenario`; errors are
:class:`~mailroute.errors.ConfigError` with the file and the dotted key, as for topology
files.
"""

from __future__ import annotations

import enum
import tomllib
from pathlib import Path

from mailroute.errors import ConfigError
from mailroute.records import record
from mailroute.routing.load import convert_value, load_topology
from mailroute.routing.model import Tenant
from mailroute.routing.plan import deployed
from mailroute.routing.scenario import (
    Delay,
    DeliveryFailure,
    GatewayAction,
    Scenario,
    ScenarioMessage,
    Service,
)
from mailroute.routing.topology import Topology

__all__ = ["LoadedScenario", "RulesSource", "load_scenario"]


class RulesSource(enum.StrEnum):
    """Which rules and connectors the simulation uses."""

    GENERATED = "generated"  # the topology with mailroute's plan installed (deployed)
    AS_IS = "as-is"          # the topology file's tenant exactly as written


@record(frozen=True, kw_only=True)
class TenantRef:
    """A further tenant on the same EOP: its topology file and how its rules are taken."""

    topology: str
    rules: RulesSource = RulesSource.GENERATED


@record(frozen=True, kw_only=True)
class ScenarioFile:
    """The scenario file's keys (docs/routing/scenario.md)."""

    topology: str
    rules: RulesSource = RulesSource.GENERATED
    tenants: tuple[TenantRef, ...] = ()
    delivery_failures: tuple[DeliveryFailure, ...] = ()
    gateway_actions: tuple[GatewayAction, ...] = ()
    services: tuple[Service, ...] = ()
    delays: tuple[Delay, ...] = ()
    message: ScenarioMessage | None = None


@record(frozen=True)
class LoadedScenario:
    """What a scenario file describes, ready for :func:`~.simulate.simulate`."""

    topology: Topology
    tenant: Tenant
    scenario: Scenario
    message: ScenarioMessage | None


def load_scenario(path: str | Path) -> LoadedScenario:
    """Read a scenario file and the topology files it names.

    Raises:
        ConfigError: unreadable file, TOML error, an invalid key (with its path), or a fact
            that names a mailbox no tenant has.
    """
    path = Path(path)
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read scenario file ({exc.strerror})", source=source) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=source) from None
    spec: ScenarioFile = convert_value(data, ScenarioFile, "", source)
    topology, tenant = _tenant(path.parent, spec.topology, spec.rules)
    others = tuple(_tenant(path.parent, ref.topology, ref.rules) for ref in spec.tenants)
    scenario = Scenario(delivery_failures=spec.delivery_failures,
                        gateway_actions=spec.gateway_actions, services=spec.services,
                        delays=spec.delays, tenants=others)
    tenants = [tenant, *(t for _, t in others)]
    for i, failure in enumerate(spec.delivery_failures):
        if not any(t.directory.lookup(failure.address) for t in tenants):
            raise ConfigError(f"{failure.address} is not in any tenant's directory",
                              source=source, key=f"delivery_failures[{i}].address")
    names = [s.name for s in spec.services]
    if len(set(names)) != len(names):
        raise ConfigError("two services with the same name", source=source, key="services")
    return LoadedScenario(topology, tenant, scenario, spec.message)


def _tenant(base: Path, name: str, rules: RulesSource) -> tuple[Topology, Tenant]:
    topology = load_topology(base / name)
    return topology, topology.tenant if rules is RulesSource.AS_IS else deployed(topology)
