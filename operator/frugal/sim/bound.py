"""A lower bound: the cheapest tier mix per request class that meets the same quality.

A linear programme over x[c, t], the share of class c's model calls sent to tier t:

    minimise   Σ_c Σ_t M_c · x[c,t] · u[c,t]              (+ the plan's retrieval and fixed costs)
    subject to Σ_t x[c,t] = 1                              for every class c
               Σ_c (M_c + H_c) · Σ_t x[c,t] · q[c,t]  ≥  Q · N

M_c are the plan's model calls of class c, H_c its correct cache hits (they inherit the class's
answer quality), N all requests and Q the quality to meet. u[c,t] is a call's cost: its tokens
at list price on a managed tier; on a self-hosted tier, its share of a replica kept 100% busy at
``targetInFlight`` on the cheapest capacity type — no idle time, no whole replicas, no on-demand
floor. Every cost the plan pays is therefore at least the bound's, and the plan's own mix is
feasible, so the bound can never be above the plan. A 0/1 variant (one tier per class) is the
simple rule a team could write by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from frugal.api.base import CapacityType
from frugal.placement.sizing import fit_gpu
from frugal.sim.engine import Run
from frugal.sim.fleets import Fleet, build_fleet
from frugal.sim.levers import Levers
from frugal.sim.prices import Prices
from frugal.sim.workload import Workload

SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class Bound:
    """The cheapest mix and what it costs over the simulated period."""

    total_usd: float
    mix: dict[str, dict[str, float]]
    """class → tier → share of its model calls."""
    quality: float
    """The quality it was asked to meet."""
    one_tier_usd: float | None
    """Cheapest with one tier per class (0/1), or None if no such choice meets the quality."""
    one_tier_mix: dict[str, str] | None


def unit_costs(fleet: Fleet) -> dict[tuple[str, str], float]:
    """$ per model call per (class, tier), at list price or at a fully busy cheapest replica."""
    out = {}
    catalog = fleet.settings.catalog()
    for (cls, tier), unit in fleet.units.items():
        if tier not in fleet.endpoints:
            out[cls, tier] = unit.input_usd + unit.output_usd
            continue
        spec = fleet.endpoints[tier]
        fit = fit_gpu(spec, catalog, fleet.settings.engine.default_max_model_len)
        if fit.gpu is None:
            raise ValueError(f"{tier}: {fit.reason}")
        cheapest = min(fit.gpu.price(c) for c in CapacityType) * fit.count
        out[cls, tier] = (
            unit.latency_s / spec.scaling.target_in_flight * cheapest / SECONDS_PER_HOUR
        )
    return out


def lower_bound(w: Workload, prices: Prices, plan: Run, levers: Levers, quality: float) -> Bound:
    """The LP bound for the plan's fleet, techniques and cache, over every tier of the fleet."""
    from scipy.optimize import Bounds, LinearConstraint, linprog, milp

    fleet = build_fleet(w, prices, plan.fleet, _with_all_tiers(levers))
    classes = [c.name for c in w.classes]
    tiers = list(fleet.tiers)
    calls = {c: sum(v for (k, _), v in plan.class_tier.items() if k == c) for c in classes}
    hit_share = (plan.exact_hits + plan.semantic_hits - plan.false_hits) / max(plan.requests, 1e-9)
    shares = w.class_shares()
    cost = unit_costs(fleet)
    n = len(classes) * len(tiers)

    def idx(ci: int, ti: int) -> int:
        return ci * len(tiers) + ti

    c_vec = np.zeros(n)
    q_row = np.zeros(n)
    a_eq = np.zeros((len(classes), n))
    for ci, cls in enumerate(classes):
        # Correct cache hits of the class: hits are spread over cacheable classes by volume.
        hits = _class_hits(w, plan, cls, shares, hit_share)
        for ti, tier in enumerate(tiers):
            j = idx(ci, ti)
            c_vec[j] = calls[cls] * cost[cls, tier]
            q_row[j] = (calls[cls] + hits) * fleet.units[cls, tier].quality
            a_eq[ci, j] = 1.0
    need = quality * plan.requests  # false hits count as requests of quality 0
    others = plan.cost["retrieval"] + _fixed(plan)
    res = linprog(
        c_vec,
        A_ub=-q_row[None, :],
        b_ub=[-need],
        A_eq=a_eq,
        b_eq=np.ones(len(classes)),
        bounds=[(0, 1)] * n,
        method="highs",
    )
    if not res.success:
        raise ValueError(f"no tier mix reaches quality {quality:.4f}: {res.message}")
    mix = {
        cls: {
            t: float(res.x[idx(ci, ti)]) for ti, t in enumerate(tiers) if res.x[idx(ci, ti)] > 1e-6
        }
        for ci, cls in enumerate(classes)
    }
    ilp = milp(
        c_vec,
        constraints=[
            LinearConstraint(q_row[None, :], lb=need),
            LinearConstraint(a_eq, lb=1, ub=1),
        ],
        integrality=np.ones(n),
        bounds=Bounds(0, 1),
    )
    one_usd, one_mix = None, None
    if ilp.success:
        one_usd = float(ilp.fun) + others
        one_mix = {
            cls: tiers[int(np.argmax([ilp.x[idx(ci, ti)] for ti in range(len(tiers))]))]
            for ci, cls in enumerate(classes)
        }
    return Bound(float(res.fun) + others, mix, quality, one_usd, one_mix)


def _with_all_tiers(levers: Levers) -> Levers:
    """The bound may use every tier of the fleet, even when the plan routes to one."""
    return replace(levers, routing=True)


def _class_hits(
    w: Workload, plan: Run, cls: str, shares: dict[str, float], hit_share: float
) -> float:
    cacheable = {c.name for c in w.classes if c.cacheable}
    if cls not in cacheable or not cacheable:
        return 0.0
    total = sum(shares[c] for c in cacheable)
    return hit_share * plan.requests * shares[cls] / total


def _fixed(plan: Run) -> float:
    """The plan's infrastructure that is not GPUs (gateway, cache, vector storage)."""
    gpus = ("reserved GPUs", "spot GPUs", "on-demand GPUs")
    return sum(v for k, v in plan.infra.items() if k not in gpus)
