"""Shell: the control loops — autoscaling, scale to zero and wake, live cost, rerouting.

Each loop is a periodic sweep (sweeps.py) that reads signals, calls a pure policy and records
the decision with its reason in status and, when something changed, as an Event. What must
survive a restart (the decided replica count, the effective weights, the last step) lives in
status; what only smooths decisions (the scale-down stabilisation window) lives in memory, so a
restart at worst scales down a little later. Nothing is written while nothing changes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field, replace
from typing import Any

import kopf
from pydantic import ValidationError

from frugal import kube
from frugal.api.base import GROUP, VERSION, CapacityType
from frugal.api.cache import CachePolicySpec
from frugal.api.endpoint import InferenceEndpointSpec
from frugal.api.routing import RoutingPolicySpec
from frugal.controller import endpoints, events, sweeps
from frugal.controller.metrics import WRITES
from frugal.controller.status import condition
from frugal.cost.model import budget_status, cost_per_million_tokens
from frugal.placement.split import spot_share
from frugal.policy.reroute import RerouteState, Step, decide_reroute
from frugal.policy.scale import LoadSignals, ScaleState, decide_scale
from frugal.policy.spot import decide_spot_share
from frugal.signals.prometheus import PrometheusError, Signals

WAKE_ANNOTATION = "frugal.dev/wake"
LIVE_FIGURES = ("tokensPerSecond", "perMillionTokensUSD", "budgetBurn")
LIVE_COST_TOLERANCE = 0.05
"""Live cost figures are rewritten only when they move by more than this (relative): at three
significant digits, the jitter of rate() over scrapes rewrote every endpoint's status on every
scale tick — 67 writes/s for a thousand steady endpoints."""
LIVE_COST_REFRESH_SECONDS = 60.0
"""Live cost figures are rewritten at most this often. Each rewrite is a status write and a new
gateway configuration (the gateway prices tokens from them) for every gateway replica to load;
a low-traffic endpoint's rate() moves by more than the tolerance on most ticks. Once a minute,
live cost alone is at most 17 writes/s for 1,000 endpoints; in the scale benchmark's reaction
window the endpoint status writes fell from 2,124 to 1,003 and the gateway ConfigMaps from 17 to
10 (BENCHMARKS.md, "Fleet scale"). The BudgetExceeded condition is still evaluated every tick."""
FRESH_FOR = 0.5
"""A fleet query's result serves the calls of one pass for this fraction of the loop's tick.
The calls of a pass share it; the next pass, a tick later, always queries again. Cached for a
whole tick, a result a few milliseconds short of its age at the next pass was reused, so
decisions read data up to two ticks old (scale to zero 25 s beyond ``idleAfter``)."""
log = logging.getLogger("frugal.loops")


@dataclass
class LoopMemory:
    """Per-process smoothing state; losing it on restart only delays a scale-down."""

    recommendations: dict[str, tuple] = field(default_factory=dict)
    last_reroute_eval: dict[str, dt.datetime] = field(default_factory=dict)
    spot_unschedulable_since: dict[str, dt.datetime] = field(default_factory=dict)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(t: dt.datetime | None) -> str | None:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _patch_status(ctx: endpoints.Context, kind: str, ns: str, name: str, patch: dict) -> None:
    path = kube.resource_path(f"{GROUP}/{VERSION}", kind, ns, name) + "/status"
    WRITES.labels("patch-status", kind).inc()
    await ctx.run(
        kube.request,
        ctx.api,
        "PATCH",
        path,
        body={"status": patch},
        content_type="application/merge-patch+json",
    )


async def _patch_endpoint_status(  # noqa: PLR0917 - one call site
    ctx: endpoints.Context,
    ns: str,
    name: str,
    seen: dict[str, Any],
    patch: dict[str, Any],
    index: Any,
) -> bool:
    """Patch an endpoint's status rebased on the newest copy known, under the status lock.

    ``patch`` was computed from the status kopf last delivered (``seen``), which lags behind
    the API server under load; sent as it is, its conditions list (a merge patch replaces
    lists) undid the reconciler's latest conditions, which the reconciler then wrote back: a
    write storm. Rebased and preconditioned on the copy's resourceVersion, it cannot.
    """
    written = await ctx.statuses.update(
        ctx,
        ns,
        name,
        endpoints.watched(index, f"{ns}/{name}"),
        lambda current: rebase_patch(seen, patch, dict(current.status)),
    )
    return written is not None


def rebase_patch(
    seen: dict[str, Any], patch: dict[str, Any], live: dict[str, Any]
) -> dict[str, Any]:
    """What to send, given the status ``patch`` was computed from (``seen``) and the status as
    it is now (``live``): only what the patch changes relative to ``seen``, applied to ``live``.

    Objects merge key by key as in a merge patch (None deletes a key, an absent key stays);
    conditions merge by type; a patch that changes nothing in ``live`` becomes empty.
    """
    out: dict[str, Any] = {}
    for key, value in patch.items():
        if key == "conditions":
            before = {c["type"]: c for c in seen.get("conditions") or []}
            changed = {c["type"]: c for c in value if before.get(c["type"]) != c}
            current = list(live.get("conditions") or [])
            merged = [changed.pop(c["type"], c) for c in current] + list(changed.values())
            if merged != current:
                out[key] = merged
        elif isinstance(value, dict):
            old = seen.get(key) if isinstance(seen.get(key), dict) else {}
            now = live.get(key) if isinstance(live.get(key), dict) else {}
            delta = {k: v for k, v in value.items() if old.get(k) != v}
            delta = {k: v for k, v in delta.items() if now.get(k) != v}
            if delta:
                out[key] = delta
        elif live.get(key) != value:
            out[key] = value
    return out


def _signals_condition(
    previous: dict[str, Any], error: str | None, now: str, generation: int | None
) -> dict[str, Any]:
    ok = error is None
    return condition(
        "SignalsAvailable",
        ok,
        "PrometheusAnswered" if ok else "SignalsAbsent",
        "live signals available" if ok else f"{error}; holding the last decisions",
        previous=list(previous.get("conditions") or []),
        now=now,
        generation=generation,
    )


def _merge_condition(previous: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    others = [c for c in previous.get("conditions") or [] if c.get("type") != new["type"]]
    return [*others, new]


# --- endpoints: autoscaling, scale to zero, wake ----------------------------------------------


async def scale_endpoint(
    *,
    body: kopf.Body,
    name: str,
    namespace: str,
    spec: Any,
    status: Any,
    meta: Any,
    memo: Any,
    **kwargs: Any,
) -> None:
    """Autoscale one endpoint, and refresh its live cost and budget conditions."""
    ctx: endpoints.Context = memo.ctx
    memory: LoopMemory = memo.loops
    try:
        parsed = InferenceEndpointSpec.model_validate(dict(spec))
    except ValidationError:
        return  # the reconciler reports it
    key = f"{namespace}/{name}"
    now = _now()
    previous = dict(status)
    if "placement" not in previous:
        # Not yet reconciled: nothing to scale, and a status patch now would only queue
        # ahead of the reconciles of a fleet being created (a thousand at once).
        return
    auto = dict(previous.get("autoscaler") or {})
    current = endpoints.wanted_replicas(parsed, previous)
    state = ScaleState(
        current, memory.recommendations.get(key, ()), _parse_time(auto.get("awakeSince"))
    )
    load, tps, error = await _read_signals(ctx, memo.signals, name, namespace, parsed)
    if _wake_requested(meta, auto, current):
        load = replace(load, wake_requested=True)
    stabilisation = dt.timedelta(seconds=ctx.settings.loops.scale_down_stabilisation_seconds)
    decision = decide_scale(parsed.scaling, load, state, now, stabilisation)
    memory.recommendations[key] = decision.state.recommendations

    new_auto: dict[str, Any] = {
        "replicas": decision.replicas,
        "awakeSince": _iso(decision.state.awake_since),
        "zeroSince": (
            _iso(now) if decision.replicas == 0 and current != 0 else auto.get("zeroSince")
        ),
    }
    patch: dict[str, Any] = {}
    if {k: auto.get(k) for k in new_auto} != new_auto:
        patch["autoscaler"] = new_auto
    if decision.action != "Hold":
        seen = {"inFlight": load.in_flight, "requestsInIdleWindow": load.requests_in_idle_window}
        if error is None:
            with contextlib.suppress(PrometheusError):
                seen |= await ctx.run(
                    memo.signals.snapshot,
                    name=name,
                    namespace=namespace,
                    served_name=parsed.model.served_name,
                )
        patch["lastDecision"] = {
            "time": _iso(now),
            "action": decision.action,
            "reason": decision.reason,
            "signals": {k: v for k, v in seen.items() if v is not None},
        }
        events.normal(body, decision.action, decision.reason)
        log.info("%s: %s to %d: %s", key, decision.action, decision.replicas, decision.reason)
    configured = memo.signals.client is not None
    patch |= _health_patch(
        body, parsed, previous, error, tps, now, meta.get("generation"), configured=configured
    )
    spot = _spot_decision(ctx, memory, key, parsed, previous, kwargs.get("pods_index"), now)
    if spot is not None:
        patch["spot"] = spot
    if not patch:
        return
    await _patch_endpoint_status(
        ctx, namespace, name, previous, patch, kwargs.get("endpoints_index")
    )
    if spot is not None:
        events.normal(
            body,
            "LowerSpotShare"
            if spot.get("shareLimit") is not None and spot["shareLimit"] < 1
            else "RestoreSpotShare",
            spot["reason"],
        )
    if decision.replicas != current or spot is not None:
        updated = {**previous, "autoscaler": new_auto, **({"spot": spot} if spot else {})}
        await endpoints.reconcile_endpoint(
            body=body,
            name=name,
            namespace=namespace,
            spec=spec,
            status=updated,
            memo=memo,
            meta=meta,
            **kwargs,
        )


def _spot_decision(  # noqa: PLR0917 - one call site
    ctx: endpoints.Context,
    memory: LoopMemory,
    key: str,
    spec: InferenceEndpointSpec,
    previous: dict[str, Any],
    pods: Any,
    now: dt.datetime,
) -> dict[str, Any] | None:
    """The new status.spot when the spot share limit changes, else None."""
    if CapacityType.SPOT not in spec.capacity.preference:
        return None
    stuck = any(
        ct == CapacityType.SPOT.value and unsched
        for ct, unsched in (pods.get(key, []) if pods is not None and key in pods else [])
    )
    if stuck:
        since = memory.spot_unschedulable_since.setdefault(key, now)
    else:
        memory.spot_unschedulable_since.pop(key, None)
        since = None
    grace = dt.timedelta(seconds=ctx.settings.loops.spot_unschedulable_grace_seconds)
    unavailable = now - since if since is not None and now - since >= grace else None
    state = dict(previous.get("spot") or {})
    hits = [t for t in (_parse_time(x) for x in state.get("interruptions", [])) if t]
    decision = decide_spot_share(
        hits,
        state.get("shareLimit"),
        spot_share(spec.capacity),
        now,
        last_change=_parse_time(state.get("lastChange")),
        unavailable_for=unavailable,
        quiet=dt.timedelta(seconds=ctx.settings.loops.spot_quiet_seconds),
    )
    if decision.action == "Hold":
        return None
    if decision.action == "LowerSpotShare":
        hits = [*hits, now][-10:]
    memory.spot_unschedulable_since.pop(key, None)
    return {
        "shareLimit": decision.limit,
        "interruptions": [_iso(t) for t in hits],
        "lastChange": _iso(now),
        "lastAction": decision.action,
        "reason": decision.reason,
    }


async def _read_signals(
    ctx: endpoints.Context, signals: Signals, name: str, namespace: str, spec: InferenceEndpointSpec
) -> tuple[LoadSignals, float | None, str | None]:
    """(load, tokens/s, error): on any Prometheus failure everything is absent.

    Values come from fleet queries shared by every endpoint for one scale tick.
    """
    tick = ctx.settings.loops.scale_interval_seconds
    try:
        load = await ctx.run(
            signals.load,
            name=name,
            namespace=namespace,
            served_name=spec.model.served_name,
            idle_after=spec.scaling.idle_after,
            max_age=tick * FRESH_FOR,
        )
        tps = await ctx.run(
            signals.tokens_per_second,
            name=name,
            namespace=namespace,
            served_name=spec.model.served_name,
            max_age=tick * FRESH_FOR,
        )
    except PrometheusError as err:
        return LoadSignals(), None, str(err)
    return load, tps, None


def _wake_requested(meta: Any, auto: dict[str, Any], current: int) -> bool:
    """The wake annotation, set after the endpoint went to zero, asks for a replica."""
    wake_at = _parse_time((meta.get("annotations") or {}).get(WAKE_ANNOTATION))
    zero_since = _parse_time(auto.get("zeroSince"))
    return bool(wake_at and current == 0 and (zero_since is None or wake_at >= zero_since))


def _health_patch(  # noqa: PLR0917 - one call site, named arguments there
    body: kopf.Body,
    spec: InferenceEndpointSpec,
    previous: dict[str, Any],
    error: str | None,
    tps: float | None,
    now: dt.datetime,
    generation: int | None,
    *,
    configured: bool = True,
) -> dict[str, Any]:
    """SignalsAvailable, live cost and BudgetExceeded, as far as they changed.

    Without a Prometheus URL at all the condition still says so, but no Warning event is
    posted per endpoint: that is the operator's configuration, not a fault of each endpoint.
    """
    patch: dict[str, Any] = {}
    conditions = list(previous.get("conditions") or [])
    cond = _signals_condition(previous, error, _iso(now) or "", generation)
    if _changed_condition(conditions, cond):
        conditions = _merge_condition({"conditions": conditions}, cond)
        patch["conditions"] = conditions
        if error and configured:
            events.warning(body, "SignalsAbsent", cond["message"])
    if error is not None:
        return patch
    cost, budget_cond = _live_cost(spec, previous, tps, now, generation)
    if cost != previous.get("cost"):
        patch["cost"] = cost
    if _changed_condition(conditions, budget_cond):
        patch["conditions"] = _merge_condition({"conditions": conditions}, budget_cond)
        if budget_cond["status"] == "True":
            events.warning(body, budget_cond["reason"], budget_cond["message"])
    return patch


def _changed_condition(conditions: list[dict[str, Any]], new: dict[str, Any]) -> bool:
    before = next((c for c in conditions if c.get("type") == new["type"]), None)
    return before is None or (before.get("status"), before.get("reason")) != (
        new["status"],
        new["reason"],
    )


def _sig3(x: float | None) -> float | None:
    """Three significant digits: steady load must not rewrite the status every tick."""
    return None if x is None else float(f"{x:.3g}")


def _live_cost(
    spec: InferenceEndpointSpec,
    previous: dict[str, Any],
    tps: float | None,
    now: dt.datetime,
    generation: int | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Live cost figures and the BudgetExceeded condition (paper Eq. 1, infrastructure term)."""
    cost = dict(previous.get("cost") or {})
    hourly = float(cost.get("hourlyUSD") or 0.0)
    budget = budget_status(hourly, spec.budget, hourly * _hours_into_month(now), now)
    per_million = cost_per_million_tokens(hourly, tps)
    live = {
        **cost,
        "source": "live",
        "tokensPerSecond": _sig3(tps) if tps is not None else 0.0,
        "budgetBurn": _sig3(budget.burn) if spec.budget else None,
    }
    if per_million is None:
        live.pop("perMillionTokensUSD", None)
    else:
        live["perMillionTokensUSD"] = _sig3(per_million)
    live = {k: v for k, v in live.items() if v is not None}
    if cost.get("source") == "live" and _refreshed_within(cost.get("asOf"), now):
        live = cost  # refreshed less than LIVE_COST_REFRESH_SECONDS ago: keep it
    for key in LIVE_FIGURES:
        if key in live and key in cost and _close(cost[key], live[key]):
            live[key] = cost[key]
    if live != cost:
        live["asOf"] = _iso(now)
    else:
        live = cost
    cond = condition(
        "BudgetExceeded",
        budget.exceeded,
        budget.code,
        budget.reason,
        previous=list(previous.get("conditions") or []),
        now=_iso(now) or "",
        generation=generation,
    )
    return live, cond


def _refreshed_within(as_of: Any, now: dt.datetime) -> bool:
    """``as_of`` lies less than LIVE_COST_REFRESH_SECONDS before ``now``. A time in the future
    (another replica's clock) or one that does not parse counts as stale, so it is replaced."""
    try:
        written = _parse_time(as_of) if isinstance(as_of, str) else None
    except ValueError:
        return False
    return written is not None and 0 <= (now - written).total_seconds() < LIVE_COST_REFRESH_SECONDS


def _close(old: Any, new: Any) -> bool:
    """Within LIVE_COST_TOLERANCE of each other (relative), so scrape jitter is not a change."""
    try:
        a, b = float(old), float(new)
    except (TypeError, ValueError):
        return False
    return abs(a - b) <= LIVE_COST_TOLERANCE * max(abs(a), abs(b))


def _hours_into_month(now: dt.datetime) -> float:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (now - start).total_seconds() / 3600


# --- routing policies: automatic rerouting ----------------------------------------------------


def _step_from(raw: dict[str, Any] | None) -> Step | None:
    if not raw:
        return None
    at = _parse_time(raw.get("at")) or _now()
    return Step(raw["source"], raw["target"], int(raw["points"]), raw["direction"], at)


async def reroute_policy(
    *,
    body: kopf.Body,
    name: str,
    namespace: str,
    spec: Any,
    status: Any,
    meta: Any,
    memo: Any,
    **_: Any,
) -> None:
    ctx: endpoints.Context = memo.ctx
    memory: LoopMemory = memo.loops
    signals: Signals = memo.signals
    try:
        parsed = RoutingPolicySpec.model_validate(dict(spec))
    except ValidationError:
        return
    key = f"{namespace}/{name}"
    now = _now()
    previous = dict(status)
    interval = dt.timedelta(seconds=_seconds(parsed.auto_reroute.interval))
    last_eval = memory.last_reroute_eval.get(key)
    spec_changed = previous.get("observedGeneration") != meta.get("generation")
    if last_eval and now - last_eval < interval and previous.get("weights") and not spec_changed:
        return
    memory.last_reroute_eval[key] = now

    error = None
    tier_signals = {}
    if parsed.auto_reroute.enabled:
        try:
            for tier in parsed.tiers:
                tier_signals[tier.name] = await ctx.run(
                    signals.tier,
                    policy=name,
                    namespace=namespace,
                    tier=tier.name,
                    max_age=ctx.settings.loops.reroute_tick_seconds * FRESH_FOR,
                )
        except PrometheusError as err:
            tier_signals, error = {}, str(err)
    state = RerouteState(
        previous.get("weights") or {},
        _parse_time(previous.get("lastRerouteTime")),
        _step_from(previous.get("lastStep")),
    )
    decision = decide_reroute(parsed, tier_signals, state, now)
    patch: dict[str, Any] = {}
    if decision.weights != previous.get("weights"):
        patch["weights"] = decision.weights
        patch["weightsSummary"] = ",".join(
            f"{t.name}={decision.weights[t.name]}" for t in parsed.tiers
        )
    if decision.action != "Hold":
        patch["lastDecision"] = {
            "time": _iso(now),
            "action": decision.action,
            "reason": decision.reason,
            "signals": decision.signals,
        }
        patch["lastRerouteTime"] = _iso(now)
        step = decision.state.last_step
        patch["lastStep"] = (
            {
                "source": step.source,
                "target": step.target,
                "points": step.points,
                "direction": step.direction,
                "at": _iso(step.at),
            }
            if step
            else None
        )
        events.normal(body, decision.action, decision.reason)
        log.info("%s: %s %s: %s", key, decision.action, decision.weights, decision.reason)
    if parsed.auto_reroute.enabled:
        cond = _signals_condition(previous, error, _iso(now) or "", meta.get("generation"))
        before = next(
            (c for c in previous.get("conditions") or [] if c["type"] == cond["type"]), None
        )
        if before is None or before.get("status") != cond["status"]:
            patch["conditions"] = _merge_condition(previous, cond)
            if error and signals.client is not None:
                events.warning(body, "SignalsAbsent", cond["message"])
    if spec_changed:
        patch["observedGeneration"] = meta.get("generation")
    if patch:
        await _patch_status(ctx, "RoutingPolicy", namespace, name, patch)


# --- cache policies: hit rates, savings, false-hit budget ------------------------------------


async def cache_status(
    *,
    body: kopf.Body,
    name: str,
    namespace: str,
    spec: Any,
    status: Any,
    meta: Any,
    memo: Any,
    **_: Any,
) -> None:
    """CachePolicy status from the gateway's metrics, written only when it changes."""
    ctx: endpoints.Context = memo.ctx
    signals: Signals = memo.signals
    try:
        parsed = CachePolicySpec.model_validate(dict(spec))
    except ValidationError:
        return
    previous = dict(status)
    now = _iso(_now()) or ""
    error = None
    try:
        figures = await ctx.run(signals.cache, policy=parsed.target_ref.name, namespace=namespace)
    except PrometheusError as err:
        figures, error = {}, str(err)
    patch: dict[str, Any] = {}
    if error is None:
        exact, semantic = figures.get("exact"), figures.get("semantic")
        if exact is not None or semantic is not None:
            hit = {"exact": round(exact or 0.0, 3), "semantic": round(semantic or 0.0, 3)}
            hit["total"] = round(hit["exact"] + hit["semantic"], 3)
            if hit != previous.get("hitRate"):
                patch["hitRate"] = hit
        if "savedUSD" in figures and _sig3(figures["savedUSD"]) != previous.get(
            "estimatedSavedUSD"
        ):
            patch["estimatedSavedUSD"] = _sig3(figures["savedUSD"])
        if "falseHitRate" in figures and round(figures["falseHitRate"], 3) != previous.get(
            "falseHitRate"
        ):
            patch["falseHitRate"] = round(figures["falseHitRate"], 3)
    conditions = list(previous.get("conditions") or [])
    generation = meta.get("generation")
    suspended = bool(figures.get("semanticSuspended"))
    budget = parsed.semantic.max_false_hit_rate
    wanted = [
        _signals_condition(previous, error, now, generation),
        condition(
            "SemanticSuspended",
            suspended,
            "FalseHitBudgetExceeded" if suspended else "WithinFalseHitBudget",
            f"sampled false-hit rate above {budget:g}: semantic answers paused"
            if suspended
            else f"sampled false-hit rate within {budget:g}",
            previous=conditions,
            now=now,
            generation=generation,
        ),
        condition(
            "Ready",
            error is None,
            "Measured" if error is None else "SignalsAbsent",
            "hit rates measured from the gateway's metrics" if error is None else error,
            previous=conditions,
            now=now,
            generation=generation,
        ),
    ]
    changed = [c for c in wanted if _changed_condition(conditions, c)]
    for c in changed:
        conditions = _merge_condition({"conditions": conditions}, c)
        if c["type"] == "SemanticSuspended" and c["status"] == "True":
            events.warning(body, c["reason"], c["message"])
    if changed:
        patch["conditions"] = conditions
    if previous.get("observedGeneration") != generation:
        patch["observedGeneration"] = generation
    if patch:
        await _patch_status(ctx, "CachePolicy", namespace, name, patch)


def _seconds(duration: str) -> float:
    from frugal.api.base import parse_duration

    return parse_duration(duration).total_seconds()


def register(registry: kopf.OperatorRegistry, settings: Any) -> None:
    loops = settings.loops
    ie = (GROUP, VERSION, "inferenceendpoints")
    rp = (GROUP, VERSION, "routingpolicies")
    backoff = endpoints.RETRY_BACKOFF_SECONDS
    # Not paced: every endpoint reads the tick's fleet query while it is fresh.
    sweeps.every(
        registry,
        *ie,
        id="scale",
        interval=loops.scale_interval_seconds,
        backoff=backoff,
        paced=False,
    )(scale_endpoint)
    kopf.on.field(
        *ie, field=("metadata", "annotations", WAKE_ANNOTATION), registry=registry, id="wake"
    )(scale_endpoint)
    kopf.on.resume(*rp, registry=registry, id="reroute")(reroute_policy)
    kopf.on.create(*rp, registry=registry, id="reroute")(reroute_policy)
    kopf.on.update(*rp, field="spec", registry=registry, id="reroute")(reroute_policy)
    sweeps.every(
        registry, *rp, id="reroute-tick", interval=loops.reroute_tick_seconds, paced=False
    )(reroute_policy)
    cp = (GROUP, VERSION, "cachepolicies")
    sweeps.every(registry, *cp, id="cache-status", interval=loops.cache_status_seconds)(
        cache_status
    )
