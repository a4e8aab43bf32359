"""``frugal advise`` follows each branch of the flowchart, with the simulator's savings."""

from __future__ import annotations

import pytest

from frugal.finops.advise import Pattern, Profile, Simulated, advise, simulate_profile, workload_for
from frugal.sim.prices import load_prices
from frugal.sim.workload import load_workload

HOSTED_SAVINGS = {
    k: 100.0
    for k in (
        "cache",
        "prompt_caching",
        "fresh_context",
        "compression",
        "routing",
        "auto_reroute",
        "quantization",
        "speculative",
        "batching",
        "autoscaling",
        "scale_to_zero",
        "spot",
        "reserved",
    )
}


def sim(**changes: object) -> Simulated:
    """A self-hosted-cheaper simulation where every technique saves $100/month."""
    base = {
        "monthly": {"api": 5000.0, "self-hosted": 1200.0},
        "p95": {"api": 5.0, "self-hosted": 12.0},
        "savings": {"api": dict(HOSTED_SAVINGS), "self-hosted": dict(HOSTED_SAVINGS)},
        "cold_start_s": 240.0,
        "prompt_prefix_tokens": 400.0,
        "prompt_cache_min_tokens": 1024.0,
    }
    return Simulated(**(base | changes))


def profile(**changes: object) -> Profile:
    base = {
        "queries_per_day": 50_000,
        "latency_budget_s": 300.0,
        "quality_tolerance": 0.05,
        "pattern": Pattern.DIURNAL,
        "domains": 1,
    }
    return Profile(**(base | changes))


def by_technique(advice: list) -> dict:
    return {a.technique: a for a in advice}


def test_measure_comes_first_then_where_to_run() -> None:
    out = advise(profile(), sim())
    assert out[0].step.startswith("1.")
    assert out[0].recommended
    assert out[1].step.startswith("2.")
    assert out[1].technique == "self-hosted"
    steps = [a.step for a in out]
    assert steps == sorted(steps)  # flowchart order


def test_where_to_run_respects_the_latency_budget() -> None:
    # self-hosted is cheaper but its p95 (12 s) breaks a 10 s budget
    assert advise(profile(latency_budget_s=10), sim())[1].technique == "api"
    # nothing meets 1 s: the cheapest wins
    assert advise(profile(latency_budget_s=1), sim())[1].technique == "self-hosted"
    # without a simulation: the volume rule of thumb
    assert advise(profile(queries_per_day=1000))[1].technique == "api"
    assert advise(profile(queries_per_day=500_000))[1].technique == "self-hosted"


def test_quality_tolerance_gates_cache_tokens_and_routing() -> None:
    tight = by_technique(advise(profile(quality_tolerance=0.001), sim()))
    assert not tight["cache"].recommended
    assert not tight["routing"].recommended
    assert not tight["compression"].recommended
    assert not tight["fresh_context"].recommended
    some = by_technique(advise(profile(quality_tolerance=0.015), sim()))
    assert some["cache"].recommended
    assert some["routing"].recommended
    assert some["fresh_context"].recommended
    assert not some["compression"].recommended  # needs 2%
    loose = by_technique(advise(profile(), sim()))
    assert loose["compression"].recommended
    assert loose["routing"].saving_usd == 100.0
    assert "RoutingPolicy.spec.tiers[].match" in loose["routing"].fields


def test_a_technique_the_simulation_shows_saving_nothing_is_not_recommended() -> None:
    savings = dict(HOSTED_SAVINGS, fresh_context=-115.0)
    out = by_technique(advise(profile(), sim(savings={"self-hosted": savings})))
    assert not out["fresh_context"].recommended
    assert "saves nothing" in out["fresh_context"].why
    # ... unless it is free and helps otherwise (speculative decoding helps latency)
    savings = dict(HOSTED_SAVINGS, speculative=0.0)
    out = by_technique(advise(profile(), sim(savings={"self-hosted": savings})))
    assert out["speculative"].recommended


def test_prompt_caching_needs_a_long_prefix_on_managed_apis() -> None:
    api = sim(monthly={"api": 1000.0, "self-hosted": 2000.0})
    assert not by_technique(advise(profile(), api))["prompt_caching"].recommended
    assert "1024-token minimum" in by_technique(advise(profile(), api))["prompt_caching"].why
    long = sim(monthly={"api": 1000.0, "self-hosted": 2000.0}, prompt_prefix_tokens=2000.0)
    assert by_technique(advise(profile(), long))["prompt_caching"].recommended
    assert by_technique(advise(profile(), sim()))["prompt_caching"].recommended  # vLLM


def test_distillation_pays_back_only_above_100k_queries_a_month_per_domain() -> None:
    assert by_technique(advise(profile(), sim()))["distillation"].recommended  # 1.5M/month
    small = by_technique(advise(profile(queries_per_day=3000), sim()))  # 90k/month
    assert not small["distillation"].recommended
    spread = by_technique(advise(profile(queries_per_day=10_000, domains=5), sim()))  # 60k each
    assert not spread["distillation"].recommended
    assert by_technique(advise(profile(), sim()))["distillation"].saving_usd is None


def test_traffic_pattern_picks_the_infrastructure_levers() -> None:
    steady = by_technique(advise(profile(pattern=Pattern.STEADY), sim()))
    assert not steady["autoscaling"].recommended
    assert not steady["scale_to_zero"].recommended
    assert steady["reserved"].recommended
    assert "all of it" in steady["reserved"].why
    diurnal = by_technique(advise(profile(), sim()))
    assert diurnal["autoscaling"].recommended
    assert diurnal["scale_to_zero"].recommended
    assert "trough" in diurnal["reserved"].why
    bursty = by_technique(advise(profile(pattern=Pattern.BURSTY), sim()))
    assert bursty["spot"].recommended
    assert "bursts" in bursty["spot"].why
    assert bursty["batching"].recommended


def test_scale_to_zero_needs_the_cold_start_to_fit_the_budget() -> None:
    out = by_technique(
        advise(
            profile(latency_budget_s=100, pattern=Pattern.DIURNAL),
            sim(p95={"api": 5.0, "self-hosted": 12.0}),
        )
    )
    assert not out["scale_to_zero"].recommended
    assert "240 s cold start" in out["scale_to_zero"].why


def test_managed_api_hosting_has_no_infrastructure_levers() -> None:
    out = by_technique(advise(profile(), sim(monthly={"api": 100.0, "self-hosted": 900.0})))
    for key in ("quantization", "spot", "reserved", "scale_to_zero"):
        assert not out[key].recommended
        assert "n/a" in out[key].why


def test_workload_for_a_profile() -> None:
    base = load_workload()
    w = workload_for(profile(pattern=Pattern.STEADY, quality_tolerance=0.1, domains=3), base)
    assert w.volume.diurnal_amplitude == 0
    assert w.cache.topics == 3 * base.cache.topics
    assert w.fleets.api.routing["objectives"]["minQuality"] == pytest.approx(0.9)
    bursty = workload_for(profile(pattern=Pattern.BURSTY), base)
    assert max(bursty.volume.hourly_shares()) == pytest.approx(6 / 39)


def test_advice_with_the_real_simulator() -> None:
    p = profile(queries_per_day=20_000, latency_budget_s=600)
    s = simulate_profile(p, load_workload(), load_prices())
    assert set(s.monthly) == {"api", "self-hosted"}
    out = advise(p, s)
    hosting = out[1].technique
    assert hosting == min(s.monthly, key=s.monthly.get)
    chosen = by_technique(out)
    assert chosen["cache"].saving_usd == pytest.approx(s.savings[hosting]["cache"])
