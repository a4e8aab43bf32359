"""Pure scaling policy: replicas from load, scale to zero when idle, wake on demand.

Decisions follow the Kubernetes HPA's shape — scale up at once, scale down only to the highest
recommendation of a stabilisation window — with two additions for inference: an idle endpoint
with ``minReplicas: 0`` goes to zero after ``idleAfter`` without requests, and a wake request
brings it back to one replica immediately. Absent signals never move an endpoint down (no
scale-in, no scale-to-zero on missing data); the decision says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from frugal.api.base import parse_duration
from frugal.api.endpoint import Scaling

DEFAULT_STABILISATION = timedelta(minutes=5)


@dataclass(frozen=True)
class LoadSignals:
    """What Prometheus says about an endpoint now; None means absent (never zero)."""

    in_flight: float | None = None
    """Running plus waiting requests, summed over replicas."""
    requests_in_idle_window: float | None = None
    """Requests completed over the last ``idleAfter`` (engine and gateway together)."""
    wake_requested: bool = False
    """A request is waiting for this endpoint at zero (gateway hold, or the wake annotation)."""


@dataclass(frozen=True)
class ScaleState:
    """What the policy remembers between evaluations (kept in the endpoint's status)."""

    replicas: int
    recommendations: tuple[tuple[datetime, int], ...] = field(default_factory=tuple)
    awake_since: datetime | None = None
    """When the endpoint last left zero: a fresh engine's counters cannot prove idleness yet."""


@dataclass(frozen=True)
class ScaleDecision:
    replicas: int
    action: str
    """ScaleUp, ScaleDown, ScaleToZero, Wake or Hold."""
    reason: str
    state: ScaleState


def decide_scale(
    scaling: Scaling,
    signals: LoadSignals,
    state: ScaleState,
    now: datetime,
    stabilisation: timedelta = DEFAULT_STABILISATION,
) -> ScaleDecision:
    current = state.replicas
    lo, hi = scaling.min_replicas, scaling.max_replicas

    if current == 0:
        if signals.wake_requested or (signals.in_flight or 0) > 0:
            return _decide(state, max(1, lo), "Wake", "a request is waiting at zero replicas", now)
        if lo > 0:
            return _decide(state, lo, "ScaleUp", f"minReplicas is {lo}", now)
        return _hold(state, "scaled to zero; no request is waiting")

    if signals.in_flight is None:
        bounded = min(max(current, lo), hi)
        if bounded != current:
            return _decide(state, bounded, _verb(current, bounded), "bounds changed", now)
        return _hold(state, "load signal absent: holding replicas (fail-static)")

    idle_after = parse_duration(scaling.idle_after)
    awake_long_enough = state.awake_since is None or now - state.awake_since >= idle_after
    if (
        lo == 0
        and signals.requests_in_idle_window is not None
        and signals.requests_in_idle_window == 0
        and signals.in_flight == 0
        and awake_long_enough
    ):
        return _decide(
            state, 0, "ScaleToZero", f"no request for {scaling.idle_after} ({idle_after})", now
        )

    wanted = math.ceil(signals.in_flight / scaling.target_in_flight)
    wanted = min(max(wanted, lo, 1), hi)
    window = tuple(
        (t, r) for t, r in (*state.recommendations, (now, wanted)) if now - t <= stabilisation
    )
    kept = replace(state, recommendations=window)
    why = f"{signals.in_flight:g} requests in flight, target {scaling.target_in_flight}/replica"
    if wanted > current:
        return _decide(kept, wanted, "ScaleUp", why, now)
    stable = max(r for _, r in window)
    if stable < current:
        return _decide(kept, stable, "ScaleDown", f"{why}; stable for {stabilisation}", now)
    return ScaleDecision(current, "Hold", why, kept)


def _verb(current: int, new: int) -> str:
    return "ScaleUp" if new > current else "ScaleDown"


def _decide(
    state: ScaleState, replicas: int, action: str, reason: str, now: datetime
) -> ScaleDecision:
    recs = ((now, replicas),) if action in ("Wake", "ScaleToZero") else state.recommendations
    awake = now if state.replicas == 0 and replicas > 0 else state.awake_since
    return ScaleDecision(replicas, action, reason, ScaleState(replicas, recs, awake))


def _hold(state: ScaleState, reason: str) -> ScaleDecision:
    return ScaleDecision(state.replicas, "Hold", reason, state)
