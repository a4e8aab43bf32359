"""Shell: keep the gateway's configuration in step with the cluster.

One shared gateway (the Helm chart's) serves every namespace the operator watches; its
configuration is the ConfigMap ``frugal-gateway`` in the operator's namespace, rendered here
from every RoutingPolicy (with its effective weights), CachePolicy and InferenceEndpoint (its
URL, whether it is at zero, its price) plus the static part the chart provides (tenants, limits,
auth) in ``frugal-gateway-base``. Any change to those objects schedules one debounced render;
the ConfigMap is written only when its content changes, and the gateway reloads it without a
restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

import kopf
import yaml

from frugal import kube
from frugal.api.base import GROUP, VERSION
from frugal.controller import kopfperf
from frugal.controller.metrics import WRITES
from frugal.render.gateway import CONFIG_KEY, render_gateway_config

log = logging.getLogger("frugal.gateways")
HASH_ANNOTATION = "frugal.dev/rendered-hash"
# libyaml's dumper when PyYAML has it: the same YAML, several times faster.
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
DEBOUNCE_SECONDS = 1.0
RESYNC_SECONDS = 30.0


def objects_index(body: kopf.Body, **_: Any) -> dict:
    meta = body["metadata"]
    return {
        meta["namespace"]: {
            "apiVersion": body["apiVersion"],
            "kind": body["kind"],
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            **_rendered_parts(body),
        }
    }


def _rendered_parts(body: Any) -> dict[str, Any]:
    """Only what the gateway configuration is rendered from (render/gateway.py), so that a
    thousand endpoints' full statuses (conditions, kopf's bookkeeping) are not kept twice."""
    spec, status = dict(body.get("spec") or {}), dict(body.get("status") or {})
    if body["kind"] != "InferenceEndpoint":
        weights = status.get("weights")
        return {"spec": spec, "status": {"weights": weights} if weights else {}}
    cost = status.get("cost") or {}
    scaling = {k: v for k, v in (spec.get("scaling") or {}).items() if k == "coldStartBudget"}
    return {
        "spec": {
            "model": {"servedName": (spec.get("model") or {}).get("servedName")},
            "scaling": scaling,
        },
        "status": {
            "url": status.get("url"),
            "phase": status.get("phase"),
            "cost": {k: cost.get(k) for k in ("hourlyUSD", "tokensPerSecond") if k in cost},
        },
    }


def _all(index: Any) -> dict[str, list[dict[str, Any]]]:
    """Every namespace's objects, by name: kopf's stores keep no stable order, and a restart
    must render the same configuration (else every gateway reloads for nothing)."""
    return {ns: sorted(store, key=lambda o: o["metadata"]["name"]) for ns, store in index.items()}


def gateway_config(
    routing: dict[str, list],
    caching: dict[str, list],
    endpoints: dict[str, list],
    base: dict[str, Any],
) -> dict[str, Any]:
    """The merged configuration of every namespace, on top of the chart's static base."""
    policies: list[dict[str, Any]] = []
    upstreams: dict[str, Any] = {}
    for ns in sorted(set(routing) | set(caching)):
        part = render_gateway_config(
            ns, routing.get(ns, []), caching.get(ns, []), endpoints.get(ns, [])
        )
        clash = set(part["upstreams"]) & set(upstreams)
        if clash:
            # One gateway names endpoints without their namespace: the first one wins.
            log.warning(
                "endpoint names %s exist in several namespaces; %s's are ignored", sorted(clash), ns
            )
            continue
        policies += part["policies"]
        upstreams |= part["upstreams"]
    return {
        **base,
        "policies": policies,
        "upstreams": upstreams,
        "wake": {"kubernetes": True, **(base.get("wake") or {})},
    }


class GatewaySync:
    """Debounced rendering of the gateway ConfigMap (one render for a burst of changes).

    Also renders at start-up (so that a gateway on an empty cluster has a file to start with)
    and every ``RESYNC_SECONDS`` (so that a changed base ConfigMap — a ``helm upgrade`` of the
    gateway's static settings — is picked up without waiting for a policy to change).

    A render whose result equals the last one written costs no request at all: every status
    patch of an endpoint schedules a render, and with a thousand endpoints converging these
    came every second, each with two GETs and a YAML dump of the whole fleet.
    """

    def __init__(self, ctx: Any, namespace: str, name: str, base: str) -> None:
        self.ctx, self.namespace, self.name, self.base = ctx, namespace, name, base
        self._pending: asyncio.Task | None = None
        self._resync: asyncio.Task | None = None
        # kopf's indexes are live views; once a handler has seen them, renders use them.
        self.indexes: dict[str, Any] = {
            "routing_index": {},
            "caching_index": {},
            "endpoint_objects_index": {},
        }
        self.seen_indexes = False
        self._base: dict[str, Any] | None = None
        self._written: str | None = None
        """Digest of the configuration known to be in the ConfigMap."""

    def start(self) -> None:
        """Begin the periodic resync (call from within the operator's event loop)."""
        self._resync = asyncio.create_task(self._periodic())

    def stop(self) -> None:
        for task in (self._pending, self._resync):
            if task is not None:
                task.cancel()

    def schedule(self, memo: Any, indexes: dict[str, Any]) -> None:
        self.indexes = {k: indexes[k] for k in self.indexes if k in indexes} or self.indexes
        self.seen_indexes = True
        if self._pending is None or self._pending.done():
            self._pending = asyncio.create_task(self._run())

    async def _periodic(self) -> None:
        first = True
        while True:
            await self._run(delay=0, resync=True, startup=first)
            first = False
            await asyncio.sleep(RESYNC_SECONDS)

    async def _run(
        self, delay: float = DEBOUNCE_SECONDS, resync: bool = False, startup: bool = False
    ) -> None:
        await asyncio.sleep(delay)
        try:
            await self.ctx.run(self.sync, self.indexes, resync=resync, startup=startup)
        except Exception:  # the next change or tick retries; never crash the operator
            log.exception("rendering the gateway configuration failed")

    def sync(self, indexes: dict[str, Any], *, resync: bool = True, startup: bool = False) -> bool:
        """Render and apply; True when the ConfigMap was written.

        ``resync`` re-reads the base ConfigMap and the live one. ``startup`` before any handler
        has delivered kopf's indexes writes only when there is no ConfigMap yet: the indexes
        are still empty then, and rendering them would briefly take every route away.
        """
        api = self.ctx.api
        if resync or self._base is None:
            base_cm = kube.get(api, "v1", "ConfigMap", self.namespace, self.base) or {}
            self._base = yaml.safe_load((base_cm.get("data") or {}).get(CONFIG_KEY, "") or "")
            self._base = self._base or {}
            self._written = None
        config = gateway_config(
            _all(indexes["routing_index"]),
            _all(indexes["caching_index"]),
            _all(indexes["endpoint_objects_index"]),
            self._base,
        )
        digest = config_digest(config)
        if digest == self._written:
            return False
        live = kube.get(api, "v1", "ConfigMap", self.namespace, self.name)
        if startup and not self.seen_indexes and live is not None:
            return False
        if ((live or {}).get("metadata", {}).get("annotations") or {}).get(
            HASH_ANNOTATION
        ) == digest:
            self._written = digest
            return False
        kube.apply(
            api,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "labels": {
                        "app.kubernetes.io/part-of": "frugal",
                        "app.kubernetes.io/component": "gateway",
                    },
                    "annotations": {HASH_ANNOTATION: digest},
                },
                "data": {CONFIG_KEY: yaml.dump(config, Dumper=_Dumper, sort_keys=True)},
            },
            self.ctx.settings.field_manager,
        )
        self._written = digest
        WRITES.labels("apply", "ConfigMap").inc()
        log.info("gateway configuration updated (%d policies)", len(config["policies"]))
        return True


def config_digest(config: dict[str, Any]) -> str:
    """A digest of the configuration's content (canonical JSON, much cheaper than YAML)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


async def on_change(memo: Any, **kwargs: Any) -> None:
    sync: GatewaySync | None = getattr(memo, "gateway_sync", None)
    if sync is not None:
        sync.schedule(memo, kwargs)


def register(registry: kopf.OperatorRegistry) -> None:
    for plural, index in (
        ("routingpolicies", "routing_index"),
        ("cachepolicies", "caching_index"),
        ("inferenceendpoints", "endpoint_objects_index"),
    ):
        kopfperf.index(GROUP, VERSION, plural, id=index, registry=registry)(objects_index)
        kopf.on.event(GROUP, VERSION, plural, id=f"gateway-{plural}", registry=registry)(on_change)
