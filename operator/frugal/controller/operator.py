"""Shell: assemble and run the kopf operator.

Everything is registered into an explicit registry (no import-time side effects), so tests can
run exactly the production wiring in-process with ``kopf.testing.KopfRunner``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Any

import kopf
import kubernetes
from kubernetes.client import ApiClient

from frugal import kube
from frugal.controller import endpoints, gateways, loops, nodepools
from frugal.settings import Settings
from frugal.signals.prometheus import Signals

PEERING_NAME = "frugal"


def api_client() -> ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config = kubernetes.client.Configuration()
        kubernetes.config.load_incluster_config(client_configuration=config)
        return ApiClient(config)
    return kubernetes.config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's own credential loaders, without depending on client-library login helpers."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return kopf.login_with_service_account(**kwargs)
    return kopf.login_with_kubeconfig(**kwargs)


def ensure_peering(api: ApiClient, namespaces: list[str]) -> None:
    """Create the peering object(s) kopf coordinates through; kopf does not create them."""
    meta = {"name": PEERING_NAME, "labels": {"app.kubernetes.io/part-of": "frugal"}}
    if not namespaces:
        kube.create_if_missing(
            api, {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": meta}
        )
    for ns in namespaces:
        kube.create_if_missing(
            api,
            {
                "apiVersion": "kopf.dev/v1",
                "kind": "KopfPeering",
                "metadata": {**meta, "namespace": ns},
            },
        )


def aws_prices(settings: Settings) -> Any:
    """A price refresher for the catalog's instance types, when live AWS prices are on."""
    if not settings.aws.enabled:
        return None
    import boto3

    from frugal.pricing.aws import PriceRefresher

    aws = settings.aws
    return PriceRefresher.for_catalog(
        boto3.client("ec2", region_name=aws.region),
        boto3.client("pricing", region_name="us-east-1"),  # the Pricing API's home region
        aws.region,
        settings.gpus,
        interval=dt.timedelta(seconds=aws.refresh_interval_seconds),
        zones=list(aws.zones) or None,
    )


def operator_settings(*, peering: bool, lifetime: int = 60) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # kopf's bookkeeping lives in status, never in the user's metadata or spec.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(
        field="status.kopf.last-handled-configuration"
    )
    settings.persistence.finalizer = "frugal.dev/finalizer"
    # Events are for decisions a user should see; kopf's per-handler chatter stays in logs.
    settings.posting.level = logging.WARNING
    settings.peering.name = PEERING_NAME
    settings.peering.mandatory = peering
    settings.peering.standalone = not peering
    settings.peering.lifetime = lifetime
    settings.watching.server_timeout = 300
    settings.queueing.error_delays = (1, 2, 5, 10, 30, 60)
    return settings


def build_registry(settings: Settings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return login(**kwargs)

    @kopf.on.startup(registry=registry)
    async def _startup(memo: kopf.Memo, **_: Any) -> None:
        memo.ctx = endpoints.Context(
            settings=settings, api=api_client(), prices=aws_prices(settings)
        )
        memo.signals = Signals(settings.prometheus)
        memo.loops = loops.LoopMemory()
        gw = settings.gateway
        if gw.config_namespace:
            memo.gateway_sync = gateways.GatewaySync(
                memo.ctx, gw.config_namespace, gw.config_map, gw.base_config_map
            )
            memo.gateway_sync.start()

    @kopf.on.cleanup(registry=registry)
    async def _cleanup(memo: kopf.Memo, **_: Any) -> None:
        sync = getattr(memo, "gateway_sync", None)
        if sync is not None:
            sync.stop()
        ctx = getattr(memo, "ctx", None)
        if ctx is not None:
            ctx.api.close()

    endpoints.register(registry, settings)
    loops.register(registry, settings)
    gateways.register(registry)
    nodepools.register(registry, settings)
    return registry
