"""``frugal advise``: the paper's FinOps decision flowchart, with payback from the simulator.

The flowchart is read as five questions asked in order — measure first, then where to run,
then the paper's levers from the cheapest to adopt to the most involved (fewer calls, fewer
tokens, lower unit price, less infrastructure) — each gated by the workload's characteristics
(latency budget, quality tolerance, traffic pattern, volume, domains) and by a payback rule.
docs/case-study.md spells the reading out. Where a technique can be simulated, the simulator
replays the workload with and without it and the advice carries that saving; a technique that
the simulation shows saving nothing is not recommended for cost, whatever the rule says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from frugal.sim.levers import BY_KEY
from frugal.sim.workload import Workload

DISTILLATION_MIN_QUERIES_PER_MONTH = 100_000
"""Below this per domain, training and evaluating a distilled model does not pay back."""
FALSE_HIT_QUALITY_COST = 0.005
"""Quality a semantic cache may cost through false hits (Banking77 replay: ~0.3%)."""
COMPRESSION_QUALITY_COST = 0.02
"""Quality prompt compression may cost (LLMLingua-2 at 2-5x; our 0.99 plus margin)."""
ROUTING_MIN_TOLERANCE = 0.01
"""Less tolerance than this leaves no room for any smaller model."""


class Pattern(StrEnum):
    STEADY = "steady"
    DIURNAL = "diurnal"
    BURSTY = "bursty"


@dataclass(frozen=True)
class Profile:
    """What a team knows about its workload before it has any cost data."""

    queries_per_day: float
    latency_budget_s: float
    """The p95 end-to-end latency the product can accept."""
    quality_tolerance: float
    """Quality it may lose against the frontier model (0.05: 95% retention is enough)."""
    pattern: Pattern = Pattern.DIURNAL
    domains: int = 1

    @property
    def queries_per_month(self) -> float:
        return self.queries_per_day * 30


@dataclass(frozen=True)
class Advice:
    step: str
    """The flowchart question this answers."""
    technique: str
    recommended: bool
    why: str
    saving_usd: float | None = None
    """Simulated monthly saving of this technique for this workload (None: not simulated)."""
    fields: tuple[str, ...] = ()
    paper: str = ""


@dataclass(frozen=True)
class Simulated:
    """What the simulator found for the workload: per fleet, plan cost, p95 and savings."""

    monthly: dict[str, float]
    p95: dict[str, float]
    savings: dict[str, dict[str, float]] = field(default_factory=dict)
    """fleet → technique → monthly saving of keeping it on (negative: it costs)."""
    cold_start_s: float = 0.0
    """Longest cold start among tiers that may scale to zero."""
    prompt_prefix_tokens: float = 0.0
    prompt_cache_min_tokens: float = 0.0


# --- the workload the simulator replays for a profile ------------------------------------------

BURSTY_PROFILE = (1, 1, 1, 1, 1, 1, 1, 1, 6, 1, 1, 1, 6, 1, 1, 1, 1, 6, 1, 1, 1, 1, 1, 1)
"""Flat traffic with three one-hour bursts at six times the base (a campaign, a release)."""


def workload_for(profile: Profile, base: Workload) -> Workload:
    """The case-study workload with the profile's volume, pattern, domains and quality bar."""
    volume = base.volume.model_copy(
        update={
            "queries_per_day": profile.queries_per_day,
            "diurnal_amplitude": 0.0 if profile.pattern is Pattern.STEADY else 1.0,
            "diurnal": BURSTY_PROFILE if profile.pattern is Pattern.BURSTY else base.volume.diurnal,
        }
    )
    cache = base.cache.model_copy(update={"topics": base.cache.topics * max(profile.domains, 1)})
    goal = max(0.01, 1 - profile.quality_tolerance)
    fleets = base.fleets.model_copy(
        update={
            "api": _with_goal(base.fleets.api, goal),
            "self_hosted": _with_goal(base.fleets.self_hosted, goal),
        }
    )
    data = base.model_copy(update={"volume": volume, "cache": cache, "fleets": fleets})
    return Workload.model_validate(data.model_dump(by_alias=True))


def _with_goal(fleet: Any, goal: float) -> Any:
    routing = dict(fleet.routing)
    routing["objectives"] = {**routing.get("objectives", {}), "minQuality": round(goal, 4)}
    return fleet.model_copy(update={"routing": routing})


def simulate_profile(
    profile: Profile, base: Workload, prices: Any, workers: int | None = None
) -> Simulated:
    """Run the study (no sensitivity) for the profile's workload and collect what advice needs."""
    from frugal.sim.study import run_study

    w = workload_for(profile, base)
    study = run_study(w, prices, sensitivity=False, workers=workers)
    savings = {
        fleet: {a.technique: (a.delta if a.in_plan else -a.delta) for a in fs.ablation}
        for fleet, fs in study.fleets.items()
    }
    hosted = w.fleets.self_hosted.tiers
    cold = max(
        (
            t.performance.cold_start_seconds
            for t in hosted.values()
            if t.endpoint.scaling.min_replicas == 0
        ),
        default=0.0,
    )
    return Simulated(
        monthly={f: fs.plan.monthly for f, fs in study.fleets.items()},
        p95={f: fs.plan.p95 for f, fs in study.fleets.items()},
        savings=savings,
        cold_start_s=cold,
        prompt_prefix_tokens=w.tokens.system_prompt,
        prompt_cache_min_tokens=prices.prompt_cache_min_tokens,
    )


# --- the flowchart -----------------------------------------------------------------------------


def _tech(key: str) -> dict[str, Any]:
    t = BY_KEY[key]
    return {"technique": key, "fields": t.fields, "paper": t.paper}


def _usd(value: float) -> str:
    return f"{'-' if value < 0 else ''}${abs(value):,.0f}/month"


def advise(profile: Profile, sim: Simulated | None = None) -> list[Advice]:
    """Techniques in flowchart order, each recommended or not, with the rule that decided."""
    out: list[Advice] = [
        Advice(
            "1. measure",
            "cost allocation and budgets",
            True,
            "always first: spend you cannot attribute cannot be optimised (paper: monitor costs "
            "(6), tagging (15))",
            fields=("InferenceEndpoint.spec.costAllocation", "InferenceEndpoint.spec.budget"),
            paper="monitor costs (6), FinOps tagging (15)",
        )
    ]
    hosting = _hosting(profile, sim, out)
    savings = (sim.savings.get(hosting, {}) if sim else {}) or {}

    def add(step: str, key: str, ok: bool, why: str, keep_if_free: bool = False) -> None:
        saving = savings.get(key) if sim else None
        if not ok:
            out.append(Advice(step, recommended=False, why=why, saving_usd=saving, **_tech(key)))
            return
        if saving is not None and saving <= 0 and not keep_if_free:
            why = f"{why}; but the simulation shows it saves nothing here ({_usd(saving)})"
            out.append(Advice(step, recommended=False, why=why, saving_usd=saving, **_tech(key)))
            return
        out.append(Advice(step, recommended=True, why=why, saving_usd=saving, **_tech(key)))

    tol = profile.quality_tolerance
    # 3. fewer calls
    add(
        "3. fewer calls",
        "cache",
        tol >= FALSE_HIT_QUALITY_COST,
        f"repeated and paraphrased questions are answered without a model call; false hits cost "
        f"~{FALSE_HIT_QUALITY_COST:.1%} quality, tolerance is {tol:.1%}",
    )
    prompt_ok = True
    why = "a repeated prompt prefix is billed at the cached price / skips prefill"
    if hosting == "api" and sim and sim.prompt_prefix_tokens < sim.prompt_cache_min_tokens:
        prompt_ok = False
        why = (
            f"the static prefix ({sim.prompt_prefix_tokens:.0f} tokens) is under the provider's "
            f"{sim.prompt_cache_min_tokens:.0f}-token minimum for cached-input prices"
        )
    add("3. fewer calls", "prompt_caching", prompt_ok, why, keep_if_free=hosting != "api")
    # 4. fewer tokens
    add(
        "4. fewer tokens",
        "fresh_context",
        tol >= 0.01,
        "cap re-sent history; costs ~0.5% quality that routing could otherwise use",
    )
    add(
        "4. fewer tokens",
        "compression",
        tol >= COMPRESSION_QUALITY_COST,
        f"compress retrieved context and history (LLMLingua-2 style, outside frugal); needs "
        f"≥{COMPRESSION_QUALITY_COST:.0%} quality tolerance, have {tol:.1%}",
    )
    # 5. lower unit price
    add(
        "5. lower unit price",
        "routing",
        tol >= ROUTING_MIN_TOLERANCE,
        f"send classes a smaller model answers well to a cheaper tier; tolerance {tol:.1%} "
        f"(needs ≥{ROUTING_MIN_TOLERANCE:.0%})",
    )
    add(
        "5. lower unit price",
        "auto_reroute",
        tol >= ROUTING_MIN_TOLERANCE,
        "let frugal walk weight down while measured quality holds, and back up when it does not",
        keep_if_free=True,
    )
    per_domain = profile.queries_per_month / max(profile.domains, 1)
    distil = per_domain >= DISTILLATION_MIN_QUERIES_PER_MONTH and tol >= 0.02
    out.append(
        Advice(
            "5. lower unit price",
            "distillation",
            distil,
            f"{per_domain:,.0f} queries/month per domain "
            + (
                "pays back a distilled small model per domain"
                if distil
                else f"(needs ≥{DISTILLATION_MIN_QUERIES_PER_MONTH:,} and ≥2% tolerance): "
                "training and evaluation do not pay back"
            ),
            None,
            ("RoutingPolicy.spec.tiers[].endpointRef", "InferenceEndpoint.spec.model.uri"),
            "distillation / small models (13, 14) — not simulated",
        )
    )
    if hosting != "self-hosted":
        for key in (
            "quantization",
            "speculative",
            "batching",
            "autoscaling",
            "scale_to_zero",
            "spot",
            "reserved",
        ):
            add("5-6. self-hosted only", key, False, "n/a: the managed-API fleet runs no GPUs")
        return out
    add("5. lower unit price", "quantization", True, "4-bit/8-bit weights fit cheaper GPUs")
    tight = sim is not None and sim.p95.get("self-hosted", 0) > 0.8 * profile.latency_budget_s
    add(
        "5. lower unit price",
        "speculative",
        True,
        "drafting speeds decode at low batch"
        + ("; p95 is close to the latency budget" if tight else ""),
        keep_if_free=True,
    )
    # 6. less infrastructure
    add(
        "6. less infrastructure", "batching", True, "continuous batching: always", keep_if_free=True
    )
    moving = profile.pattern is not Pattern.STEADY
    add(
        "6. less infrastructure",
        "autoscaling",
        moving,
        f"{profile.pattern.value} traffic: replicas should follow it"
        if moving
        else "steady traffic: a fixed, reserved fleet is simpler",
        keep_if_free=True,
    )
    cold = sim.cold_start_s if sim else 0.0
    fits = cold <= profile.latency_budget_s
    add(
        "6. less infrastructure",
        "scale_to_zero",
        moving and fits,
        (
            f"idle hours exist and a {cold:.0f} s cold start fits the "
            f"{profile.latency_budget_s:g} s budget"
            if moving and fits
            else f"a {cold:.0f} s cold start breaks the {profile.latency_budget_s:g} s budget"
            if moving
            else "steady traffic never idles"
        ),
        keep_if_free=True,
    )
    add(
        "6. less infrastructure",
        "spot",
        True,
        "spot for the capacity above the floor; frugal backs off after interruptions"
        + ("; bursts are what spot is for" if profile.pattern is Pattern.BURSTY else ""),
    )
    add(
        "6. less infrastructure",
        "reserved",
        True,
        "reserve the steady base only: "
        + ("all of it" if not moving else f"the trough of the {profile.pattern.value} curve"),
        keep_if_free=True,
    )
    return out


def _hosting(profile: Profile, sim: Simulated | None, out: list[Advice]) -> str:
    """2. where to run: the cheaper fleet whose p95 meets the budget (managed API by default)."""
    if sim is None or not sim.monthly:
        hosting = "api" if profile.queries_per_day < 100_000 else "self-hosted"
        why = "rule of thumb without a simulation: self-host from ~100k queries/day"
    else:
        meets = [f for f in sim.monthly if sim.p95.get(f, 0) <= profile.latency_budget_s]
        pool = meets or list(sim.monthly)
        hosting = min(pool, key=lambda f: sim.monthly[f])
        figures = ", ".join(
            f"{f} {_usd(sim.monthly[f])} (p95 {sim.p95[f]:.1f} s)" for f in sim.monthly
        )
        why = f"cheapest plan{' within the latency budget' if meets else ''}: {figures}"
    out.append(
        Advice(
            "2. where to run",
            hosting,
            True,
            why,
            None,
            ("RoutingPolicy.spec.tiers[].external", "RoutingPolicy.spec.tiers[].endpointRef"),
            "right-size model (1)",
        )
    )
    return hosting


def to_rows(advice: list[Advice]) -> list[dict[str, Any]]:
    return [
        {
            "step": a.step,
            "technique": a.technique,
            "recommended": a.recommended,
            "saving_usd_per_month": a.saving_usd,
            "why": a.why,
            "fields": list(a.fields),
            "paper": a.paper,
        }
        for a in advice
    ]
