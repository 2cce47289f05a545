"""Typed settings: invalid values are refused when the object is built, not per message."""

from __future__ import annotations

import pytest

from mailroute.disclaimer.insert import Settings
from mailroute.gateway import GatewaySettings, InvalidMarkerAction, SourceMode
from mailroute.marker.verify import Windows


def test_gateway_settings_coerce_and_check_choices() -> None:
    settings = GatewaySettings(source="return-path", on_invalid="reject")  # type: ignore[arg-type]
    assert settings.source is SourceMode.RETURN_PATH
    assert settings.on_invalid is InvalidMarkerAction.REJECT
    with pytest.raises(ValueError, match="on_invalid must be one of strip, reject"):
        GatewaySettings(on_invalid="rejct")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_missing"):
        GatewaySettings(on_missing="drop")  # type: ignore[arg-type]


@pytest.mark.parametrize("values", [
    {"windows": Windows(max_age=600, loop_window=3600)},
    {"return_path_networks": ("40.107.0.0/33",)},
    {"max_received": 0},
    {"processed_limit": -1},
])
def test_gateway_settings_refuse_inconsistent_values(values: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        GatewaySettings(**values)  # type: ignore[arg-type]


def test_disclaimer_settings_refuse_a_misspelt_choice() -> None:
    assert Settings(signed="skip").signed == "skip"
    with pytest.raises(ValueError, match="signed must be one of wrap, skip, reject"):
        Settings(signed="rejct")
    with pytest.raises(ValueError, match="placement"):
        Settings(placement="middle")
