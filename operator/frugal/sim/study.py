"""The case study end to end: baseline, frugal's plan, ablation, lower bound, sensitivity.

frugal's plan is not "every technique on". Techniques interact — a compression that costs 1%
of quality is 1% less room for cheaper tiers; a small self-hosted tier is a whole GPU that may
serve 5% of traffic — so the plan is found the way the paper's flowchart is meant to be used:
start with everything on and switch off whatever does not pay (lower cost, quality still at
the objective), until nothing more does. The ablation then switches each remaining technique
off in turn; by construction none of those lowers the cost, and techniques the plan left off
are shown with what switching them on would cost.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from frugal.sim.bound import Bound, lower_bound
from frugal.sim.engine import Run, make_draws, simulate
from frugal.sim.fleets import FLEETS, build_fleet
from frugal.sim.levers import Levers, techniques_for
from frugal.sim.prices import Prices
from frugal.sim.workload import Workload, get_path, with_value

TOLERANCE_USD = 0.01
"""Cost differences below a cent over the period are noise, not savings."""
HOSTED_ONLY_PARAMETERS = ("techniques.speculativeSpeedup", "techniques.batchingGain", "spot.")


@dataclass(frozen=True)
class Ablation:
    technique: str
    in_plan: bool
    """True: the plan uses it and this row switches it off; False: this row switches it on."""
    monthly: float
    delta: float
    """Monthly cost of this row minus the plan's."""
    quality: float
    p95: float


@dataclass(frozen=True)
class Sensitivity:
    parameter: str
    base: float
    low: float
    high: float
    saving_low: float
    saving_high: float
    plan_low: float
    plan_high: float


@dataclass
class FleetStudy:
    fleet: str
    objective: float
    baseline: Run
    plan: Run
    levers: Levers
    ablation: list[Ablation] = field(default_factory=list)
    bound: Bound | None = None
    sensitivity: list[Sensitivity] = field(default_factory=list)

    @property
    def saving(self) -> float:
        return 1 - self.plan.monthly / self.baseline.monthly


@dataclass
class Study:
    workload: Workload
    prices: Prices
    fleets: dict[str, FleetStudy]


# --- running many simulations ------------------------------------------------------------------


def _run(args: tuple[Workload, Prices, str, Levers]) -> Run:
    w, prices, fleet, levers = args
    return simulate(w, prices, fleet, levers, _draws(w))


_DRAWS: dict[str, Any] = {}


def _draws(w: Workload) -> Any:
    """Draws memoised per workload, so that a worker builds each only once."""
    key = w.model_dump_json()
    if key not in _DRAWS:
        _DRAWS.clear()
        _DRAWS[key] = make_draws(w)
    return _DRAWS[key]


Mapper = Callable[[Callable, Iterable], Iterator]


@contextmanager
def mapper(workers: int | None = None) -> Iterator[Mapper]:
    """``map`` over processes (fork) when there is more than one core, else in-process.

    Runs are independent and seeded, so the answer does not depend on the number of workers.
    """
    workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield map
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        yield pool.map


# --- the plan ----------------------------------------------------------------------------------


def objective(w: Workload, prices: Prices, fleet: str) -> float:
    """The quality the fleet's RoutingPolicy must meet (its ``objectives.minQuality``)."""
    spec = build_fleet(w, prices, fleet, Levers()).routing
    return spec.objectives.min_quality or 0.0


def choose_plan(
    w: Workload, prices: Prices, fleet: str, run_map: Mapper = map
) -> tuple[Levers, Run, dict[str, Run]]:
    """The techniques that pay, the plan's run, and the run with each of them switched off."""
    goal = objective(w, prices, fleet)
    keys = [t.key for t in techniques_for(fleet)]
    levers = Levers()
    plan = _run((w, prices, fleet, levers))
    while True:
        active = [k for k in keys if getattr(levers, k)]
        trials = dict(
            zip(
                active,
                run_map(_run, [(w, prices, fleet, levers.without(k)) for k in active]),
                strict=False,
            )
        )
        better = [
            k
            for k, r in trials.items()
            if r.total < plan.total - TOLERANCE_USD and r.quality >= min(goal, plan.quality)
        ]
        if not better:
            return levers, plan, trials
        best = min(better, key=lambda k: trials[k].total)
        levers, plan = levers.without(best), trials[best]


def ablation_rows(
    w: Workload,
    *,
    prices: Prices,
    fleet: str,
    levers: Levers,
    plan: Run,
    trials: dict[str, Run],
    run_map: Mapper = map,
) -> list[Ablation]:
    """Each technique flipped from the plan: switched off if used, on if left out."""
    unused = [t.key for t in techniques_for(fleet) if not getattr(levers, t.key)]
    switched_on = dict(
        zip(
            unused,
            run_map(_run, [(w, prices, fleet, _with(levers, k)) for k in unused]),
            strict=False,
        )
    )
    rows = []
    for tech in techniques_for(fleet):
        in_plan = tech.key in trials
        run = trials[tech.key] if in_plan else switched_on[tech.key]
        rows.append(
            Ablation(
                tech.key, in_plan, run.monthly, run.monthly - plan.monthly, run.quality, run.p95
            )
        )
    return rows


def _dedupe_map(run_map: Mapper, jobs: list[tuple[Workload, Prices, str, Levers]]) -> list[Run]:
    """Run each distinct job once (a range end may equal the base value)."""
    keys = [(j[0].model_dump_json(), j[2], j[3]) for j in jobs]
    unique = dict(zip(keys, jobs, strict=True))
    done = dict(zip(unique, run_map(_run, list(unique.values())), strict=True))
    return [done[k] for k in keys]


def _with(levers: Levers, key: str) -> Levers:
    return replace(levers, **{key: True})


# --- sensitivity -------------------------------------------------------------------------------


def sensitivity_rows(
    w: Workload, prices: Prices, fleet: str, levers: Levers, run_map: Mapper = map
) -> list[Sensitivity]:
    """The plan's saving with each parameter at the low and high end of its range."""
    params = [
        p
        for p in w.sensitivity
        if fleet == "self-hosted" or not p.startswith(HOSTED_ONLY_PARAMETERS)
    ]
    jobs = []
    for p in params:
        for value in w.sensitivity[p]:
            changed = with_value(w, p, value)
            jobs += [(changed, prices, fleet, Levers.baseline()), (changed, prices, fleet, levers)]
    runs = _dedupe_map(run_map, jobs)
    rows = []
    for i, p in enumerate(params):
        b_lo, p_lo, b_hi, p_hi = runs[4 * i : 4 * i + 4]
        low, high = w.sensitivity[p]
        rows.append(
            Sensitivity(
                parameter=p,
                base=get_path(w, p),
                low=low,
                high=high,
                saving_low=1 - p_lo.monthly / b_lo.monthly,
                saving_high=1 - p_hi.monthly / b_hi.monthly,
                plan_low=p_lo.monthly,
                plan_high=p_hi.monthly,
            )
        )
    return rows


# --- everything --------------------------------------------------------------------------------


def run_study(
    w: Workload,
    prices: Prices,
    fleets: Iterable[str] = FLEETS,
    *,
    sensitivity: bool = True,
    workers: int | None = None,
) -> Study:
    """Tables I-III, the bound and the sensitivity envelope for each fleet."""
    out = {}
    with mapper(workers) as run_map:
        for fleet in fleets:
            baseline = _run((w, prices, fleet, Levers.baseline()))
            levers, plan, trials = choose_plan(w, prices, fleet, run_map)
            goal = objective(w, prices, fleet)
            study = FleetStudy(fleet, goal, baseline, plan, levers)
            study.ablation = ablation_rows(
                w,
                prices=prices,
                fleet=fleet,
                levers=levers,
                plan=plan,
                trials=trials,
                run_map=run_map,
            )
            study.bound = lower_bound(w, prices, plan, levers, min(goal, plan.quality) - 1e-6)
            if sensitivity:
                study.sensitivity = sensitivity_rows(w, prices, fleet, levers, run_map)
            out[fleet] = study
    return Study(w, prices, out)
