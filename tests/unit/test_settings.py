"""Operator settings: defaults work, overrides apply whichever key style the YAML uses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from frugal.settings import Settings, load_settings


def test_empty_settings_are_a_working_configuration(tmp_path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("")
    settings = load_settings(path)
    assert settings.profile == "plain"
    assert "l4" in settings.catalog()


def test_gpu_overrides_in_camel_or_snake_case() -> None:
    s = Settings.model_validate(
        {"gpuOverrides": {"l4": {"onDemand": 0.7, "spot": 0.3}, "t4": {"on_demand": 0.4}}}
    )
    catalog = s.catalog()
    assert (catalog["l4"].on_demand, catalog["l4"].spot, catalog["t4"].on_demand) == (0.7, 0.3, 0.4)
    assert catalog["l4"].memory_gib == 24


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="unknown GPU types"):
        Settings.model_validate({"gpuOverrides": {"b300": {"spot": 1}}})
    with pytest.raises(ValidationError, match="unknown gpuType"):
        Settings.model_validate({"reservations": [{"name": "p", "gpuType": "b300", "gpus": 4}]})


def test_live_prices_apply_under_explicit_overrides() -> None:
    s = Settings.model_validate({"gpuOverrides": {"l4": {"spot": 0.2}}})
    live = s.with_live_prices({"l4": {"spot": 0.31, "on_demand": 0.9}, "h100": {"spot": 2.5}})
    catalog = live.catalog()
    assert catalog["l4"].spot == 0.2, "an explicit override (negotiated price) wins"
    assert catalog["l4"].on_demand == 0.9
    assert catalog["h100"].spot == 2.5
