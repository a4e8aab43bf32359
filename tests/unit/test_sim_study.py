"""The case study as a whole: the ablation is consistent, the bound is a bound, runs repeat."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_sim_tables import NO_REROUTE, tiny

from frugal.sim.bound import lower_bound
from frugal.sim.engine import simulate
from frugal.sim.levers import Levers, techniques_for
from frugal.sim.prices import load_prices
from frugal.sim.study import Study, choose_plan, run_study, sensitivity_rows
from frugal.sim.tables import to_json
from frugal.sim.workload import load_workload, with_value

PRICES = load_prices()


@pytest.fixture(scope="module")
def study() -> Study:
    return run_study(load_workload(), PRICES, sensitivity=False)


def test_switching_a_technique_off_never_lowers_the_cost(study: Study) -> None:
    for fleet, fs in study.fleets.items():
        assert {a.technique for a in fs.ablation} == {t.key for t in techniques_for(fleet)}
        for a in fs.ablation:
            if a.in_plan:
                assert a.delta >= -0.01, (fleet, a)
                assert a.monthly >= fs.plan.monthly - 0.01


def test_plan_meets_the_quality_objective_and_saves(study: Study) -> None:
    for fs in study.fleets.values():
        assert fs.plan.quality >= fs.objective
        assert 0 < fs.plan.monthly < fs.baseline.monthly
        assert 0.5 < fs.saving < 1


def test_lower_bound_is_never_above_the_plan(study: Study) -> None:
    for fs in study.fleets.values():
        assert fs.bound is not None
        assert fs.bound.total_usd <= fs.plan.total
        if fs.bound.one_tier_usd is not None:  # the 0/1 choice is feasible, so at least the LP
            assert fs.bound.total_usd <= fs.bound.one_tier_usd + 1e-6


@pytest.mark.parametrize("volume", [5_000, 300_000])
def test_lower_bound_holds_at_other_volumes(volume: float) -> None:
    w = with_value(load_workload(), "volume.queriesPerDay", volume)
    for fleet in ("api", "self-hosted"):
        levers, plan, _ = choose_plan(w, PRICES, fleet)
        bound = lower_bound(w, PRICES, plan, levers, min(0.95, plan.quality) - 1e-6)
        assert bound.total_usd <= plan.total


def test_lower_bound_by_hand() -> None:
    # One class; small has quality 0.9, frontier 1.0; to reach 0.95 the LP sends half to each:
    # 0.5 × (120 × 0.15 + 50 × 0.60) + 0.5 × (120 × 10 + 50 × 30) = $1,374e-6 per request.
    w = tiny()
    plan = simulate(w, PRICES, "api", NO_REROUTE)
    bound = lower_bound(w, PRICES, plan, NO_REROUTE, 0.95)
    fixed = 48 * 0.288  # the plan's gateway
    assert bound.total_usd == pytest.approx(plan.requests * 1374e-6 + fixed, rel=1e-6)
    assert bound.mix["general"] == pytest.approx({"small": 0.5, "frontier": 0.5})
    # one tier for the class: only the frontier reaches 0.95
    assert bound.one_tier_mix == {"general": "frontier"}
    assert bound.one_tier_usd == pytest.approx(plan.requests * 2700e-6 + fixed, rel=1e-6)


def test_simulation_is_deterministic_for_a_seed() -> None:
    w = load_workload()
    a = simulate(w, PRICES, "self-hosted", Levers())
    b = simulate(w, PRICES, "self-hosted", Levers())
    assert a.cost == b.cost
    assert a.step_cost == b.step_cost
    assert dict(a.events) == dict(b.events)
    c = simulate(w.model_copy(update={"seed": 1}), PRICES, "self-hosted", Levers())
    assert c.step_cost != a.step_cost


def test_study_report_is_the_same_with_one_or_two_workers() -> None:
    w = with_value(load_workload(), "volume.days", 3)
    one = to_json(run_study(w, PRICES, ["api"], sensitivity=False, workers=1))
    two = to_json(run_study(w, PRICES, ["api"], sensitivity=False, workers=2))
    assert one == two


def test_sensitivity_moves_the_saving_the_expected_way() -> None:
    w = with_value(load_workload(), "volume.days", 3)
    w = w.model_copy(update={"sensitivity": {"techniques.qualityGapScale": (0.5, 2.0)}})
    levers = replace(Levers(), fresh_context=False)
    (row,) = sensitivity_rows(w, PRICES, "api", levers)
    # smaller gaps between tiers leave more traffic to cheap tiers: a larger saving
    assert row.saving_low > row.saving_high
    assert row.base == 1.0
