"""Invalid objects and the message the API server must reject each with.

Every case starts from a minimal valid object of its kind and changes one thing. ``expect`` is a
fragment of the rejection that names the offending field, so a test fails if the object is
accepted or rejected for some other reason.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

NAMESPACE_PLACEHOLDER = "__ns__"


def endpoint(**spec: Any) -> dict[str, Any]:
    base = {"model": {"uri": "hf://org/model", "servedName": "model", "parameters": 8e9}}
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": "bad", "namespace": NAMESPACE_PLACEHOLDER},
        "spec": {**base, **spec},
    }


def routing(**spec: Any) -> dict[str, Any]:
    base = {
        "modelName": "assistant",
        "tiers": [
            {"name": "small", "endpointRef": {"name": "small"}, "weight": 80},
            {"name": "large", "endpointRef": {"name": "large"}, "weight": 20},
        ],
    }
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "RoutingPolicy",
        "metadata": {"name": "bad", "namespace": NAMESPACE_PLACEHOLDER},
        "spec": {**base, **spec},
    }


def cache(**spec: Any) -> dict[str, Any]:
    base = {"targetRef": {"kind": "RoutingPolicy", "name": "assistant"}}
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "CachePolicy",
        "metadata": {"name": "bad", "namespace": NAMESPACE_PLACEHOLDER},
        "spec": {**base, **spec},
    }


@dataclass(frozen=True)
class Case:
    id: str
    obj: dict[str, Any]
    expect: str
    """Fragment of the rejection of a create (POST, fieldValidation=Strict)."""
    status: int = 422
    ssa_expect: str | None = None
    """Fragment of the rejection of a server-side apply, when it differs from ``expect``."""

    def in_namespace(self, namespace: str) -> dict[str, Any]:
        obj = copy.deepcopy(self.obj)
        obj["metadata"]["namespace"] = namespace
        return obj


def _tier(name: str, weight: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "endpointRef": {"name": name}, "weight": weight, **extra}


_EXTERNAL = {
    "url": "https://api.example.com/v1",
    "model": "m",
    "inputPricePer1M": 1,
    "outputPricePer1M": 2,
}

_long_name = endpoint()
_long_name["metadata"]["name"] = "x" * 60
_no_model = endpoint()
del _no_model["spec"]["model"]

CASES: list[Case] = [
    # --- InferenceEndpoint -----------------------------------------------------------------
    Case(
        "ie-min-above-max",
        endpoint(scaling={"minReplicas": 3, "maxReplicas": 2}),
        "scaling.minReplicas must be less than or equal to scaling.maxReplicas",
    ),
    Case(
        "ie-uri-scheme",
        endpoint(model={"uri": "ftp://x", "servedName": "m", "parameters": 1e9}),
        "spec.model.uri",
    ),
    Case(
        "ie-zero-parameters",
        endpoint(model={"uri": "hf://a/b", "servedName": "m", "parameters": 0}),
        "spec.model.parameters",
    ),
    Case("ie-missing-model", _no_model, "spec.model: Required value"),
    Case(
        "ie-unknown-quantization",
        endpoint(engine={"quantization": "gguf"}),
        "spec.engine.quantization",
    ),
    Case(
        "ie-unknown-kv-dtype", endpoint(engine={"kvCacheDtype": "int3"}), "spec.engine.kvCacheDtype"
    ),
    Case(
        "ie-gpu-mem-util",
        endpoint(engine={"gpuMemoryUtilization": 1.5}),
        "spec.engine.gpuMemoryUtilization",
    ),
    Case(
        "ie-speculative-needs-draft",
        endpoint(engine={"speculative": {"method": "eagle"}}),
        "speculative.draftModel is required",
    ),
    Case(
        "ie-unknown-engine-field",
        endpoint(engine={"tensorParallel": 2}),
        'unknown field "spec.engine.tensorParallel"',
        status=400,
        # Server-side apply fails while building the typed patch: a 500 that names the field.
        ssa_expect=".spec.engine.tensorParallel: field not declared in schema",
    ),
    Case(
        "ie-duplicate-env",
        endpoint(engine={"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}),
        "spec.engine.env[1]: Duplicate value",
        ssa_expect='.spec.engine.env: duplicate entries for key [name="A"]',
    ),
    Case("ie-gpu-type", endpoint(resources={"gpu": {"type": "H100!"}}), "spec.resources.gpu.type"),
    Case("ie-gpu-count", endpoint(resources={"gpu": {"count": 0}}), "spec.resources.gpu.count"),
    Case("ie-memory-quantity", endpoint(resources={"memory": "lots"}), "spec.resources.memory"),
    Case(
        "ie-idle-duration", endpoint(scaling={"idleAfter": "10 minutes"}), "spec.scaling.idleAfter"
    ),
    Case(
        "ie-duplicate-preference",
        endpoint(capacity={"preference": ["spot", "spot"]}),
        "spec.capacity.preference[1]: Duplicate value",
        ssa_expect=".spec.capacity.preference: duplicate entries",
    ),
    Case(
        "ie-unknown-capacity-type",
        endpoint(capacity={"preference": ["cheap"]}),
        "spec.capacity.preference[0]",
    ),
    Case(
        "ie-reservation-without-reserved",
        endpoint(capacity={"preference": ["spot", "on-demand"], "reservation": "pool-a"}),
        "capacity.reservation needs 'reserved' in capacity.preference",
    ),
    Case(
        "ie-spot-share-without-spot",
        endpoint(capacity={"preference": ["reserved", "on-demand"], "spot": {"maxShare": 0.5}}),
        "capacity.spot.maxShare must be 0 when 'spot' is not in capacity.preference",
    ),
    Case(
        "ie-spot-share-range",
        endpoint(capacity={"spot": {"maxShare": 1.2}}),
        "spec.capacity.spot.maxShare",
    ),
    Case(
        "ie-floor-above-max",
        endpoint(scaling={"maxReplicas": 2}, capacity={"onDemandFloor": 5}),
        "capacity.onDemandFloor must not exceed scaling.maxReplicas",
    ),
    Case(
        "ie-floor-without-on-demand",
        endpoint(capacity={"preference": ["spot"], "onDemandFloor": 1}),
        "capacity.onDemandFloor needs 'on-demand' in capacity.preference",
    ),
    Case("ie-negative-hourly-budget", endpoint(budget={"hourlyUSD": -1}), "spec.budget.hourlyUSD"),
    Case("ie-zero-monthly-budget", endpoint(budget={"monthlyUSD": 0}), "spec.budget.monthlyUSD"),
    Case(
        "ie-team-label-value",
        endpoint(costAllocation={"team": "Team A"}),
        "spec.costAllocation.team",
    ),
    Case(
        "ie-cost-label-key",
        endpoint(costAllocation={"labels": {"bad key!": "x"}}),
        "costAllocation.labels keys must be valid Kubernetes label keys",
    ),
    Case("ie-name-too-long", _long_name, "metadata.name must be at most 48 characters"),
    # --- RoutingPolicy ---------------------------------------------------------------------
    Case(
        "rp-weights-sum",
        routing(tiers=[_tier("a", 60), _tier("b", 30)]),
        "tiers[].weight must sum to 100",
    ),
    Case(
        "rp-tier-both-targets",
        routing(tiers=[{**_tier("a", 100), "external": _EXTERNAL}]),
        "each tier needs exactly one of endpointRef or external",
    ),
    Case(
        "rp-tier-no-target",
        routing(tiers=[{"name": "a", "weight": 100}]),
        "each tier needs exactly one of endpointRef or external",
    ),
    Case(
        "rp-weight-below-min",
        routing(tiers=[_tier("a", 10, minWeight=20), _tier("b", 90)]),
        "tier weight must lie between its minWeight and maxWeight",
    ),
    Case(
        "rp-weight-above-max",
        routing(tiers=[_tier("a", 90, maxWeight=80), _tier("b", 10)]),
        "tier weight must lie between its minWeight and maxWeight",
    ),
    Case(
        "rp-external-url",
        routing(tiers=[{"name": "a", "weight": 100, "external": {**_EXTERNAL, "url": "nope"}}]),
        "spec.tiers[0].external.url",
    ),
    Case(
        "rp-fallback-unknown-tier",
        routing(fallback={"order": ["huge"]}),
        "fallback.order must name tiers of this policy",
    ),
    Case(
        "rp-shadow-unknown-tier",
        routing(shadow={"sampleRate": 0.1, "referenceTier": "huge"}),
        "shadow.referenceTier must name a tier of this policy",
    ),
    Case(
        "rp-shadow-needs-reference",
        routing(shadow={"sampleRate": 0.1}),
        "shadow.referenceTier is required when shadow.sampleRate is above 0",
    ),
    Case(
        "rp-duplicate-tier",
        routing(tiers=[_tier("a", 50), _tier("a", 50)]),
        "spec.tiers[1]: Duplicate value",
        ssa_expect='.spec.tiers: duplicate entries for key [name="a"]',
    ),
    Case("rp-max-step", routing(autoReroute={"maxStep": 0}), "spec.autoReroute.maxStep"),
    Case("rp-min-quality", routing(objectives={"minQuality": 1.5}), "spec.objectives.minQuality"),
    Case("rp-no-tiers", routing(tiers=[]), "spec.tiers"),
    Case("rp-classifier-type", routing(classifier={"type": "magic"}), "spec.classifier.type"),
    # --- CachePolicy -----------------------------------------------------------------------
    Case("cp-threshold-zero", cache(semantic={"threshold": 0}), "spec.semantic.threshold"),
    Case("cp-threshold-above-one", cache(semantic={"threshold": 1.01}), "spec.semantic.threshold"),
    Case(
        "cp-redis-missing",
        cache(backend={"type": "redis"}),
        "backend.redis is required when backend.type is redis",
    ),
    Case(
        "cp-redis-both",
        cache(
            backend={
                "type": "redis",
                "redis": {"url": "redis://r:6379", "urlSecretRef": {"name": "s", "key": "k"}},
            }
        ),
        "backend.redis needs exactly one of url or urlSecretRef",
    ),
    Case(
        "cp-redis-url-scheme",
        cache(backend={"type": "redis", "redis": {"url": "http://r"}}),
        "spec.backend.redis.url",
    ),
    Case(
        "cp-target-kind", cache(targetRef={"kind": "Service", "name": "x"}), "spec.targetRef.kind"
    ),
    Case(
        "cp-embedding-url-missing",
        cache(semantic={"embedding": {"source": "url"}}),
        "semantic.embedding.url is required when semantic.embedding.source is url",
    ),
    Case("cp-scope", cache(scope="everyone"), "spec.scope"),
]
