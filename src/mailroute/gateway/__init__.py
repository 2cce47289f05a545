"""The one gateway decision (the G-steps of the gateway procedure) and its settings.

Used by the runtime filters (``marker-verify``), the session's direction and the routing
simulator, so that what ``mailroute simulate`` predicts is what the gateway does.

- :mod:`~mailroute.gateway.flow`: direction per recipient and per message.
- :mod:`~mailroute.gateway.settings`: :class:`GatewaySettings`, validated when built.
- :mod:`~mailroute.gateway.decide`: :func:`decide_arrival` (source, loop guards, marker
  verdict, hygiene).
- :mod:`~mailroute.gateway.sqlite_store`: :class:`SqliteProcessedStore`, the processed-message
  store shared by the processes of a pipe transport.

Names are imported on first use, so that the session (which needs only the flow) does not
load the marker engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailroute.gateway.decide import (
        Arrival,
        ArrivalDecision,
        ArrivalSource,
        GatewayStep,
        classify_source,
        decide_arrival,
    )
    from mailroute.gateway.flow import Flow, flow_of, message_direction
    from mailroute.gateway.settings import (
        EXO_TLS_NAMES,
        GatewaySettings,
        InvalidMarkerAction,
        MissingMarkerAction,
        SourceMode,
    )
    from mailroute.gateway.sqlite_store import SqliteProcessedStore

_HOMES = {
    "Arrival": "decide", "ArrivalDecision": "decide", "GatewayStep": "decide",
    "ArrivalSource": "decide", "classify_source": "decide", "decide_arrival": "decide",
    "Flow": "flow", "flow_of": "flow", "message_direction": "flow",
    "EXO_TLS_NAMES": "settings", "GatewaySettings": "settings",
    "InvalidMarkerAction": "settings", "MissingMarkerAction": "settings",
    "SourceMode": "settings", "SqliteProcessedStore": "sqlite_store",
}

__all__ = [
    "EXO_TLS_NAMES",
    "Arrival",
    "ArrivalDecision",
    "ArrivalSource",
    "Flow",
    "GatewaySettings",
    "GatewayStep",
    "InvalidMarkerAction",
    "MissingMarkerAction",
    "SourceMode",
    "SqliteProcessedStore",
    "classify_source",
    "decide_arrival",
    "flow_of",
    "message_direction",
]


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mailroute.gateway' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mailroute.gateway.{home}"), name)
