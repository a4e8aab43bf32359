"""Shell: kopf handlers that reconcile InferenceEndpoints.

Each handler reads, calls the pure core (placement, render, status), applies the children and
writes status — nothing else. Reconciles are level-triggered: create, spec update, operator
resume and a periodic timer all run the same function, which recomputes everything from the
current objects, so a restart or a missed event is always repaired.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import kopf
from kubernetes.client import ApiClient
from pydantic import ValidationError

from frugal import kube
from frugal.api.base import GROUP, VERSION, CapacityType
from frugal.api.endpoint import InferenceEndpointSpec
from frugal.controller import events, kopfperf, sweeps
from frugal.controller.children import LiveChild, controller_uid, sync_children
from frugal.controller.metrics import RECONCILE_SECONDS, RECONCILES, WRITES
from frugal.controller.status import Observed, changes, endpoint_status, placement_status
from frugal.controller.statuswrites import Snapshot, StatusWriter
from frugal.placement.plan import EndpointPlan, EndpointWish, initial_replicas, plan_fleet
from frugal.render.endpoint import HASH_ANNOTATION, Owner, render_endpoint, service_url
from frugal.render.labels import CAPACITY_LABEL, ENDPOINT_LABEL
from frugal.settings import Settings

PLURAL = "inferenceendpoints"
MANAGED_LABELS = {"app.kubernetes.io/managed-by": "frugal"}
RETRY_BACKOFF_SECONDS = 5.0
API_WORKERS = 32
"""Concurrent blocking calls to the API server (and Prometheus) the shell makes."""
T = TypeVar("T")
# The kinds an endpoint's children are (children.CHILD_KINDS), as kopf names resources.
CHILD_RESOURCES = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("policy", "v1", "poddisruptionbudgets"),
)
log = logging.getLogger("frugal.endpoints")


@dataclass
class Context:
    """What every handler needs; lives in kopf's memo for the operator's lifetime."""

    settings: Settings
    api: ApiClient
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    prices: Any = None
    """A frugal.pricing.aws.PriceRefresher when live AWS prices are on."""
    plans: PlanCache = field(default_factory=lambda: PlanCache())  # noqa: PLW0108 - defined below
    observed: dict[str, tuple[Observed, ...]] = field(default_factory=dict)
    """The Deployments' replicas last folded into each endpoint's status."""
    statuses: StatusWriter = field(default_factory=lambda: StatusWriter())  # noqa: PLW0108

    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(API_WORKERS, thread_name_prefix="frugal-api")
    )
    """Threads for the blocking client calls. asyncio's default pool has CPUs + 4 threads (6
    here), and with the API server answering a write in 100-300 ms under load, a thousand
    endpoints' reconciles queued behind those few threads for tens of seconds each."""

    reconcile_slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(API_WORKERS)
    )
    """Reconciles in progress at once. kopf starts one per new endpoint at once; unbounded, a
    thousand of them interleaved their requests on the shared threads, so that none finished
    (and wrote its status) before nearly all had applied their children."""

    def __post_init__(self) -> None:
        kube.ensure_pool_size(self.api, API_WORKERS)

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on one of the client threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def lock(self, key: str) -> asyncio.Lock:
        return self.locks.setdefault(key, asyncio.Lock())

    async def effective_settings(self) -> Settings:
        """Settings with the latest live prices folded in (refreshed when due)."""
        if self.prices is None:
            return self.settings
        async with self.lock("__prices__"):
            now = dt.datetime.now(dt.UTC)
            if self.prices.due(now):
                await self.run(self.prices.refresh, now)
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


@dataclass(frozen=True)
class IndexedEndpoint:
    """One endpoint as the fleet plan needs it, parsed once per watch event.

    Parsing here, not in every reconcile, keeps a reconcile from validating every other
    endpoint's spec again (which made convergence quadratic in the number of endpoints).
    """

    spec: InferenceEndpointSpec | None
    """None when the spec is invalid (that endpoint reports its own error)."""
    replicas: int
    spot_limit: float | None
    snapshot: Snapshot
    """Generation and status as watched; status writes start from it instead of reading."""


def endpoints_index(*, body: Any, namespace: str, name: str, spec: Any, **_: Any) -> dict:
    try:
        parsed: InferenceEndpointSpec | None = InferenceEndpointSpec.model_validate(dict(spec))
    except ValidationError:
        parsed = None
    snapshot = Snapshot.of(body)
    st = dict(snapshot.status)
    replicas = wanted_replicas(parsed, st) if parsed is not None else 0
    return {f"{namespace}/{name}": IndexedEndpoint(parsed, replicas, spot_limit(st), snapshot)}


def watched(index: Any, key: str) -> Snapshot | None:
    """The endpoint's status as the watch last delivered it."""
    if index is None or key not in index:
        return None
    return next(iter(index[key])).snapshot


def children_index(namespace: str, name: str, labels: Any, meta: Any, body: Any, **_: Any) -> dict:
    """Each endpoint's live children with their content hash, kept current by watches.

    A reconcile compares rendered hashes against this instead of listing three kinds from the
    API server every time.
    """
    endpoint = labels.get(ENDPOINT_LABEL)
    if not endpoint:
        return {}
    return {
        f"{namespace}/{endpoint}": LiveChild(
            api_version=body["apiVersion"],
            kind=body["kind"],
            namespace=namespace,
            name=name,
            owner_uid=controller_uid(meta),
            hash=(meta.get("annotations") or {}).get(HASH_ANNOTATION),
        )
    }


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


def reservation_pool(spec: InferenceEndpointSpec) -> str | None:
    """The reservation pool an endpoint competes for, if any."""
    cap = spec.capacity
    return cap.reservation if cap.reservation and CapacityType.RESERVED in cap.preference else None


def fleet_wishes(index: Any, current_key: str, current: EndpointWish) -> list[EndpointWish]:
    """The endpoints whose wishes can change the current one's plan, sorted by key.

    Endpoints interact only through shared reservation pools (``plan_fleet`` sizes and splits
    each endpoint on its own and assigns reserved GPUs per pool), so an endpoint's plan needs
    only the endpoints that want the same pool — none for an endpoint without a reservation.
    tests/unit/test_fleet_wishes.py checks this against planning the whole fleet.
    """
    pool = reservation_pool(current.spec)
    wishes = [current]
    if pool is None:
        return wishes
    for key, store in index.items():
        if key == current_key:
            continue
        for entry in store:
            if entry.spec is not None and reservation_pool(entry.spec) == pool:
                wishes.append(EndpointWish(key, entry.spec, entry.replicas, entry.spot_limit))
    return sorted(wishes, key=lambda w: w.key)


class PlanCache:
    """Fleet plans by the fingerprint of their inputs, so that the endpoints of one pool share
    one plan while nothing in the pool changes (a converged fleet plans once per change)."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._plans: OrderedDict[Hashable, dict[str, EndpointPlan]] = OrderedDict()

    def plan(
        self, wishes: list[EndpointWish], generations: dict[str, Any], settings: Settings, salt: str
    ) -> dict[str, EndpointPlan]:
        """``generations`` holds each wish's spec generation; ``salt`` names the settings."""
        if any(generations.get(w.key) is None for w in wishes):
            return plan_fleet(wishes, settings)  # no fingerprint for a spec without generation
        key = (
            salt,
            tuple((w.key, generations[w.key], w.replicas, w.spot_share_limit) for w in wishes),
        )
        plans = self._plans.get(key)
        if plans is None:
            plans = plan_fleet(wishes, settings)
            self._plans[key] = plans
            if len(self._plans) > self.size:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plans


def generations(index: Any, wishes: list[EndpointWish], current_key: str, current: Any) -> dict:
    out = {current_key: current}
    for w in wishes:
        if w.key != current_key and w.key in index:
            out[w.key] = next(iter(index[w.key])).snapshot.generation
    return out


def live_children(index: Any, key: str, owner: Owner) -> dict[str, LiveChild]:
    """kind/name → the endpoint's children as the watches last saw them."""
    if key not in index:
        return {}
    return {f"{c.kind}/{c.name}": c for c in index[key] if c.owner_uid == owner.uid}


def observed_replicas(index: Any, key: str) -> list[Observed]:
    return list(index.get(key, [])) if key in index else []


# --- handlers ---------------------------------------------------------------------------------


async def reconcile_endpoint(**kwargs: Any) -> None:
    """Reconcile one endpoint; an unexpected error is counted, logged and retried by kopf."""
    ctx: Context = kwargs["memo"].ctx
    # One reconcile per endpoint at a time: the create handler, the timer and the scale loop
    # may all start one, and a second one that runs while the first is still applying sees
    # the children as they were and applies them again (under load this doubled the writes).
    async with (
        ctx.lock(f"reconcile/{kwargs['namespace']}/{kwargs['name']}"),
        ctx.reconcile_slots,
    ):
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
    **kwargs: Any,
) -> None:
    ctx: Context = memo.ctx
    key = f"{namespace}/{name}"
    owner = Owner(name, namespace, uid)
    try:
        parsed = InferenceEndpointSpec.model_validate(dict(spec))
    except ValidationError as err:
        message = f"spec is invalid: {_first_error(err)}"
        events.warning(body, "InvalidSpec", message)
        placed = {"placed": {"code": "InvalidSpec", "message": message}}
        await write_status(ctx, namespace, name, placed, [], endpoints_index)
        return
    wish = EndpointWish(
        key, parsed, wanted_replicas(parsed, dict(status)), spot_limit(dict(status))
    )
    settings = await ctx.effective_settings()
    wishes = fleet_wishes(endpoints_index, key, wish)
    salt = "" if settings is ctx.settings else json.dumps(settings.gpu_overrides, sort_keys=True)
    gens = generations(endpoints_index, wishes, key, body.get("metadata", {}).get("generation"))
    plan = ctx.plans.plan(wishes, gens, settings, salt)[key]
    rendered = render_endpoint(owner, parsed, plan, settings)
    if rendered:
        index = kwargs.get("children_index")
        live = live_children(index, key, owner) if index is not None else None
        result = await ctx.run(
            sync_children, ctx.api, owner, rendered, ctx.settings.field_manager, live
        )
        for child in result.applied:
            WRITES.labels("apply", child.split("/")[0]).inc()
        for child in result.deleted:
            WRITES.labels("delete", child.split("/")[0]).inc()
        if result.writes:
            log.info("%s: applied %s, deleted %s", key, result.applied, result.deleted)
    # Against the newest status known: kopf's copy may not show this process's last write yet,
    # and an event compared with it was posted twice.
    latest = ctx.statuses.latest(key, watched(endpoints_index, key))
    _post_placement_events(body, dict(latest.status) if latest else dict(status), plan)
    prices = (
        {ct: plan.fit.gpu.price(ct) for ct in CapacityType}
        if plan.fit.gpu
        else dict.fromkeys(CapacityType, 0.0)
    )
    await write_status(
        ctx,
        namespace,
        name,
        placement_status(plan, parsed, prices),
        observed_replicas(deployments_index, key),
        endpoints_index,
    )


async def on_deployment_event(
    *,
    namespace: str,
    labels: Any,
    memo: Any,
    deployments_index: Any,
    endpoints_index: Any,
    type: str | None,
    **_: Any,
) -> None:
    """A child Deployment changed (replicas became ready, a pod was lost): refresh status."""
    endpoint = labels.get(ENDPOINT_LABEL)
    if not endpoint or type is None:
        return
    ctx: Context = memo.ctx
    key = f"{namespace}/{endpoint}"
    observed = observed_replicas(deployments_index, key)
    if ctx.observed.get(key) == tuple(observed):
        return  # a status-only change of the Deployment that readiness does not see
    await write_status(ctx, namespace, endpoint, None, observed, endpoints_index)


async def write_status(  # noqa: PLR0917 - four call sites, each names what it passes
    ctx: Context,
    namespace: str,
    name: str,
    placement: dict[str, Any] | None,
    observed: list[Observed],
    index: Any,
) -> None:
    """Recompute the status from the newest copy known and patch it only if something changed.

    ``placement`` None keeps the placement part of the current status (a Deployment event
    refreshes readiness only). ``index`` is the endpoints index (the watched copy).
    """
    url = service_url(Owner(name, namespace, ""), ctx.settings.engine.port)

    def compute(current: Snapshot) -> dict[str, Any]:
        previous = dict(current.status)
        if placement is None and "placement" not in previous:
            # A Deployment event before the reconcile that applied it wrote its status: that
            # write carries the replicas too, and one now would be a placement-less Pending.
            return {}
        new = endpoint_status(
            name=name,
            namespace=namespace,
            generation=current.generation,
            placement=placement if placement is not None else _placement_from(previous),
            observed=observed,
            previous=previous,
            url=url,
            now=now(),
        )
        # Only what changed: a smaller merge for the API server, the rest is already there.
        return changes(previous, new)

    key = f"{namespace}/{name}"
    written = await ctx.statuses.update(ctx, namespace, name, watched(index, key), compute)
    ctx.observed[key] = tuple(observed)
    if written is None:
        return
    before, changed = written
    previous_phase = before.status.get("phase")
    phase = changed.get("phase", previous_phase)
    # A new endpoint's first phase (Pending) is no news: one Event fewer per endpoint.
    first_pending = previous_phase is None and phase == "Pending"
    if phase != previous_phase and not first_pending:
        # The Ready condition changes with the phase, so the patch carries the conditions.
        events.normal(before.body, phase, _ready_message(changed))


def _placement_from(status: dict[str, Any]) -> dict[str, Any]:
    out = dict(status.get("placement") or {})
    for key in ("gpu", "cost"):
        if key in status:
            out[key] = status[key]
    return out


def _ready_message(status: dict[str, Any]) -> str:
    ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
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
    kopfperf.index(*res, registry=registry)(endpoints_index)
    kopfperf.index("apps", "v1", "deployments", labels=MANAGED_LABELS, registry=registry)(
        deployments_index
    )
    kopfperf.index("", "v1", "pods", labels=MANAGED_LABELS, registry=registry)(pods_index)
    for group, version, plural in CHILD_RESOURCES:
        kopfperf.index(
            group, version, plural, labels=MANAGED_LABELS, registry=registry, id="children_index"
        )(children_index)
    # A failed reconcile (the API server away, a conflict) is retried soon, not after kopf's
    # default minute: the next attempt recomputes everything anyway.
    retry = {"registry": registry, "backoff": RETRY_BACKOFF_SECONDS}
    kopf.on.resume(*res, id="reconcile", **retry)(reconcile_endpoint)
    kopf.on.create(*res, id="reconcile", **retry)(reconcile_endpoint)
    kopf.on.update(*res, field="spec", id="reconcile", **retry)(reconcile_endpoint)
    sweeps.every(
        registry,
        *res,
        id="recheck",
        interval=settings.reconcile_interval_seconds,
        initial_delay=settings.reconcile_interval_seconds,
        backoff=RETRY_BACKOFF_SECONDS,
    )(reconcile_endpoint)
    kopf.on.event("apps", "v1", "deployments", labels=MANAGED_LABELS, registry=registry)(
        on_deployment_event
    )
