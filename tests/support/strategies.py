"""Hypothesis strategies for *valid* frugal objects, as a user would write them (camelCase).

They encode the API's rules independently of the pydantic models and the CRD schema, so a
round-trip through the real API server checks all three against each other.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from frugal.api.vllm import (
    KV_CACHE_DTYPES,
    QUANTIZATION_METHODS,
    SELF_DRAFTING_METHODS,
    SPECULATIVE_METHODS,
)

CAPACITY_TYPES = ["reserved", "spot", "on-demand"]

dns_label = st.from_regex(r"\A[a-z][a-z0-9]{0,10}(-[a-z0-9]{1,6})?\Z")
label_value = st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9_.-]{0,20}[A-Za-z0-9])?\Z")
served_name = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._/:-]{0,30}\Z")
duration = st.builds(
    lambda n, unit: f"{n}{unit}", st.integers(1, 500), st.sampled_from(["ms", "s", "m", "h"])
)
quantity = st.one_of(
    st.integers(1, 64),
    st.builds(lambda n, u: f"{n}{u}", st.integers(1, 4096), st.sampled_from(["m", "Mi", "Gi", ""])),
)
fraction = st.floats(0.01, 1.0, allow_nan=False).map(lambda x: round(x, 3))


def optional(**fields: st.SearchStrategy) -> st.SearchStrategy[dict[str, Any]]:
    """A dict in which every key may be absent."""
    return st.fixed_dictionaries({}, optional=fields)


@st.composite
def speculative(draw: st.DrawFn) -> dict[str, Any]:
    method = draw(st.sampled_from(SPECULATIVE_METHODS))
    spec: dict[str, Any] = {"method": method, "numSpeculativeTokens": draw(st.integers(1, 16))}
    if method not in SELF_DRAFTING_METHODS or draw(st.booleans()):
        spec["draftModel"] = draw(st.sampled_from(["hf://org/draft", "yuhuili/EAGLE-LLaMA3-8B"]))
    return spec


@st.composite
def env_list(draw: st.DrawFn) -> list[dict[str, str]]:
    names = draw(st.lists(st.from_regex(r"\A[A-Z][A-Z0-9_]{0,12}\Z"), max_size=4, unique=True))
    return [{"name": n, "value": draw(st.text(max_size=20))} for n in names]


@st.composite
def endpoint_spec(draw: st.DrawFn) -> dict[str, Any]:
    min_r = draw(st.integers(0, 8))
    max_r = draw(st.integers(max(min_r, 1), 16))
    preference = draw(
        st.permutations(CAPACITY_TYPES).flatmap(
            lambda p: st.integers(1, 3).map(lambda n: list(p[:n]))
        )
    )
    capacity: dict[str, Any] = {"preference": preference, "priority": draw(st.integers(0, 1000))}
    if "spot" in preference and draw(st.booleans()):
        capacity["spot"] = {"maxShare": draw(st.floats(0, 1).map(lambda x: round(x, 2)))}
    if "on-demand" in preference:
        capacity["onDemandFloor"] = draw(st.integers(0, max_r))
    if "reserved" in preference and draw(st.booleans()):
        capacity["reservation"] = draw(dns_label)
    spec: dict[str, Any] = {
        "model": draw(
            st.fixed_dictionaries(
                {
                    "uri": st.builds(
                        lambda s, p: f"{s}://{p}",
                        st.sampled_from(["hf", "s3", "pvc"]),
                        st.from_regex(r"\A[a-z0-9][a-z0-9/._-]{0,30}\Z"),
                    ),
                    "servedName": served_name,
                    "parameters": st.floats(1e6, 1e12).map(lambda x: float(f"{x:.3g}")),
                },
                optional={"revision": st.sampled_from(["main", "v1.0", "a1b2c3d"])},
            )
        ),
        "engine": draw(
            optional(
                quantization=st.sampled_from(["none", *QUANTIZATION_METHODS]),
                kvCacheDtype=st.sampled_from(KV_CACHE_DTYPES),
                maxModelLen=st.integers(128, 131072),
                maxNumSeqs=st.integers(1, 4096),
                gpuMemoryUtilization=fraction,
                prefixCaching=st.booleans(),
                speculative=speculative(),
                extraArgs=st.lists(st.sampled_from(["--enforce-eager", "--seed=1"]), max_size=2),
                env=env_list(),
            )
        ),
        "resources": draw(
            optional(
                gpu=optional(
                    type=st.sampled_from(["auto", "l4", "a10g", "l40s", "a100-80gb", "h100"]),
                    count=st.integers(1, 8),
                ),
                cpu=quantity,
                memory=quantity,
            )
        ),
        "scaling": {
            "minReplicas": min_r,
            "maxReplicas": max_r,
            **draw(
                optional(
                    idleAfter=duration,
                    targetInFlight=st.integers(1, 4096),
                    coldStartBudget=duration,
                )
            ),
        },
        "capacity": capacity,
        "costAllocation": draw(
            optional(
                team=label_value,
                project=label_value,
                environment=st.sampled_from(["prod", "staging", "dev"]),
                costCenter=label_value,
                labels=st.dictionaries(
                    st.from_regex(r"\A([a-z]{1,8}\.[a-z]{2,4}/)?[a-z][a-z0-9-]{0,10}[a-z0-9]\Z"),
                    label_value,
                    max_size=3,
                ),
            )
        ),
    }
    budget = draw(optional(hourlyUSD=st.floats(0.01, 1e4), monthlyUSD=st.floats(1, 1e6)))
    if budget:
        spec["budget"] = {k: round(v, 2) for k, v in budget.items()}
    return spec


@st.composite
def routing_spec(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(dns_label, min_size=1, max_size=5, unique=True))
    cuts = sorted(
        draw(st.lists(st.integers(0, 100), min_size=len(names) - 1, max_size=len(names) - 1))
    )
    weights = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
    tiers = []
    for name, weight in zip(names, weights, strict=True):
        tier: dict[str, Any] = {"name": name, "weight": weight}
        tier["minWeight"] = draw(st.integers(0, weight))
        tier["maxWeight"] = draw(st.integers(weight, 100))
        if draw(st.booleans()):
            tier["endpointRef"] = {"name": name}
        else:
            tier["external"] = {
                "url": f"https://{name}.example.com/v1",
                "model": name,
                "inputPricePer1M": draw(st.floats(0, 100).map(lambda x: round(x, 3))),
                "outputPricePer1M": draw(st.floats(0, 100).map(lambda x: round(x, 3))),
            }
        tier["match"] = draw(st.lists(st.sampled_from(["faq", "code", "complex"]), unique=True))
        tiers.append(tier)
    spec: dict[str, Any] = {"modelName": draw(served_name), "tiers": tiers}
    spec["autoReroute"] = draw(
        optional(
            enabled=st.booleans(),
            interval=duration,
            maxStep=st.integers(1, 100),
            cooldown=duration,
            hysteresis=st.floats(0, 0.5).map(lambda x: round(x, 3)),
        )
    )
    spec["objectives"] = draw(
        optional(
            minQuality=fraction,
            maxCostPer1kRequests=st.floats(0.01, 100).map(lambda x: round(x, 3)),
            p95LatencySeconds=st.floats(0.1, 60).map(lambda x: round(x, 2)),
        )
    )
    spec["fallback"] = {"order": draw(st.permutations(names).map(list))}
    if draw(st.booleans()):
        spec["shadow"] = {
            "sampleRate": draw(fraction),
            "referenceTier": draw(st.sampled_from(names)),
        }
    spec["classifier"] = draw(
        optional(
            type=st.sampled_from(["rules", "heuristic", "embedding"]),
            rules=st.lists(
                st.fixed_dictionaries(
                    {"class": st.sampled_from(["faq", "code"])},
                    optional={
                        "minPromptTokens": st.integers(0, 5000),
                        "hasCode": st.booleans(),
                        "keywords": st.lists(st.sampled_from(["refund", "card"])),
                    },
                ),
                max_size=3,
            ),
            defaultClass=st.sampled_from(["general", "faq"]),
        )
    )
    return spec


@st.composite
def cache_spec(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "targetRef": {
            "kind": draw(st.sampled_from(["RoutingPolicy", "InferenceEndpoint"])),
            "name": draw(dns_label),
        },
        "exact": draw(optional(enabled=st.booleans(), ttl=duration)),
        "semantic": draw(
            optional(
                enabled=st.booleans(),
                threshold=fraction,
                ttl=duration,
                maxEntries=st.integers(1, 10_000_000),
                maxFalseHitRate=st.floats(0, 1).map(lambda x: round(x, 3)),
            )
        ),
        "scope": draw(st.sampled_from(["tenant", "shared"])),
        "prefix": draw(
            optional(
                enabled=st.booleans(),
                affinity=st.booleans(),
                minPrefixTokens=st.integers(1, 100000),
            )
        ),
    }
    if draw(st.booleans()):
        spec["backend"] = {
            "type": "redis",
            "redis": draw(
                st.one_of(
                    st.just({"url": "redis://cache:6379/0"}),
                    st.just({"urlSecretRef": {"name": "redis", "key": "url"}}),
                )
            ),
        }
    return spec


KIND_SPECS = {
    "InferenceEndpoint": endpoint_spec(),
    "RoutingPolicy": routing_spec(),
    "CachePolicy": cache_spec(),
}
