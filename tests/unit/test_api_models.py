"""The pydantic models: examples parse, defaults are what the docs say, bad values are refused."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from pydantic import ValidationError

from frugal.api import CachePolicy, InferenceEndpoint, RoutingPolicy
from frugal.api.base import parse_duration
from frugal.api.endpoint import InferenceEndpointSpec
from support.invalid import CASES
from support.strategies import KIND_SPECS

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
MODELS = {m.__name__: m for m in (InferenceEndpoint, RoutingPolicy, CachePolicy)}


def example_docs() -> list[dict]:
    return [d for p in sorted(EXAMPLES.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]


@pytest.mark.parametrize("doc", example_docs(), ids=lambda d: d["metadata"]["name"])
def test_examples_parse(doc: dict) -> None:
    MODELS[doc["kind"]].model_validate(doc)


def test_examples_cover_the_case_study() -> None:
    kinds = [d["kind"] for d in example_docs()]
    assert kinds.count("InferenceEndpoint") >= 5
    rp = next(d for d in example_docs() if d["kind"] == "RoutingPolicy")
    assert [t["weight"] for t in rp["spec"]["tiers"]] == [70, 25, 5]
    cp = next(d for d in example_docs() if d["kind"] == "CachePolicy")
    assert cp["spec"]["semantic"]["threshold"] == 0.93


def test_endpoint_defaults() -> None:
    spec = InferenceEndpointSpec.model_validate(
        {"model": {"uri": "hf://a/b", "servedName": "b", "parameters": 1e9}}
    )
    assert spec.scaling.min_replicas == 1
    assert spec.engine.prefix_caching is True
    assert spec.engine.quantization == "none"
    assert [c.value for c in spec.capacity.preference] == ["reserved", "spot", "on-demand"]
    assert spec.resources.gpu.type == "auto"
    assert spec.wire()["engine"]["gpuMemoryUtilization"] == 0.92


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", 90), ("15m", 900), ("1h30m", 5400), ("250ms", 0.25), ("1.5h", 5400)],
)
def test_parse_duration(text: str, expected: float) -> None:
    assert parse_duration(text) == timedelta(seconds=expected)


@pytest.mark.parametrize("text", ["", "10", "10 minutes", "1d", "-5m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


# Cases that only CEL (cross-field) or list-set semantics catch are the API server's job; every
# single-field constraint is enforced by the models too, so offline tools refuse the same input.
_SERVER_ONLY = {
    "ie-name-too-long",
    "ie-duplicate-env",
    "ie-duplicate-preference",
    "rp-duplicate-tier",
    "rp-weights-sum",
    "rp-fallback-unknown-tier",
    "rp-shadow-unknown-tier",
    "rp-shadow-needs-reference",
    "rp-tier-both-targets",
    "rp-tier-no-target",
    "rp-weight-below-min",
    "rp-weight-above-max",
    "ie-min-above-max",
    "ie-reservation-without-reserved",
    "ie-spot-share-without-spot",
    "ie-floor-above-max",
    "ie-floor-without-on-demand",
    "ie-speculative-needs-draft",
    "ie-cost-label-key",
    "cp-redis-missing",
    "cp-redis-both",
    "cp-embedding-url-missing",
}


@pytest.mark.parametrize("case", [c for c in CASES if c.id not in _SERVER_ONLY], ids=lambda c: c.id)
def test_models_refuse_single_field_errors(case) -> None:
    with pytest.raises(ValidationError):
        MODELS[case.obj["kind"]].model_validate(case.obj)


@pytest.mark.parametrize("kind", sorted(KIND_SPECS))
def test_generated_specs_are_valid_for_the_models(kind: str) -> None:
    model = MODELS[kind]

    @settings(max_examples=200, deadline=None)
    @given(KIND_SPECS[kind])
    def check(spec: dict) -> None:
        obj = model.model_validate(
            {
                "apiVersion": "frugal.dev/v1alpha1",
                "kind": kind,
                "metadata": {"name": "x"},
                "spec": spec,
            }
        )
        # What the operator would write back is what it read: no field is lost or renamed.
        again = model.model_validate({**obj.wire()})
        assert again == obj

    check()
