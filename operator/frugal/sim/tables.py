"""Tables I-III and the sensitivity envelope as plain rows, for the terminal, JSON and charts.

Table I splits each scenario's month by the terms of Eq. (1); Table II is what the user gets
(quality retention, latency, cache hits); Table III is the ablation. The paper's published
headline is carried alongside so that every output shows both.
"""

from __future__ import annotations

from typing import Any

from frugal.sim.engine import COMPONENTS, Run
from frugal.sim.levers import BY_KEY, techniques_for
from frugal.sim.study import FleetStudy, Study

PAPER = {"baseline": 18_420.0, "optimised": 3_980.0, "saving": 0.784}
"""Singu et al., §V: the case study's monthly cost before and after, and the saving."""


def _month(run: Run, value: float) -> float:
    return value * 30 / run.days


def cost_row(fleet: str, scenario: str, run: Run, baseline: Run) -> dict[str, Any]:
    row: dict[str, Any] = {"fleet": fleet, "scenario": scenario}
    for part in COMPONENTS:
        row[part] = _month(run, run.cost[part])
    row["total"] = run.monthly
    row["saving"] = 1 - run.monthly / baseline.monthly
    return row


def table1(study: Study) -> list[dict[str, Any]]:
    """Monthly cost by Eq. (1) component: baseline, frugal's plan, and the lower bound."""
    rows = []
    for fleet, fs in study.fleets.items():
        rows.append(cost_row(fleet, "baseline", fs.baseline, fs.baseline))
        rows.append(cost_row(fleet, "frugal plan", fs.plan, fs.baseline))
        if fs.bound is not None:
            scale = 30 / fs.plan.days
            rows.append(
                {
                    "fleet": fleet,
                    "scenario": "lower bound (LP)",
                    **dict.fromkeys(COMPONENTS),
                    "total": fs.bound.total_usd * scale,
                    "saving": 1 - fs.bound.total_usd * scale / fs.baseline.monthly,
                }
            )
    return rows


def quality_row(fleet: str, scenario: str, run: Run, baseline: Run) -> dict[str, Any]:
    requests = run.requests or 1.0
    return {
        "fleet": fleet,
        "scenario": scenario,
        "quality": run.quality,
        "retention_vs_baseline": run.quality / baseline.quality,
        "p50_seconds": run.p50,
        "p95_seconds": run.p95,
        "exact_hit_rate": run.exact_hits / requests,
        "semantic_hit_rate": run.semantic_hits / requests,
        "false_hit_rate": run.false_hits / requests,
    }


def table2(study: Study) -> list[dict[str, Any]]:
    """Quality retention (vs the frontier model = 1), latency and cache hit rates."""
    rows = []
    for fleet, fs in study.fleets.items():
        rows.append(quality_row(fleet, "baseline", fs.baseline, fs.baseline))
        rows.append(quality_row(fleet, "frugal plan", fs.plan, fs.baseline))
    return rows


def table3(study: Study) -> list[dict[str, Any]]:
    """The ablation: each technique switched off (or, if the plan leaves it off, on)."""
    rows = []
    for fleet, fs in study.fleets.items():
        for a in fs.ablation:
            tech = BY_KEY[a.technique]
            rows.append(
                {
                    "fleet": fleet,
                    "technique": a.technique,
                    "title": tech.title,
                    "lever": tech.lever,
                    "paper": tech.paper,
                    "in_plan": a.in_plan,
                    "monthly": a.monthly,
                    "delta": a.delta,
                    "quality": a.quality,
                    "p95_seconds": a.p95,
                    "fields": list(tech.fields),
                }
            )
    return rows


def sensitivity(study: Study) -> list[dict[str, Any]]:
    return [
        {"fleet": fleet, **vars(s)} for fleet, fs in study.fleets.items() for s in fs.sensitivity
    ]


def bound_summary(fs: FleetStudy) -> dict[str, Any] | None:
    b = fs.bound
    if b is None:
        return None
    scale = 30 / fs.plan.days
    return {
        "monthly": b.total_usd * scale,
        "quality": b.quality,
        "mix": b.mix,
        "one_tier_monthly": None if b.one_tier_usd is None else b.one_tier_usd * scale,
        "one_tier_mix": b.one_tier_mix,
        "plan_over_bound": fs.plan.total / b.total_usd if b.total_usd else None,
    }


def plan_summary(fs: FleetStudy) -> dict[str, Any]:
    keys = [t.key for t in techniques_for(fs.fleet)]
    used = [k for k in keys if getattr(fs.levers, k)]
    weights = {t: series[-1] for t, series in fs.plan.weights.items()}
    return {
        "techniques": used,
        "left_off": [k for k in keys if k not in used],
        "objective": fs.objective,
        "final_weights": weights,
        "gpus": fs.plan.gpu,
        "gpu_hours": dict(fs.plan.gpu_hours),
        "events": dict(fs.plan.events),
        "infrastructure": {k: _month(fs.plan, v) for k, v in fs.plan.infra.items()},
    }


def to_json(study: Study) -> dict[str, Any]:
    w = study.workload
    return {
        "workload": w.name,
        "seed": w.seed,
        "queries_per_day": w.volume.queries_per_day,
        "days": w.volume.days,
        "prices_as_of": study.prices.as_of,
        "paper": PAPER,
        "table1": table1(study),
        "table2": table2(study),
        "table3": table3(study),
        "sensitivity": sensitivity(study),
        "bound": {f: bound_summary(fs) for f, fs in study.fleets.items()},
        "plan": {f: plan_summary(fs) for f, fs in study.fleets.items()},
    }
