"""Shell: kopf handlers that reconcile InferenceEndpoints.

Each handler reads, calls the pure core (placement, render, status), applies the children and
writes status — nothing else. Reconciles are level-triggered: create, spec update, operator
resume and a periodic timer all run the same function, which recomputes everything from the
current objects, so a restart or a missed event is always repaired.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes.client import ApiClient, ApiException
from pydantic import ValidationError

from frugal import kube
from frugal.api.base import GROUP, VERSION, CapacityType
from frugal.api.endpoint import InferenceEndpointSpec
from frugal.controller import events
from frugal.controller.children import sync_children
from frugal.controller.metrics import RECONCILE_SECONDS, RECONCILES, WRITES
from frugal.controller.status import Observed, differs, endpoint_status, placement_status
from frugal.placement.plan import EndpointPlan, EndpointWish, initial_replicas, plan_fleet
from frugal.render.endpoint import Owner, render_endpoint, service_url
from frugal.render.labels import CAPACITY_LABEL, ENDPOINT_LABEL
from frugal.settings import Settings

PLURAL = "inferenceendpoints"
MANAGED_LABELS = {"app.kubernetes.io/managed-by": "frugal"}
RETRY_BACKOFF_SECONDS = 5.0
log = logging.getLogger("frugal.endpoints")


@dataclass
class Context:
    """What every handler needs; lives in kopf's memo for the operator's lifetime."""

    settings: Settings
    api: ApiClient
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    prices: Any = None
    """A frugal.pricing.aws.PriceRefresher when live AWS prices are on."""

    def lock(self, key: str) -> asyncio.Lock:
        return self.locks.setdefault(key, asyncio.Lock())

    async def effective_settings(self) -> Settings:
        """Settings with the latest live prices folded in (refreshed when due)."""
        if self.prices is None:
            return self.settings
        async with self.lock("__prices__"):
            now = dt.datetime.now(dt.UTC)
            if self.prices.due(now):
                await asyncio.to_thread(self.prices.refresh, now)
                if self.prices.last_error:
                    log.warning(
                        "AWS prices: %s (keeping the last good ones)", self.prices.last_error
                    )
        return self.settings.with_live_prices(
            self.prices.snapshot.gpu_overrides(self.settings.gpus)
        )


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- indexes: in-memory views kopf keeps current from its watches --------------------------


def endpoints_index(namespace: str, name: str, spec: Any, status: Any, **_: Any) -> dict:
    return {f"{namespace}/{name}": {"spec": dict(spec), "status": dict(status)}}


def deployments_index(namespace: str, labels: Any, spec: Any, status: Any, **_: Any) -> dict:
    endpoint = labels.get(ENDPOINT_LABEL)
    capacity = labels.get(CAPACITY_LABEL)
    if not endpoint or capacity not in {c.value for c in CapacityType}:
        return {}
    return {
        f"{namespace}/{endpoint}": Observed(
            CapacityType(capacity), spec.get("replicas") or 0, status.get("readyReplicas") or 0
        )
    }


def pods_index(namespace: str, labels: Any, status: Any, **_: Any) -> dict:
    """Which engine pods cannot be scheduled, by endpoint and capacity type."""
    endpoint = labels.get(ENDPOINT_LABEL)
    capacity = labels.get(CAPACITY_LABEL)
    if not endpoint or not capacity:
        return {}
    unschedulable = any(
        c.get("type") == "PodScheduled"
        and c.get("status") == "False"
        and c.get("reason") == "Unschedulable"
        for c in status.get("conditions") or []
    )
    return {f"{namespace}/{endpoint}": (capacity, unschedulable)}


# --- the pure inputs, gathered ---------------------------------------------------------------


def wanted_replicas(spec: InferenceEndpointSpec, status: dict[str, Any]) -> int:
    """The autoscaler's last decision (clamped to the current bounds), or the starting count."""
    decided = (status.get("autoscaler") or {}).get("replicas")
    if decided is None:
        return initial_replicas(spec)
    return max(spec.scaling.min_replicas, min(int(decided), spec.scaling.max_replicas))


def spot_limit(status: dict[str, Any]) -> float | None:
    """The spot share limit the spot loop set, if any."""
    limit = (status.get("spot") or {}).get("shareLimit")
    return None if limit is None else float(limit)


def fleet_wishes(index: Any, current_key: str, current: EndpointWish) -> list[EndpointWish]:
    """Every endpoint the operator sees, with the one being reconciled at its latest spec."""
    wishes = [current]
    for key, store in index.items():
        if key == current_key:
            continue
        for entry in store:
            try:
                spec = InferenceEndpointSpec.model_validate(entry["spec"])
            except ValidationError:
                continue  # that endpoint reports its own error
            st = entry["status"]
            wishes.append(EndpointWish(key, spec, wanted_replicas(spec, st), spot_limit(st)))
    return wishes


def observed_replicas(index: Any, key: str) -> list[Observed]:
    return list(index.get(key, [])) if key in index else []


# --- handlers ---------------------------------------------------------------------------------


async def reconcile_endpoint(**kwargs: Any) -> None:
    """Reconcile one endpoint; an unexpected error is counted, logged and retried by kopf."""
    with RECONCILE_SECONDS.labels("InferenceEndpoint").time():
        try:
            await _reconcile_endpoint(**kwargs)
        except Exception:
            RECONCILES.labels("InferenceEndpoint", "error").inc()
            raise
    RECONCILES.labels("InferenceEndpoint", "ok").inc()


async def _reconcile_endpoint(
    *,
    body: kopf.Body,
    name: str,
    namespace: str,
    uid: str,
    spec: Any,
    status: Any,
    memo: Any,
    endpoints_index: Any,
    deployments_index: Any,
    **_: Any,
) -> None:
    ctx: Context = memo.ctx
    key = f"{namespace}/{name}"
    owner = Owner(name, namespace, uid)
    try:
        parsed = InferenceEndpointSpec.model_validate(dict(spec))
    except ValidationError as err:
        message = f"spec is invalid: {_first_error(err)}"
        events.warning(body, "InvalidSpec", message)
        await write_status(ctx, body, {"placed": {"code": "InvalidSpec", "message": message}}, [])
        return
    wish = EndpointWish(
        key, parsed, wanted_replicas(parsed, dict(status)), spot_limit(dict(status))
    )
    settings = await ctx.effective_settings()
    plan = plan_fleet(fleet_wishes(endpoints_index, key, wish), settings)[key]
    rendered = render_endpoint(owner, parsed, plan, settings)
    if rendered:
        result = await asyncio.to_thread(
            sync_children, ctx.api, owner, rendered, ctx.settings.field_manager
        )
        for child in result.applied:
            WRITES.labels("apply", child.split("/")[0]).inc()
        for child in result.deleted:
            WRITES.labels("delete", child.split("/")[0]).inc()
        if result.writes:
            log.info("%s: applied %s, deleted %s", key, result.applied, result.deleted)
    _post_placement_events(body, dict(status), plan)
    prices = (
        {ct: plan.fit.gpu.price(ct) for ct in CapacityType}
        if plan.fit.gpu
        else dict.fromkeys(CapacityType, 0.0)
    )
    await write_status(
        ctx, body, placement_status(plan, parsed, prices), observed_replicas(deployments_index, key)
    )


async def on_deployment_event(
    *, namespace: str, labels: Any, memo: Any, deployments_index: Any, type: str | None, **_: Any
) -> None:
    """A child Deployment changed (replicas became ready, a pod was lost): refresh status."""
    endpoint = labels.get(ENDPOINT_LABEL)
    if not endpoint or type is None:
        return
    ctx: Context = memo.ctx
    path = kube.resource_path(f"{GROUP}/{VERSION}", "InferenceEndpoint", namespace, endpoint)
    body = await asyncio.to_thread(_get_or_none, ctx.api, path)
    if body is None:
        return
    await write_status(
        ctx, body, None, observed_replicas(deployments_index, f"{namespace}/{endpoint}")
    )


def _get_or_none(api: ApiClient, path: str) -> dict[str, Any] | None:
    try:
        return kube.request(api, "GET", path)
    except ApiException as err:
        if err.status == 404:
            return None
        raise


async def write_status(
    ctx: Context,
    body: Any,
    placement: dict[str, Any] | None,
    observed: list[Observed],
) -> None:
    """Recompute the status from fresh state and patch it only if something changed.

    ``placement`` None keeps the placement part of the current status (a Deployment event
    refreshes readiness only). Serialised per endpoint: both paths read, compute and write.
    """
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    path = kube.resource_path(f"{GROUP}/{VERSION}", "InferenceEndpoint", namespace, name)
    async with ctx.lock(f"{namespace}/{name}"):
        fresh = await asyncio.to_thread(_get_or_none, ctx.api, path)
        if fresh is None:
            return
        previous = fresh.get("status") or {}
        if placement is None:
            placement = _placement_from(previous)
        new = endpoint_status(
            name=name,
            namespace=namespace,
            generation=fresh["metadata"].get("generation"),
            placement=placement,
            observed=observed,
            previous=previous,
            url=service_url(Owner(name, namespace, ""), ctx.settings.engine.port),
            now=now(),
        )
        if not differs(previous, new):
            return
        WRITES.labels("patch-status", "InferenceEndpoint").inc()
        await asyncio.to_thread(
            kube.request,
            ctx.api,
            "PATCH",
            f"{path}/status",
            body={"status": new},
            content_type="application/merge-patch+json",
        )
        if previous.get("phase") != new["phase"]:
            events.normal(fresh, new["phase"], _ready_message(new))


def _placement_from(status: dict[str, Any]) -> dict[str, Any]:
    out = dict(status.get("placement") or {})
    for key in ("gpu", "cost"):
        if key in status:
            out[key] = status[key]
    return out


def _ready_message(status: dict[str, Any]) -> str:
    ready = next((c for c in status["conditions"] if c["type"] == "Ready"), {})
    return f"phase {status['phase']}: {ready.get('message', '')}"


def _post_placement_events(body: Any, previous: dict[str, Any], plan: EndpointPlan) -> None:
    """An event when the placement verdict or split changes (not on every reconcile)."""
    before = (previous.get("placement") or {}).get("placed") or {}
    before_split = (previous.get("placement") or {}).get("desired") or {}
    split = {
        "total": plan.replicas,
        "reserved": plan.split.reserved,
        "spot": plan.split.spot,
        "onDemand": plan.split.on_demand,
    }
    if before.get("code") == plan.code and before_split == split:
        return
    if plan.placed:
        events.normal(body, plan.code, plan.message)
    else:
        events.warning(body, plan.code, plan.message)


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}"


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    """Register the endpoint handlers into ``registry``."""
    res = (GROUP, VERSION, PLURAL)
    kopf.index(*res, registry=registry)(endpoints_index)
    kopf.index("apps", "v1", "deployments", labels=MANAGED_LABELS, registry=registry)(
        deployments_index
    )
    kopf.index("", "v1", "pods", labels=MANAGED_LABELS, registry=registry)(pods_index)
    # A failed reconcile (the API server away, a conflict) is retried soon, not after kopf's
    # default minute: the next attempt recomputes everything anyway.
    retry = {"registry": registry, "backoff": RETRY_BACKOFF_SECONDS}
    kopf.on.resume(*res, id="reconcile", **retry)(reconcile_endpoint)
    kopf.on.create(*res, id="reconcile", **retry)(reconcile_endpoint)
    kopf.on.update(*res, field="spec", id="reconcile", **retry)(reconcile_endpoint)
    kopf.timer(
        *res,
        interval=settings.reconcile_interval_seconds,
        initial_delay=settings.reconcile_interval_seconds,
        id="recheck",
        **retry,
    )(reconcile_endpoint)
    kopf.on.event("apps", "v1", "deployments", labels=MANAGED_LABELS, registry=registry)(
        on_deployment_event
    )
