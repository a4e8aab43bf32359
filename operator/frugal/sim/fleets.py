"""Turn a workload, prices and switched techniques into what one simulated fleet runs.

Two fleets: ``api`` (managed tiers priced per token, Eq. 1's C_in and C_out) and
``self-hosted`` (vLLM tiers priced per GPU-hour, C_infra). Both route with a real
``RoutingPolicySpec``; the self-hosted tiers are real ``InferenceEndpointSpec`` objects whose
GPU is sized by frugal's placement code. Per request class and tier this module fixes the
figures that do not change over time: tokens, $ per request, latency and quality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from frugal.api.base import CapacityType
from frugal.api.endpoint import InferenceEndpointSpec
from frugal.api.routing import RoutingPolicySpec
from frugal.catalog.quantization import bytes_per_param
from frugal.cost.model import request_cost
from frugal.settings import Settings
from frugal.sim.levers import Levers
from frugal.sim.prices import Prices
from frugal.sim.workload import RequestClass, Workload

FLEETS = ("api", "self-hosted")
PROMPT_CACHE_BLOCK = 128
"""OpenAI caches prompt prefixes in 128-token increments."""


@dataclass(frozen=True)
class Unit:
    """One request of one class on one tier (a cache miss)."""

    tokens_in: float
    tokens_out: float
    cached_in: float
    """Input tokens billed at the cached-input price (API) or skipping prefill (self-hosted)."""
    input_usd: float
    output_usd: float
    latency_s: float
    quality: float


@dataclass(frozen=True)
class Fleet:
    """Everything a run needs that does not change over simulated time."""

    name: str
    levers: Levers
    routing: RoutingPolicySpec
    tiers: tuple[str, ...]
    """Tier names, cheapest first (the routing order)."""
    units: dict[tuple[str, str], Unit]
    """(class, tier) → unit figures."""
    retrieval_per_miss: dict[str, float]
    """class → expected C_retr of a request that reaches a model."""
    fixed_hourly: dict[str, float]
    """Infrastructure paid by the hour whatever the load (platform, vector storage)."""
    endpoints: dict[str, InferenceEndpointSpec]
    """Self-hosted tiers' specs after the levers are applied (empty for ``api``)."""
    settings: Settings
    cold_start_s: dict[str, float]


def _prompt_tokens(w: Workload, cls: RequestClass, levers: Levers) -> tuple[float, float, float]:
    """(input tokens, output tokens, quality factor) of one request of ``cls``."""
    query, answer = w.class_tokens(cls)
    history = w.tokens.history
    factor = 1.0
    if levers.fresh_context and history > w.techniques.fresh_history_tokens:
        history = w.techniques.fresh_history_tokens
        factor *= w.techniques.fresh_quality
    compressible = history + w.rag.share * w.rag.context_tokens
    if levers.compression and compressible > 0:
        compressible *= w.techniques.compression_keep
        factor *= w.techniques.compression_quality
    return w.tokens.system_prompt + query + compressible, answer, factor


def _quality(w: Workload, cls: RequestClass, tier: str, bonus: float = 0.0) -> float:
    """Retention of a tier on a class, with the sensitivity scale and any quantization bonus."""
    gap = (1 - cls.quality[tier]) * w.techniques.quality_gap_scale
    return max(0.0, min(1.0, 1 - gap + bonus))


def retrieval_usd(w: Workload, prices: Prices, cls: RequestClass) -> float:
    """Expected C_retr of one request that reaches retrieval: embed the query, read the index."""
    query, _ = w.class_tokens(cls)
    embed = request_cost(query, 0, prices.embedding_per_1m, 0).total
    read_units = max(0.25, w.rag.store_gb)
    reads = read_units * prices.vector_read_per_1m_units / 1e6
    return w.rag.share * (embed + reads)


def fixed_hourly(w: Workload, prices: Prices, levers: Levers) -> dict[str, float]:
    """Hourly infrastructure that does not scale with requests."""
    hours_per_month = 30 * 24
    fixed = {
        "vector storage": w.rag.store_gb * prices.vector_storage_per_gb_month / hours_per_month
    }
    if levers.routing or levers.cache or levers.compression or levers.fresh_context:
        fixed["gateway and cache"] = prices.platform_hourly
    return fixed


def _routing(
    spec: dict[str, Any], frontier: str, levers: Levers, externals: dict
) -> RoutingPolicySpec:
    data = dict(spec)
    tiers = [dict(t) for t in spec["tiers"]]
    if not levers.routing:
        tiers = [{"name": frontier, "weight": 100}]
    for tier in tiers:
        if tier["name"] in externals:
            tier["external"] = externals[tier["name"]]
        else:
            tier.setdefault("endpointRef", {"name": tier["name"]})
    data["tiers"] = tiers
    data["autoReroute"] = {**spec.get("autoReroute", {}), "enabled": levers.auto_reroute}
    if not levers.routing:
        data.pop("shadow", None)
    return RoutingPolicySpec.model_validate(data)


def build_fleet(w: Workload, prices: Prices, name: str, levers: Levers) -> Fleet:
    """The fleet ``name`` (``api`` or ``self-hosted``) of a workload with the given levers."""
    if name == "api":
        return _api_fleet(w, prices, levers)
    if name == "self-hosted":
        return _hosted_fleet(w, prices, levers)
    raise ValueError(f"unknown fleet {name!r}; expected one of {', '.join(FLEETS)}")


def _api_fleet(w: Workload, prices: Prices, levers: Levers) -> Fleet:
    api = w.fleets.api
    externals = {
        tier: {
            "url": "https://api.example.invalid/v1",
            "model": p.model,
            "inputPricePer1M": p.input_per_1m,
            "outputPricePer1M": p.output_per_1m,
        }
        for tier, p in prices.api_tiers.items()
    }
    routing = _routing(api.routing, api.frontier, levers, externals)
    tiers = tuple(t.name for t in routing.tiers)
    units = {}
    for cls in w.classes:
        tokens_in, tokens_out, factor = _prompt_tokens(w, cls, levers)
        for tier in tiers:
            price = prices.api_tiers[tier]
            perf = api.performance[tier]
            cached = 0.0
            prefix = w.tokens.system_prompt
            if (
                levers.prompt_caching
                and price.cached_input_per_1m is not None
                and prefix >= prices.prompt_cache_min_tokens
            ):
                cached = math.floor(prefix / PROMPT_CACHE_BLOCK) * PROMPT_CACHE_BLOCK
            fresh = request_cost(
                tokens_in - cached, tokens_out, price.input_per_1m, price.output_per_1m
            )
            reused = request_cost(cached, 0, price.cached_input_per_1m or 0.0, 0)
            units[cls.name, tier] = Unit(
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                cached_in=cached,
                input_usd=fresh.input_usd + reused.input_usd,
                output_usd=fresh.output_usd,
                latency_s=perf.ttft_seconds + tokens_out / perf.tokens_per_second,
                quality=_quality(w, cls, tier) * factor,
            )
    return Fleet(
        name="api",
        levers=levers,
        routing=routing,
        tiers=tiers,
        units=units,
        retrieval_per_miss={c.name: retrieval_usd(w, prices, c) for c in w.classes},
        fixed_hourly=fixed_hourly(w, prices, levers),
        endpoints={},
        settings=Settings(),
        cold_start_s={},
    )


def _quant_bits(method: str) -> str | None:
    size = bytes_per_param(method)
    if size >= 2:
        return None
    return "4bit" if size < 0.8 else "8bit"


def hosted_spec(
    spec: InferenceEndpointSpec, levers: Levers, batching_gain: float = 4.0
) -> InferenceEndpointSpec:
    """The endpoint as the levers leave it: each switched-off technique undone in the spec."""
    engine = spec.engine
    if not levers.quantization:
        engine = engine.model_copy(update={"quantization": "none", "kv_cache_dtype": "auto"})
    if not levers.speculative:
        engine = engine.model_copy(update={"speculative": None})
    if not levers.prompt_caching:
        engine = engine.model_copy(update={"prefix_caching": False})
    capacity = spec.capacity
    prefs = list(capacity.preference)
    update: dict[str, Any] = {}
    if not levers.spot:
        prefs = [p for p in prefs if p != CapacityType.SPOT]
        update["spot"] = None
    if not levers.reserved:
        prefs = [p for p in prefs if p != CapacityType.RESERVED]
        update["reservation"] = None
    if CapacityType.ON_DEMAND not in prefs:
        prefs.append(CapacityType.ON_DEMAND)  # every variant must be able to serve
    capacity = capacity.model_copy(update=update | {"preference": prefs})
    scaling = spec.scaling
    if not levers.scale_to_zero:
        scaling = scaling.model_copy(update={"min_replicas": max(1, scaling.min_replicas)})
    if not levers.batching:  # static batching: a replica holds fewer requests at once
        target = max(1, math.floor(scaling.target_in_flight / batching_gain))
        scaling = scaling.model_copy(update={"target_in_flight": target})
    data = spec.model_copy(update={"engine": engine, "capacity": capacity, "scaling": scaling})
    return InferenceEndpointSpec.model_validate(data.model_dump(by_alias=True))


def _hosted_fleet(w: Workload, prices: Prices, levers: Levers) -> Fleet:
    hosted = w.fleets.self_hosted
    routing = _routing(hosted.routing, hosted.frontier, levers, {})
    tiers = tuple(t.name for t in routing.tiers)
    endpoints = {}
    units = {}
    for tier in tiers:
        original = hosted.tiers[tier].endpoint
        spec = hosted_spec(original, levers, w.techniques.batching_gain)
        endpoints[tier] = spec
        bits = _quant_bits(original.engine.quantization)
        bonus = (
            0.0
            if levers.quantization or bits is None
            else w.techniques.quantization_loss.get(bits, 0.0)
        )
        perf = hosted.tiers[tier].performance
        decode = perf.decode_tps
        if spec.engine.speculative is not None:
            decode *= w.techniques.speculative_speedup
        for cls in w.classes:
            tokens_in, tokens_out, factor = _prompt_tokens(w, cls, levers)
            cached = w.tokens.system_prompt if spec.engine.prefix_caching else 0.0
            prefill = (tokens_in - cached) / perf.prefill_tps
            units[cls.name, tier] = Unit(
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                cached_in=cached,
                input_usd=0.0,
                output_usd=0.0,
                latency_s=perf.ttft_seconds + prefill + tokens_out / decode,
                quality=_quality(w, cls, tier, bonus) * factor,
            )
    pools = hosted.reservations if levers.reserved else ()
    return Fleet(
        name="self-hosted",
        levers=levers,
        routing=routing,
        tiers=tiers,
        units=units,
        retrieval_per_miss={c.name: retrieval_usd(w, prices, c) for c in w.classes},
        fixed_hourly=fixed_hourly(w, prices, levers),
        endpoints=endpoints,
        settings=Settings(reservations=pools),
        cold_start_s={t: hosted.tiers[t].performance.cold_start_seconds for t in tiers},
    )
