"""Pure rerouting policy: move traffic weight between model tiers on live quality and cost.

Tiers are ordered cheapest first. Each evaluation makes at most one bounded step:
- quality below ``minQuality − hysteresis`` → move up to ``maxStep`` points from the cheapest
  tier that can give to the next more capable tier that can take (better answers);
- otherwise, when moving ``maxStep`` points one tier down would keep the predicted quality at
  or above ``minQuality + hysteresis`` → move them (cheaper answers) — unless a cost objective
  is set and already met, in which case nothing needs to move;
- a down-step after which quality fell below the bar is rolled back at once (cooldown waived).
Weights always sum to 100 and stay within each tier's [minWeight, maxWeight]; steps are spaced
by ``cooldown``; quality inside the hysteresis band moves nothing; absent signals move nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from frugal.api.base import parse_duration
from frugal.api.routing import RoutingPolicySpec


@dataclass(frozen=True)
class TierSignals:
    """Live figures of one tier; None means absent."""

    quality: float | None = None
    """Quality retention versus the reference tier (shadow sampling), 0..1."""
    cost_per_1k: float | None = None
    """US dollars per thousand requests."""


@dataclass(frozen=True)
class Step:
    """One weight move, remembered so that it can be rolled back."""

    source: str
    target: str
    points: int
    direction: str
    """down (toward cheaper) or up (toward better)."""
    at: datetime


@dataclass(frozen=True)
class RerouteState:
    weights: Mapping[str, int]
    last_change: datetime | None = None
    last_step: Step | None = None


@dataclass(frozen=True)
class RerouteDecision:
    weights: dict[str, int]
    action: str
    """Reroute, Rollback or Hold."""
    reason: str
    signals: dict[str, float]
    state: RerouteState


def spec_weights(spec: RoutingPolicySpec) -> dict[str, int]:
    return {t.name: t.weight for t in spec.tiers}


def current_weights(
    spec: RoutingPolicySpec, remembered: Mapping[str, int] | None
) -> dict[str, int]:
    """Remembered weights if they still fit the spec (same tiers, bounds, sum), else the spec's."""
    tiers = {t.name: t for t in spec.tiers}
    if (
        remembered
        and set(remembered) == set(tiers)
        and sum(remembered.values()) == 100
        and all(tiers[n].min_weight <= w <= tiers[n].max_weight for n, w in remembered.items())
    ):
        return dict(remembered)
    return spec_weights(spec)


def _traffic_weighted(
    weights: Mapping[str, int], signals: Mapping[str, TierSignals], figure: str
) -> float | None:
    """A tier figure averaged by traffic; absent if any tier carrying traffic lacks it."""
    total = 0.0
    for name, weight in weights.items():
        if weight == 0:
            continue
        value = getattr(signals.get(name, TierSignals()), figure)
        if value is None:
            return None
        total += weight * value
    return total / 100


def fleet_quality(weights: Mapping[str, int], signals: Mapping[str, TierSignals]) -> float | None:
    """Traffic-weighted quality; absent if any tier carrying traffic has no quality signal."""
    return _traffic_weighted(weights, signals, "quality")


def _fleet_cost(weights: Mapping[str, int], signals: Mapping[str, TierSignals]) -> float | None:
    return _traffic_weighted(weights, signals, "cost_per_1k")


def _move(
    order: Sequence[str], spec: RoutingPolicySpec, weights: dict[str, int], up: bool, step: int
) -> tuple[str, str, int] | None:
    """(source, target, points) of the next bounded move in one direction, or None."""
    bounds = {t.name: (t.min_weight, t.max_weight) for t in spec.tiers}
    seq = list(order) if up else list(reversed(order))
    for i, source in enumerate(seq[:-1]):
        give = weights[source] - bounds[source][0]
        if give <= 0:
            continue
        for target in seq[i + 1 :]:
            room = bounds[target][1] - weights[target]
            if room > 0:
                return source, target, min(step, give, room)
        return None
    return None


def decide_reroute(
    spec: RoutingPolicySpec,
    signals: Mapping[str, TierSignals],
    state: RerouteState,
    now: datetime,
) -> RerouteDecision:
    weights = current_weights(spec, state.weights)
    auto = spec.auto_reroute
    quality = fleet_quality(weights, signals)
    cost = _fleet_cost(weights, signals)
    seen = _seen(signals, quality, cost)

    def hold(reason: str) -> RerouteDecision:
        kept = RerouteState(weights, state.last_change, state.last_step)
        return RerouteDecision(weights, "Hold", reason, seen, kept)

    if not auto.enabled:
        weights = spec_weights(spec)
        return RerouteDecision(
            weights,
            "Hold",
            "autoReroute is off: the spec's weights apply",
            seen,
            RerouteState(weights, state.last_change, state.last_step),
        )
    objective = spec.objectives.min_quality
    if objective is None:
        return hold("no minQuality objective to steer by")
    if quality is None:
        missing = [
            n for n, w in weights.items() if w and signals.get(n, TierSignals()).quality is None
        ]
        return hold(f"quality signal absent for {', '.join(missing)}: holding weights")

    last = state.last_step
    if last and last.direction == "down" and quality < objective - auto.hysteresis:
        weights[last.source] += last.points
        weights[last.target] -= last.points
        reason = (
            f"quality {quality:.3f} fell below {objective} after moving {last.points} points "
            f"{last.source}→{last.target}; moved them back"
        )
        return _changed(weights, "Rollback", reason, seen, now, step=None)

    if state.last_change and now - state.last_change < parse_duration(auto.cooldown):
        return hold(f"cooldown {auto.cooldown} since the last change")
    if quality < objective - auto.hysteresis:
        return _step_up(spec, weights, quality, seen=seen, now=now, hold=hold)
    cap = spec.objectives.max_cost_per_1k_requests
    if cap is not None and cost is not None and cost <= cap:
        return hold(f"quality {quality:.3f} and cost ${cost:.4f}/1k meet the objectives")
    return _step_down(spec, weights, signals, quality, seen=seen, now=now, hold=hold)


Hold = Callable[[str], RerouteDecision]


def _step_up(
    spec: RoutingPolicySpec,
    weights: dict[str, int],
    quality: float,
    *,
    seen: dict[str, float],
    now: datetime,
    hold: Hold,
) -> RerouteDecision:
    """Quality is under the bar: give the next more capable tier more traffic."""
    objective = spec.objectives.min_quality
    order = [t.name for t in spec.tiers]
    move = _move(order, spec, weights, up=True, step=spec.auto_reroute.max_step)
    if move is None:
        return hold(f"quality {quality:.3f} below {objective} but no tier can take more")
    source, target, points = move
    weights[source] -= points
    weights[target] += points
    reason = f"quality {quality:.3f} below {objective}: moved {points} points {source}→{target}"
    step = Step(source, target, points, "up", now)
    return _changed(weights, "Reroute", reason, seen, now, step=step)


def _step_down(
    spec: RoutingPolicySpec,
    weights: dict[str, int],
    signals: Mapping[str, TierSignals],
    quality: float,
    *,
    seen: dict[str, float],
    now: datetime,
    hold: Hold,
) -> RerouteDecision:
    """Quality has room: move traffic one tier cheaper if the prediction stays over the bar."""
    objective = spec.objectives.min_quality or 0.0
    band = spec.auto_reroute.hysteresis
    order = [t.name for t in spec.tiers]
    move = _move(order, spec, weights, up=False, step=spec.auto_reroute.max_step)
    if move is None:
        return hold(f"quality {quality:.3f} holds; no cheaper tier can take more")
    source, target, points = move
    q_source = signals.get(source, TierSignals()).quality
    q_target = signals.get(target, TierSignals()).quality
    if q_target is None or q_source is None:
        return hold(f"quality of {target} unknown: not moving traffic to it")
    predicted = quality + points * (q_target - q_source) / 100
    if predicted < objective + band:
        return hold(
            f"quality {quality:.3f}; moving {points} points {source}→{target} would give "
            f"{predicted:.3f}, under {objective}+{band}"
        )
    weights[source] -= points
    weights[target] += points
    reason = (
        f"quality {quality:.3f} has room over {objective}: moved {points} points "
        f"{source}→{target} (predicted {predicted:.3f})"
    )
    step = Step(source, target, points, "down", now)
    return _changed(weights, "Reroute", reason, seen, now, step=step)


def _seen(
    signals: Mapping[str, TierSignals], quality: float | None, cost: float | None
) -> dict[str, float]:
    """The signal values behind a decision, flattened for the status."""
    seen = {f"quality.{n}": s.quality for n, s in signals.items() if s.quality is not None}
    seen |= {f"costPer1k.{n}": s.cost_per_1k for n, s in signals.items() if s.cost_per_1k}
    if quality is not None:
        seen["quality"] = quality
    if cost is not None:
        seen["costPer1k"] = cost
    return seen


def _changed(
    weights: dict[str, int],
    action: str,
    reason: str,
    seen: dict[str, float],
    now: datetime,
    *,
    step: Step | None,
) -> RerouteDecision:
    assert sum(weights.values()) == 100
    return RerouteDecision(weights, action, reason, seen, RerouteState(dict(weights), now, step))
