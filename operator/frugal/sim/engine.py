"""Replay a workload through one fleet, step by simulated step, with frugal's own decisions.

Each step (an hour by default) the workload's arrivals are split by class, answered from the
cache or routed to tiers by the RoutingPolicy's weights; self-hosted tiers are sized by
``policy.scale.decide_scale``, placed by ``placement.plan.plan_fleet`` (reserved → spot →
on-demand, with ``policy.spot.decide_spot_share`` lowering the spot share after seeded
interruptions) and priced by ``cost.model.endpoint_hourly_usd``; at the end of the step the
tiers' quality and cost feed ``policy.reroute.decide_reroute``, which sets the next step's
weights. Flows within a step are expected values (a fluid model); randomness — arrivals, idle
gaps, spot reclaims — comes from draws fixed by the seed and shared by every variant of a
workload (common random numbers), so an ablation differs from the plan only by its technique.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from frugal.api.base import CapacityType, parse_duration
from frugal.cost.model import endpoint_hourly_usd
from frugal.placement.plan import EndpointPlan, EndpointWish, initial_replicas, plan_fleet
from frugal.placement.split import spot_share
from frugal.policy.reroute import RerouteState, TierSignals, decide_reroute, spec_weights
from frugal.policy.scale import LoadSignals, ScaleState, decide_scale
from frugal.policy.spot import decide_spot_share
from frugal.sim.fleets import Fleet, build_fleet
from frugal.sim.levers import Levers
from frugal.sim.prices import Prices
from frugal.sim.workload import Workload

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
"""Simulated time starts here (a Wednesday; only hours of day matter)."""
MAX_TIERS = 8
COMPONENTS = ("input", "output", "retrieval", "infrastructure")
HOURS_PER_MONTH = 30 * 24


@dataclass(frozen=True)
class Draws:
    """The random part of a workload, fixed by its seed: shared by every variant."""

    arrivals: np.ndarray
    """Queries arriving in each step (Poisson around the diurnal mean)."""
    warm: np.ndarray
    """Fraction of recurring questions already in the cache at each step (0..1)."""
    idle: np.ndarray
    """Uniform draws per step and tier: did an idle gap of ``idleAfter`` occur?"""
    reclaim: np.ndarray
    """Uniform draws per step and tier: how many spot replicas were reclaimed?"""


def step_shares(w: Workload) -> np.ndarray:
    """Share of a day's queries arriving in each step of a day."""
    per_minute = np.repeat(np.array(w.volume.hourly_shares()) / 60, 60)
    return per_minute.reshape(-1, w.volume.step_minutes).sum(axis=1)


def make_draws(w: Workload) -> Draws:
    rng = np.random.default_rng(w.seed)
    steps_per_day = 1440 // w.volume.step_minutes
    n = w.volume.days * steps_per_day
    mean = np.tile(step_shares(w), w.volume.days) * w.volume.queries_per_day
    arrivals = rng.poisson(mean).astype(float)
    idle = rng.random((n, MAX_TIERS))
    reclaim = rng.random((n, MAX_TIERS))
    shares = w.class_shares()
    cacheable = sum(shares[c.name] for c in w.classes if c.cacheable)
    window = max(1, round(w.cache.ttl_hours * 60 / w.volume.step_minutes))
    seen = np.convolve(arrivals * cacheable, np.ones(window))[:n] - arrivals * cacheable / 2
    warm = 1 - np.exp(-np.maximum(seen, 0) / w.cache.topics)
    return Draws(arrivals, warm, idle, reclaim)


@dataclass
class Run:
    """What one fleet cost and delivered over the simulated period."""

    fleet: str
    levers: tuple[str, ...]
    days: int
    requests: float = 0.0
    exact_hits: float = 0.0
    semantic_hits: float = 0.0
    false_hits: float = 0.0
    cost: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0.0))
    infra: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    quality_sum: float = 0.0
    latency_groups: dict[float, float] = field(default_factory=lambda: defaultdict(float))
    class_tier: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    gpu: dict[str, str] = field(default_factory=dict)
    gpu_hours: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    step_cost: list[float] = field(default_factory=list)
    replicas: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    weights: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    events: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    p50: float = 0.0
    p95: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.cost.values())

    @property
    def monthly(self) -> float:
        """Total scaled to frugal's 30-day month."""
        return self.total * 30 / self.days

    @property
    def quality(self) -> float:
        """Mean quality retention over all requests, cache hits included."""
        return self.quality_sum / self.requests if self.requests else 1.0

    @property
    def hit_rate(self) -> float:
        return (self.exact_hits + self.semantic_hits) / self.requests if self.requests else 0.0


def _route(
    fleet: Fleet, weights: dict[str, int], classes: list[str]
) -> dict[str, dict[str, float]]:
    """Class → tier → share of that class's misses, as the gateway splits them.

    A class goes to the tiers whose ``match`` lists it (or lists nothing), in proportion to
    their weights; when every eligible tier has weight 0 it goes to the most capable of them.
    """
    out = {}
    for cls in classes:
        eligible = [t for t in fleet.routing.tiers if not t.match or cls in t.match]
        if not eligible:
            eligible = [fleet.routing.tiers[-1]]
        total = sum(weights[t.name] for t in eligible)
        if total == 0:
            out[cls] = {eligible[-1].name: 1.0}
        else:
            out[cls] = {t.name: weights[t.name] / total for t in eligible if weights[t.name]}
    return out


def _poisson_count(u: float, mean: float) -> int:
    """Inverse-CDF Poisson draw from one uniform (so a variant's draws never shift)."""
    if mean <= 0:
        return 0
    k, p = 0, math.exp(-mean)
    cdf = p
    while u > cdf and k < 50:
        k += 1
        p *= mean / k
        cdf += p
    return k


def mixture_quantiles(
    groups: dict[float, float], sigma: float, qs: tuple[float, ...]
) -> list[float]:
    """Quantiles of a mixture of log-normals (one per latency group, weighted by requests)."""
    from scipy.special import ndtr

    items = [(m, wt) for m, wt in groups.items() if wt > 0 and m > 0]
    if not items:
        return [0.0 for _ in qs]
    medians = np.array([m for m, _ in items])
    weights = np.array([wt for _, wt in items])
    weights /= weights.sum()
    s = max(sigma, 1e-6)
    grid = np.geomspace(medians.min() * math.exp(-4 * s), medians.max() * math.exp(4 * s), 4000)
    cdf = (ndtr((np.log(grid)[:, None] - np.log(medians)[None, :]) / s) * weights).sum(axis=1)
    return [float(grid[min(np.searchsorted(cdf, q), len(grid) - 1)]) for q in qs]


@dataclass(frozen=True)
class _Compiled:
    """A routing split with its per-(class, tier) constants."""

    pairs: tuple[tuple[str, str, float, Any, float], ...]
    """(class, tier, share of the class, unit, rounded latency)."""
    class_quality: dict[str, float]


class _Placement:
    """plan_fleet, memoised on what changes between steps (replicas and spot limits)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.memo: dict[tuple, dict[str, EndpointPlan]] = {}

    def plan(
        self, replicas: dict[str, int], limits: dict[str, float | None]
    ) -> dict[str, EndpointPlan]:
        key = tuple((t, replicas[t], limits[t]) for t in self.fleet.endpoints)
        if key not in self.memo:
            wishes = [
                EndpointWish(t, spec, replicas[t], limits[t])
                for t, spec in self.fleet.endpoints.items()
            ]
            self.memo[key] = plan_fleet(wishes, self.fleet.settings)
        return self.memo[key]


def simulate(
    w: Workload, prices: Prices, fleet_name: str, levers: Levers, draws: Draws | None = None
) -> Run:
    """One fleet with the given techniques over the workload's period."""
    fleet = build_fleet(w, prices, fleet_name, levers)
    draws = draws or make_draws(w)
    return _Simulation(w, fleet, draws).run()


class _Simulation:
    def __init__(self, w: Workload, fleet: Fleet, draws: Draws) -> None:
        self.w = w
        self.fleet = fleet
        self.draws = draws
        self.classes = [c.name for c in w.classes]
        self.shares = w.class_shares()
        self.cacheable = {c.name: c.cacheable for c in w.classes}
        self.step = timedelta(minutes=w.volume.step_minutes)
        self.step_s = self.step.total_seconds()
        self.step_h = self.step_s / 3600
        self.result = Run(fleet.name, fleet.levers.on(), w.volume.days)
        self.placement = _Placement(fleet)
        self.catalog = fleet.settings.catalog()
        self.idle_after = {
            t: parse_duration(spec.scaling.idle_after).total_seconds()
            for t, spec in fleet.endpoints.items()
        }
        self.spec_share = {t: spot_share(spec.capacity) for t, spec in fleet.endpoints.items()}
        self.hourly: dict[tuple, float] = {}
        self.class_consts = [
            (
                c.name,
                self.shares[c.name],
                c.cacheable and fleet.levers.cache,
                fleet.retrieval_per_miss[c.name],
            )
            for c in w.classes
        ]
        used = {spec.capacity.reservation for spec in fleet.endpoints.values()}
        # A prepaid pool is charged whether used or not, but only if some tier draws on it.
        self.pools = [p for p in fleet.settings.reservations if p.name in used]

    # --- per step: demand --------------------------------------------------------------------

    def _demand(self, s: int) -> tuple[dict[str, float], dict[str, float]]:
        """Model calls per class (cache misses), and the correct cache hits per class."""
        w, r = self.w, self.result
        n = self.draws.arrivals[s]
        warm = self.draws.warm[s]
        exact_rate = w.cache.exact_repeat_rate * warm
        para_rate = w.cache.paraphrase_rate * warm
        calls: dict[str, float] = {}
        hits: dict[str, float] = {}
        retrieval = 0.0
        for cls, share, cached, per_miss in self.class_consts:
            n_c = n * share
            exact = n_c * exact_rate if cached else 0.0
            sem = (n_c - exact) * para_rate if cached else 0.0
            false = sem * w.cache.false_hit_share
            r.exact_hits += exact
            r.semantic_hits += sem
            r.false_hits += false
            hits[cls] = exact + sem - false
            calls[cls] = n_c - exact - sem
            retrieval += calls[cls] * per_miss
            if exact + sem:
                r.latency_groups[w.latency.cache_hit_seconds] += exact + sem
        r.cost["retrieval"] += retrieval
        r.requests += n
        return calls, hits

    # --- per step: self-hosted capacity ------------------------------------------------------

    def _scale(
        self, s: int, now: datetime, load: dict[str, tuple[float, float]]
    ) -> dict[str, float]:
        """Decide replicas per tier; returns the fraction of the step each tier ran."""
        ran = {}
        for i, (tier, spec) in enumerate(self.fleet.endpoints.items()):
            misses, in_flight = load.get(tier, (0.0, 0.0))
            state = self.scale_state[tier]
            if not self.fleet.levers.autoscaling:
                self.replicas[tier] = self.static[tier]
                ran[tier] = 1.0
                continue
            rate = misses / self.step_s
            tau = self.idle_after[tier]
            idle = self.draws.idle[s, i] < math.exp(-rate * tau)
            signals = LoadSignals(
                in_flight=0.0 if idle else in_flight,
                requests_in_idle_window=0.0 if idle else max(1.0, rate * tau),
            )
            decision = decide_scale(spec.scaling, signals, state, now)
            self._count(decision.action)
            fraction = 1.0
            if (state.replicas == 0 or decision.replicas == 0) and misses > 0:
                # The gateway holds the first request and wakes the tier, which then runs from
                # the first arrival on: E[first arrival] = (1 - e^-n)/n of a step.
                if decision.replicas == 0:
                    held = LoadSignals(
                        in_flight=0.0, requests_in_idle_window=0.0, wake_requested=True
                    )
                    decision = decide_scale(spec.scaling, held, decision.state, now)
                    self._count(decision.action)
                fraction = 1 - (1 - math.exp(-misses)) / misses
                self._cold_start(tier, misses, rate)
            self.scale_state[tier] = decision.state
            self.replicas[tier] = decision.replicas
            ran[tier] = fraction if decision.replicas else 0.0
        return ran

    def _count(self, action: str) -> None:
        if action != "Hold":
            self.result.events[action] += 1

    def _cold_start(self, tier: str, misses: float, rate: float) -> None:
        """Requests that arrive while a woken tier loads its weights wait for it."""
        cold = self.fleet.cold_start_s[tier]
        delayed = min(misses, 1 + rate * cold)
        self.delayed[tier] = (delayed, cold / 2)

    def _place_and_cost(
        self, s: int, ran: dict[str, float], in_flight: dict[str, float]
    ) -> dict[str, float]:
        """Split replicas over capacity types, draw spot reclaims, price the step per tier."""
        r, lv = self.result, self.fleet.levers
        plans = self.placement.plan(self.replicas, self.spot_limit)
        tier_cost = {}
        now = EPOCH + s * self.step
        for i, tier in enumerate(self.fleet.endpoints):
            plan = plans[tier]
            if plan.fit.gpu is None:
                raise ValueError(f"{tier}: {plan.fit.reason}")
            gpu, count = plan.fit.gpu, plan.fit.count
            r.gpu[tier] = f"{gpu.name}×{count}"
            split = plan.split
            frac = ran[tier]
            rented = {CapacityType.SPOT: split.spot, CapacityType.ON_DEMAND: split.on_demand}
            key = (gpu.name, count, split.spot, split.on_demand)
            if key not in self.hourly:
                self.hourly[key] = endpoint_hourly_usd(rented, count, gpu)
            usd = self.hourly[key] * self.step_h * frac
            r.infra["spot GPUs"] += split.spot * count * gpu.spot * self.step_h * frac
            r.infra["on-demand GPUs"] += (
                split.on_demand * count * gpu.on_demand * self.step_h * frac
            )
            for cap, n in ((CapacityType.RESERVED, split.reserved), *rented.items()):
                r.gpu_hours[cap.value] += n * count * self.step_h * frac
            r.cost["infrastructure"] += usd
            # A reserved replica's share of the prepaid pool, for the tier's cost signal.
            tier_cost[tier] = usd + split.reserved * count * gpu.reserved * self.step_h
            r.replicas[tier].append(self.replicas[tier])
            # Spot reclaims: a Poisson number per step, from the tier's fixed uniform draw.
            mean = split.spot * self.w.spot.interruptions_per_replica_month / HOURS_PER_MONTH
            reclaimed = _poisson_count(self.draws.reclaim[s, i], mean * self.step_h * frac)
            if reclaimed:
                r.events["SpotInterruption"] += reclaimed
                self.interruptions[tier].extend([now] * reclaimed)
                cut = min(
                    in_flight.get(tier, 0.0),
                    reclaimed * in_flight.get(tier, 0.0) / max(split.placed, 1),
                )
                self.retried[tier] = cut
            # With no reclaim in the last day and no lowered limit the decision is Hold.
            if lv.spot and (self.interruptions[tier] or self.spot_limit[tier] is not None):
                day_ago = now - timedelta(days=1)
                self.interruptions[tier] = [t for t in self.interruptions[tier] if t > day_ago]
                decision = decide_spot_share(
                    self.interruptions[tier],
                    self.spot_limit[tier],
                    self.spec_share[tier],
                    now,
                    last_change=self.spot_changed[tier],
                )
                if decision.limit != self.spot_limit[tier]:
                    self._count(decision.action)
                    self.spot_limit[tier] = decision.limit
                    self.spot_changed[tier] = now
        for pool in self.pools:
            prepaid = pool.gpus * self.catalog[pool.gpu_type].reserved * self.step_h
            r.cost["infrastructure"] += prepaid
            r.infra["reserved GPUs"] += prepaid
        return tier_cost

    def _static_replicas(self) -> dict[str, int]:
        """Without autoscaling: replicas for the peak step under the starting weights, always on."""
        route = _route(self.fleet, spec_weights(self.fleet.routing), self.classes)
        c = self.w.cache
        peak = dict.fromkeys(self.fleet.endpoints, 0.0)
        for s, n in enumerate(self.draws.arrivals):
            load: dict[str, float] = defaultdict(float)
            for cls in self.classes:
                hit = 0.0
                if self.fleet.levers.cache and self.cacheable[cls]:
                    hit = c.exact_repeat_rate + (1 - c.exact_repeat_rate) * c.paraphrase_rate
                    hit *= self.draws.warm[s]
                for tier, share in route[cls].items():
                    rate = n * self.shares[cls] * (1 - hit) * share / self.step_s
                    load[tier] += rate * self.fleet.units[cls, tier].latency_s
            for tier, value in load.items():
                peak[tier] = max(peak[tier], value)
        return {
            tier: min(
                max(math.ceil(peak[tier] / spec.scaling.target_in_flight), 1),
                spec.scaling.max_replicas,
            )
            for tier, spec in self.fleet.endpoints.items()
        }

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> Run:
        fleet, r = self.fleet, self.result
        weights = spec_weights(fleet.routing)
        reroute = RerouteState(weights)
        self.scale_state = {
            t: ScaleState(initial_replicas(spec)) for t, spec in fleet.endpoints.items()
        }
        self.replicas = {t: st.replicas for t, st in self.scale_state.items()}
        self.spot_limit: dict[str, float | None] = dict.fromkeys(fleet.endpoints)
        self.spot_changed: dict[str, datetime | None] = dict.fromkeys(fleet.endpoints)
        self.interruptions: dict[str, list[datetime]] = {t: [] for t in fleet.endpoints}
        if fleet.endpoints and not fleet.levers.autoscaling:
            self.static = self._static_replicas()
        routes: dict[tuple, _Compiled] = {}
        # With autoReroute off, or a single tier, decide_reroute can only return the spec's
        # weights: skip the call.
        rerouting = fleet.routing.auto_reroute.enabled and len(fleet.tiers) > 1
        for s in range(len(self.draws.arrivals)):
            now = EPOCH + s * self.step
            key = tuple(weights.values())
            if key not in routes:
                routes[key] = self._compile(_route(fleet, weights, self.classes))
            signals = self._step(s, now, routes[key])
            if rerouting:
                decision = decide_reroute(fleet.routing, signals, reroute, now)
                if decision.action != "Hold":
                    r.events[decision.action] += 1
                reroute, weights = decision.state, decision.weights
            for t in fleet.tiers:
                r.weights[t].append(weights[t])
        r.p50, r.p95 = mixture_quantiles(r.latency_groups, self.w.latency.sigma, (0.5, 0.95))
        return r

    def _compile(self, route: dict[str, dict[str, float]]) -> _Compiled:
        """Per-route constants, so that a step is a few multiplications."""
        pairs = []
        quality = dict.fromkeys(self.classes, 0.0)
        for cls in self.classes:
            for tier, share in route[cls].items():
                unit = self.fleet.units[cls, tier]
                pairs.append((cls, tier, share, unit, round(unit.latency_s, 3)))
                quality[cls] += share * unit.quality
        return _Compiled(tuple(pairs), quality)

    def _step(self, s: int, now: datetime, route: _Compiled) -> dict[str, TierSignals]:
        """One step: serve, cost and size; returns the tiers' signals for rerouting."""
        fleet, r = self.fleet, self.result
        before = sum(r.cost.values())
        calls, hits = self._demand(s)
        tier_miss = dict.fromkeys(fleet.tiers, 0.0)
        tier_quality = dict.fromkeys(fleet.tiers, 0.0)
        tier_usd = dict.fromkeys(fleet.tiers, 0.0)
        in_flight = dict.fromkeys(fleet.tiers, 0.0)
        misses = []
        usd_in = usd_out = quality = 0.0
        for cls, tier, share, unit, _ in route.pairs:
            m = calls[cls] * share
            misses.append(m)
            r.class_tier[cls, tier] += m
            usd_in += m * unit.input_usd
            usd_out += m * unit.output_usd
            quality += m * unit.quality
            tier_miss[tier] += m
            tier_quality[tier] += m * unit.quality
            tier_usd[tier] += m * (unit.input_usd + unit.output_usd)
            in_flight[tier] += m * unit.latency_s / self.step_s
        for cls, correct in hits.items():  # a correct hit is as good as the answer it reuses
            quality += correct * route.class_quality[cls]
        r.cost["input"] += usd_in
        r.cost["output"] += usd_out
        r.quality_sum += quality
        for name, hourly in fleet.fixed_hourly.items():
            r.infra[name] += hourly * self.step_h
            r.cost["infrastructure"] += hourly * self.step_h
        self.delayed: dict[str, tuple[float, float]] = {}
        self.retried: dict[str, float] = {}
        if fleet.endpoints:
            load = {t: (tier_miss[t], in_flight[t]) for t in fleet.endpoints}
            ran = self._scale(s, now, load)
            tier_usd.update(self._place_and_cost(s, ran, in_flight))
        self._latency(route, misses, tier_miss)
        r.step_cost.append(sum(r.cost.values()) - before)
        return {
            t: TierSignals(
                quality=tier_quality[t] / tier_miss[t] if tier_miss[t] > 0 else None,
                cost_per_1k=1000 * tier_usd[t] / tier_miss[t] if tier_miss[t] > 0 else None,
            )
            for t in fleet.tiers
        }

    def _latency(self, route: _Compiled, misses: list[float], tier_miss: dict[str, float]) -> None:
        """Add this step's requests to the latency mixture (cold starts and retries included)."""
        groups = self.result.latency_groups
        for (_, tier, _, unit, key), m in zip(route.pairs, misses, strict=True):
            slowed = []
            if tier in self.delayed:
                count, wait = self.delayed[tier]
                slowed.append((wait, count))
            if tier in self.retried:
                slowed.append((self.w.spot.retry_seconds, self.retried[tier]))
            total = tier_miss[tier]
            slow = 0.0
            for extra, count in slowed:
                if count and total:
                    part = m * min(1.0, count / total)
                    groups[round(unit.latency_s + extra, 3)] += part
                    slow += part
            groups[key] += m - slow
