"""The techniques a simulation can switch on or off, tied to the paper and to frugal's API.

Each technique names the paper's lever and technique number (Singu et al., §III) and the frugal
resource fields that enable it, so that the ablation table and ``frugal advise`` can say what to
change, not only what it saves.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Technique:
    key: str
    title: str
    lever: str
    """The paper's lever: fewer tokens, lower unit price, fewer calls, less infrastructure."""
    paper: str
    """The paper's technique and its number."""
    fields: tuple[str, ...]
    """frugal resource fields that enable it (empty: done outside frugal)."""
    hosted_only: bool = False


TECHNIQUES: tuple[Technique, ...] = (
    Technique(
        "routing",
        "model tiers per request class",
        "lower unit price",
        "right-size model (1), small models (13, 14)",
        ("RoutingPolicy.spec.tiers[].match", "RoutingPolicy.spec.tiers[].weight"),
    ),
    Technique(
        "auto_reroute",
        "runtime re-routing on live quality",
        "lower unit price",
        "future work (ii): the FinOps flowchart as a runtime policy",
        ("RoutingPolicy.spec.autoReroute.enabled", "RoutingPolicy.spec.objectives.minQuality"),
    ),
    Technique(
        "cache",
        "exact + semantic cache",
        "fewer calls",
        "semantic cache (11)",
        ("CachePolicy.spec.semantic.enabled", "CachePolicy.spec.exact"),
    ),
    Technique(
        "prompt_caching",
        "prompt / prefix (KV) caching",
        "fewer calls",
        "prompt/KV cache (21)",
        ("InferenceEndpoint.spec.engine.prefixCaching", "CachePolicy.spec.prefix.affinity"),
    ),
    Technique(
        "compression",
        "prompt compression",
        "fewer tokens",
        "prompt compression (19)",
        (),
    ),
    Technique(
        "fresh_context",
        "fresh context (history cap)",
        "fewer tokens",
        "fresh context (2)",
        ("InferenceEndpoint.spec.engine.maxModelLen",),
    ),
    Technique(
        "quantization",
        "quantized weights",
        "lower unit price",
        "quantization (17)",
        (
            "InferenceEndpoint.spec.engine.quantization",
            "InferenceEndpoint.spec.engine.kvCacheDtype",
        ),
        hosted_only=True,
    ),
    Technique(
        "speculative",
        "speculative decoding",
        "lower unit price",
        "speculative decoding (16)",
        ("InferenceEndpoint.spec.engine.speculative",),
        hosted_only=True,
    ),
    Technique(
        "batching",
        "continuous batching",
        "less infrastructure",
        "continuous batching (23)",
        (
            "InferenceEndpoint.spec.engine.maxNumSeqs",
            "InferenceEndpoint.spec.scaling.targetInFlight",
        ),
        hosted_only=True,
    ),
    Technique(
        "autoscaling",
        "replicas follow the load",
        "less infrastructure",
        "FinOps (15): right-size capacity",
        (
            "InferenceEndpoint.spec.scaling.maxReplicas",
            "InferenceEndpoint.spec.scaling.targetInFlight",
        ),
        hosted_only=True,
    ),
    Technique(
        "scale_to_zero",
        "idle shutdown (scale to zero)",
        "less infrastructure",
        "FinOps (15): idle shutdown",
        ("InferenceEndpoint.spec.scaling.minReplicas", "InferenceEndpoint.spec.scaling.idleAfter"),
        hosted_only=True,
    ),
    Technique(
        "spot",
        "spot capacity",
        "less infrastructure",
        "FinOps (15): spot",
        (
            "InferenceEndpoint.spec.capacity.preference",
            "InferenceEndpoint.spec.capacity.spot.maxShare",
        ),
        hosted_only=True,
    ),
    Technique(
        "reserved",
        "reserved capacity for the steady base",
        "less infrastructure",
        "FinOps (15): reserved",
        ("InferenceEndpoint.spec.capacity.reservation", "settings.reservations"),
        hosted_only=True,
    ),
)
BY_KEY = {t.key: t for t in TECHNIQUES}


@dataclass(frozen=True)
class Levers:
    """Which techniques are on. All on is frugal's optimised plan; all off is the baseline."""

    routing: bool = True
    auto_reroute: bool = True
    cache: bool = True
    prompt_caching: bool = True
    compression: bool = True
    fresh_context: bool = True
    quantization: bool = True
    speculative: bool = True
    batching: bool = True
    autoscaling: bool = True
    scale_to_zero: bool = True
    spot: bool = True
    reserved: bool = True

    @classmethod
    def baseline(cls) -> Levers:
        """Everything to the frontier tier, full prompts, always on, on-demand.

        Continuous batching stays on: every serving engine a baseline would run today (vLLM,
        TGI, SGLang) batches continuously, so switching it off would flatter the saving.
        """
        off = dict.fromkeys((f.name for f in fields(cls)), False)
        return cls(**(off | {"batching": True}))

    def without(self, key: str) -> Levers:
        if key not in BY_KEY:
            raise ValueError(f"unknown technique {key!r}")
        return replace(self, **{key: False})

    def on(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self) if getattr(self, f.name))


def techniques_for(fleet: str) -> tuple[Technique, ...]:
    """The techniques that apply to a fleet (``api`` has no GPUs to place)."""
    return tuple(t for t in TECHNIQUES if fleet == "self-hosted" or not t.hosted_only)
