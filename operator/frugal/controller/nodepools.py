"""Shell: keep frugal's Karpenter node pools in step with what the fleet needs.

Node pools are shared by endpoints, so they are not children of any one endpoint: they carry
no ownerReferences and are reconciled for the fleet as a whole. Any change to an endpoint, to an
engine pod or to a frugal-managed NodePool/EC2NodeClass schedules one debounced sync, and each
endpoint's timer schedules a periodic one (rate-limited to one per reconcile interval), so the
loop is level-triggered and a restart repairs everything.

One sync: plan the fleet exactly as the endpoint reconciler does (same settings, same live
prices), collect the pools each endpoint's plan needs plus the pools live engine pods still
select, render (pure, :mod:`frugal.render.nodepools`), server-side apply what changed and delete
the frugal-managed pools nothing needs any more. Deleting a NodePool makes Karpenter drain and
terminate its nodes, so a pool is kept while any frugal pod — running or pending — selects it.

A second, independent concern lives here too: engine pods carry ``karpenter.sh/do-not-disrupt``
while they load their model; :func:`release_loading` removes it once a pod is Ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes.client import ApiClient, ApiException
from prometheus_client import Counter
from pydantic import ValidationError

from frugal import kube
from frugal.api.base import GROUP, VERSION
from frugal.api.endpoint import InferenceEndpointSpec
from frugal.catalog.profiles import ProfileName
from frugal.controller import kopfperf, sweeps
from frugal.controller.metrics import WRITES
from frugal.placement.plan import EndpointWish, plan_fleet
from frugal.render.endpoint import HASH_ANNOTATION
from frugal.render.labels import ENDPOINT_LABEL
from frugal.render.nodepools import (
    COMPONENT_KEY,
    EC2NODECLASS_API,
    LOADING_ANNOTATION,
    NODE_CLASS_COMPONENT,
    NODE_POOL_COMPONENT,
    NODEPOOL_API,
    NodePoolSettings,
    PoolUse,
    endpoint_pool_uses,
    loading_release_patch,
    match_capacity_reservations,
    name_conflicts,
    node_pool_settings,
    render_node_pools,
    selector_pool_use,
)
from frugal.settings import Settings

log = logging.getLogger("frugal.nodepools")
SYNCS = Counter("frugal_node_pool_syncs_total", "Node pool sync passes, by outcome.", ["result"])
DEBOUNCE_SECONDS = 1.0
MANAGED_LABELS = {"app.kubernetes.io/managed-by": "frugal"}
_REGISTERED = "_frugal_node_pools_registered"


# --- desired state (pure helpers over index contents) ----------------------------------------


def desired_uses(
    endpoints: Mapping[str, Mapping[str, Any]],
    pod_selectors: Iterable[Mapping[str, str]],
    settings: Settings,
) -> set[PoolUse]:
    """The pools the fleet needs: from every endpoint's plan, and from every live engine pod.

    ``endpoints`` maps namespace/name to ``{"spec", "status"}`` (the index's entries); the
    fleet is planned together, exactly as the endpoint reconciler plans it, because
    reservations are shared. An endpoint whose spec does not parse needs nothing (it reports
    its own error), but its pods still keep their pools.
    """
    from frugal.controller.endpoints import spot_limit, wanted_replicas

    specs: dict[str, InferenceEndpointSpec] = {}
    wishes = []
    for key, entry in sorted(endpoints.items()):
        try:
            spec = InferenceEndpointSpec.model_validate(dict(entry["spec"]))
        except ValidationError:
            continue
        status = dict(entry.get("status") or {})
        specs[key] = spec
        wishes.append(EndpointWish(key, spec, wanted_replicas(spec, status), spot_limit(status)))
    plans = plan_fleet(wishes, settings)
    uses: set[PoolUse] = set()
    for key, spec in specs.items():
        uses |= endpoint_pool_uses(spec, plans[key], settings)
    for selector in pod_selectors:
        use = selector_pool_use(selector, settings)
        if use is not None:
            uses.add(use)
    return uses


# --- indexes ----------------------------------------------------------------------------------


def endpoints_index(namespace: str, name: str, spec: Any, status: Any, **_: Any) -> dict:
    return {f"{namespace}/{name}": {"spec": dict(spec), "status": dict(status)}}


def pod_selectors_index(
    namespace: str, name: str, labels: Any, spec: Any, status: Any, **_: Any
) -> dict:
    """Node selectors of live engine pods (pending ones included: they wait for a node)."""
    if not labels.get(ENDPOINT_LABEL) or status.get("phase") in ("Succeeded", "Failed"):
        return {}
    selector = dict(spec.get("nodeSelector") or {})
    return {f"{namespace}/{name}": selector} if selector else {}


def _entries(index: Any) -> dict[str, Any]:
    """key → the (single) value kopf stored for it."""
    out = {}
    for key, store in index.items():
        for value in store:
            out[key] = value
    return out


# --- apply and prune --------------------------------------------------------------------------


@dataclass
class PoolSyncResult:
    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    """Managed objects that were not rendered but could not be deleted yet."""
    foreign: list[str] = field(default_factory=list)
    """Rendered objects not applied because an object of that name is not frugal's."""

    @property
    def writes(self) -> int:
        return len(self.applied) + len(self.deleted)


def _key(obj: Mapping[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _list(api: ApiClient, api_version: str, kind: str, selector: str | None) -> list[dict]:
    query = [("labelSelector", selector)] if selector else []
    items = kube.request(api, "GET", kube.resource_path(api_version, kind), query=query)
    for item in items.get("items", []):
        item.setdefault("apiVersion", api_version)
        item.setdefault("kind", kind)
    return items.get("items", [])


def _managed(obj: Mapping[str, Any]) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return labels.get("app.kubernetes.io/managed-by") == "frugal" and labels.get(COMPONENT_KEY) in (
        NODE_POOL_COMPONENT,
        NODE_CLASS_COMPONENT,
    )


def sync_node_pools(
    api: ApiClient, rendered: list[dict[str, Any]], field_manager: str, *, prune: bool = True
) -> PoolSyncResult:
    """Apply the rendered node classes and pools (only changed ones); delete unneeded ones.

    Only objects labelled as frugal-managed node pools/classes are ever written or deleted; a
    rendered object whose name is taken by someone else's is skipped (``foreign``). NodePools go
    before EC2NodeClasses, and a class that any NodePool (frugal's or not) still refers to is
    kept.
    """
    result = PoolSyncResult()
    pools = _list(api, NODEPOOL_API, "NodePool", None)
    classes = _list(api, EC2NODECLASS_API, "EC2NodeClass", None)
    live = {_key(o): o for o in [*classes, *pools] if _managed(o)}
    others = {_key(o) for o in [*classes, *pools] if not _managed(o)}
    wanted = set()
    for obj in rendered:
        key = _key(obj)
        wanted.add(key)
        if key in others:
            # Someone else's pool of that name (e.g. a reserved pool made by hand before frugal
            # managed pools): never taken over; labelling it frugal-managed hands it over.
            result.foreign.append(key)
            continue
        have = (live.get(key) or {}).get("metadata", {}).get("annotations") or {}
        if key in live and have.get(HASH_ANNOTATION) == obj["metadata"]["annotations"].get(
            HASH_ANNOTATION
        ):
            continue
        kube.apply(api, obj, field_manager)
        WRITES.labels("apply", obj["kind"]).inc()
        result.applied.append(key)
    if not prune:
        return result
    gone_pools = {k for k in live if k.startswith("NodePool/") and k not in wanted}
    still_referenced = {
        ((p.get("spec") or {}).get("template", {}).get("spec", {}).get("nodeClassRef") or {}).get(
            "name"
        )
        for p in pools
        if _key(p) not in gone_pools
    }
    for key in sorted(gone_pools) + sorted(
        k for k in live if k.startswith("EC2NodeClass/") and k not in wanted
    ):
        obj = live[key]
        name = obj["metadata"]["name"]
        if obj["kind"] == "EC2NodeClass" and name in still_referenced:
            result.kept.append(key)
            continue
        try:
            kube.request(
                api, "DELETE", kube.resource_path(obj["apiVersion"], obj["kind"], None, name)
            )
        except ApiException as err:
            if err.status != 404:
                raise
        WRITES.labels("delete", obj["kind"]).inc()
        result.deleted.append(key)
    return result


# --- capacity reservation discovery (boto3) ----------------------------------------------------


class ReservationDiscovery:
    """Capacity reservation ids per reservation pool, from ``describe_capacity_reservations``.

    Refreshed at most every ``interval``; on an AWS error the last good answer is kept (and
    logged), so a transient failure never changes what a reserved EC2NodeClass selects.
    """

    def __init__(self, ec2_factory: Callable[[], Any], interval: float = 600.0) -> None:
        self._factory = ec2_factory
        self._ec2: Any = None
        self.interval = interval
        self.found: list[Any] | None = None
        self.last_attempt: float | None = None
        self.last_error: str | None = None

    def refresh(self, now: float) -> None:
        from frugal.pricing.aws import AWS_ERRORS, capacity_reservations

        if self.last_attempt is not None and now - self.last_attempt < self.interval:
            return
        self.last_attempt = now
        try:
            if self._ec2 is None:
                self._ec2 = self._factory()
            self.found = capacity_reservations(self._ec2)
            self.last_error = None
        except AWS_ERRORS as exc:
            self.last_error = str(exc)
            log.warning("capacity reservation discovery failed, keeping the last answer: %s", exc)

    def ids(self, settings: Settings, pools: NodePoolSettings, now: float) -> dict[str, tuple]:
        """reservation pool name → discovered ids, for pools that list none in settings."""
        needing = [p for p in settings.reservations if not p.capacity_reservation_ids]
        if not (pools.discover_reservations and needing):
            return {}
        self.refresh(now)
        if self.found is None:
            return {}
        catalog = settings.catalog()
        return {
            p.name: match_capacity_reservations(
                p, catalog[p.gpu_type], self.found, pools.reservation_tag
            )
            for p in needing
        }


def ec2_client_factory(settings: Settings) -> Callable[[], Any]:
    def make() -> Any:
        import boto3

        return boto3.client("ec2", region_name=settings.aws.region)

    return make


# --- the debounced sync -----------------------------------------------------------------------


class NodePoolSync:
    """One sync for a burst of changes; periodic passes at most once per ``interval``."""

    def __init__(
        self,
        ctx: Any,
        pools: NodePoolSettings,
        *,
        interval: float,
        discovery: ReservationDiscovery | None = None,
    ) -> None:
        self.ctx, self.pools, self.interval, self.discovery = ctx, pools, interval, discovery
        self.last_sync: float | None = None
        self.last_result: PoolSyncResult | None = None
        self._indexes: dict[str, Any] = {}
        self._task: asyncio.Task | None = None
        self._again = False
        self._warned: set[str] = set()

    def schedule(self, indexes: Mapping[str, Any], *, periodic: bool = False) -> None:
        self._indexes = dict(indexes)
        now = time.monotonic()
        if periodic and self.last_sync is not None and now - self.last_sync < self.interval:
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self._again = False
            await asyncio.sleep(DEBOUNCE_SECONDS)
            try:
                await self.sync_once()
                SYNCS.labels("ok").inc()
            except Exception:  # the next change or tick retries; never crash the operator
                SYNCS.labels("error").inc()
                log.exception("syncing node pools failed")
            if not self._again:
                return

    def render(self, settings: Settings) -> list[dict[str, Any]]:
        endpoints = _entries(self._indexes.get("nodepool_endpoints_index", {}))
        selectors = _entries(self._indexes.get("nodepool_pods_index", {})).values()
        uses = desired_uses(endpoints, selectors, settings)
        ids = self.discovery.ids(settings, self.pools, time.monotonic()) if self.discovery else {}
        for problem in name_conflicts(settings, self.pools):
            if problem not in self._warned:
                self._warned.add(problem)
                log.warning("%s; that reservation gets no node pool", problem)
        return render_node_pools(uses, settings, pools=self.pools, reservation_ids=ids)

    async def sync_once(self) -> PoolSyncResult:
        settings = await self.ctx.effective_settings()
        rendered = await asyncio.to_thread(self.render, settings)
        result = await asyncio.to_thread(
            sync_node_pools, self.ctx.api, rendered, self.ctx.settings.field_manager
        )
        self.last_sync = time.monotonic()
        self.last_result = result
        for key in result.foreign:
            if key not in self._warned:
                self._warned.add(key)
                log.warning(
                    "%s exists and is not managed by frugal: left alone (label it "
                    "app.kubernetes.io/managed-by=frugal, app.kubernetes.io/component=%s "
                    "to hand it over)",
                    key,
                    NODE_POOL_COMPONENT if key.startswith("NodePool/") else NODE_CLASS_COMPONENT,
                )
        if result.writes:
            log.info("node pools: applied %s, deleted %s", result.applied, result.deleted)
        return result


# --- handlers ---------------------------------------------------------------------------------


def make_handlers(pools: NodePoolSettings, settings: Settings) -> tuple[Callable, Callable]:
    """The change and tick handlers, sharing one :class:`NodePoolSync` per registry.

    The sync lives in this closure, not in kopf's memo: kopf hands each object a shallow copy
    of the operator's memo, so an attribute set from one object's handler is not seen by
    another's.
    """
    holder: dict[str, NodePoolSync] = {}

    def sync_of(memo: Any) -> NodePoolSync | None:
        if "sync" not in holder and getattr(memo, "ctx", None) is not None:
            discovery = (
                ReservationDiscovery(ec2_client_factory(settings))
                if pools.discover_reservations
                else None
            )
            holder["sync"] = NodePoolSync(
                memo.ctx, pools, interval=settings.reconcile_interval_seconds, discovery=discovery
            )
        return holder.get("sync")

    async def on_change(memo: Any, **kwargs: Any) -> None:
        sync = sync_of(memo)
        if sync is not None:
            sync.schedule(kwargs)

    async def on_tick(memo: Any, **kwargs: Any) -> None:
        sync = sync_of(memo)
        if sync is not None:
            sync.schedule(kwargs, periodic=True)

    return on_change, on_tick


def release_loading_pod(api: ApiClient, pod: Mapping[str, Any]) -> bool:
    """Remove frugal's do-not-disrupt from a Ready engine pod; True when it was patched."""
    patch = loading_release_patch(pod)
    if patch is None:
        return False
    meta = pod["metadata"]
    try:
        kube.request(
            api,
            "PATCH",
            kube.resource_path("v1", "Pod", meta["namespace"], meta["name"]),
            body=patch,
            content_type="application/merge-patch+json",
        )
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    WRITES.labels("patch", "Pod").inc()
    return True


async def release_loading(body: kopf.Body, memo: Any, type: str | None, **_: Any) -> None:
    """A frugal engine pod marked as loading changed: release its node once it is Ready."""
    if type == "DELETED" or getattr(memo, "ctx", None) is None:
        return
    if await memo.ctx.run(release_loading_pod, memo.ctx.api, body):
        log.info(
            "%s/%s is Ready: its node may be disrupted again",
            body["metadata"]["namespace"],
            body["metadata"]["name"],
        )


def register(
    registry: kopf.OperatorRegistry, settings: Settings, pools: NodePoolSettings | None = None
) -> None:
    """Register the node-pool handlers (Karpenter profile only).

    ``pools`` defaults to ``settings.nodePools``. With ``protectLoading`` the do-not-disrupt
    release handler runs; with ``manage`` the NodePool/EC2NodeClass sync runs too (it watches
    Karpenter's kinds, so their CRDs must be installed). A second call on the same registry
    does nothing.
    """
    pools = pools or node_pool_settings(settings)
    if getattr(registry, _REGISTERED, False):
        return  # once per registry, whoever calls first (operator.py or a test) wins
    setattr(registry, _REGISTERED, True)
    if settings.profile != ProfileName.KARPENTER:
        return
    if pools.protect_loading:
        kopf.on.event(
            "",
            "v1",
            "pods",
            labels=MANAGED_LABELS,
            annotations={LOADING_ANNOTATION: "true"},
            registry=registry,
            id="release-loading",
        )(release_loading)
    if not pools.manage:
        return
    ie = (GROUP, VERSION, "inferenceendpoints")
    kopfperf.index(*ie, registry=registry, id="nodepool_endpoints_index")(endpoints_index)
    kopfperf.index(
        "", "v1", "pods", labels=MANAGED_LABELS, registry=registry, id="nodepool_pods_index"
    )(pod_selectors_index)
    on_change, on_tick = make_handlers(pools, settings)
    kopf.on.event(*ie, registry=registry, id="node-pools-endpoints")(on_change)
    kopf.on.event("", "v1", "pods", labels=MANAGED_LABELS, registry=registry, id="node-pools-pods")(
        on_change
    )
    for api_version, plural in ((NODEPOOL_API, "nodepools"), (EC2NODECLASS_API, "ec2nodeclasses")):
        group, version = api_version.split("/")
        kopf.on.event(
            group, version, plural, labels=MANAGED_LABELS, registry=registry, id=f"{plural}-watch"
        )(on_change)
    sweeps.every(registry, *ie, id="node-pools-tick", interval=settings.reconcile_interval_seconds)(
        on_tick
    )


__all__ = [
    "NodePoolSync",
    "PoolSyncResult",
    "ReservationDiscovery",
    "desired_uses",
    "register",
    "release_loading",
    "release_loading_pod",
    "sync_node_pools",
]
