"""Shell: assemble and run the kopf operator.

Everything is registered into an explicit registry (no import-time side effects), so tests can
run exactly the production wiring in-process with ``kopf.testing.KopfRunner``. ``run`` is the
process: a liveness endpoint, the leader election (``leader.py``), and kopf started only once
this replica holds the Lease.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import kopf
import kubernetes
from aiohttp import web
from kubernetes.client import ApiClient

from frugal.controller import endpoints, gateways, kopfperf, leader, loops, nodepools, sweeps
from frugal.controller.kopfperf import LeanStatusProgressStorage, ProcessDiffBaseStorage
from frugal.settings import Settings
from frugal.signals.prometheus import Signals

LOST_EXIT_CODE = 3
"""Exit status when the Lease was lost: the process restarts clean, as client-go's do."""


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


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # kopf's bookkeeping lives in status (a failing handler's retries) or in this process (the
    # essence last handled), never in the user's metadata or spec.
    settings.persistence.progress_storage = LeanStatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = ProcessDiffBaseStorage(
        field="status.kopf.last-handled-configuration"
    )
    # No handler needs a finalizer, so kopf adds none; naming the one earlier builds added
    # lets kopf release it from their objects.
    settings.persistence.finalizer = "frugal.dev/finalizer"
    # Events are for decisions a user should see; kopf's per-handler chatter stays in logs.
    settings.posting.level = logging.WARNING
    # One replica acts because only the Lease holder runs kopf at all (see ``run``); kopf's
    # own peering stays off.
    settings.peering.standalone = True
    settings.watching.server_timeout = 300
    # Listed in pages, as client-go's reflectors do: one decoded response of every pod or
    # Deployment at once is tens of megabytes at a thousand endpoints.
    settings.watching.chunk_size = 500
    settings.queueing.error_delays = (1, 2, 5, 10, 30, 60)
    return settings


def build_registry(settings: Settings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return login(**kwargs)

    @kopf.on.startup(registry=registry)
    async def _startup(memo: kopf.Memo, **kwargs: Any) -> None:
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
        indices = {k: v for k, v in kwargs.items() if isinstance(v, kopf.Index)}
        memo.sweeps = sweeps.Runner(sweeps.registered(registry), memo, indices)

    @kopf.on.cleanup(registry=registry)
    async def _cleanup(memo: kopf.Memo, **_: Any) -> None:
        runner = getattr(memo, "sweeps", None)
        if runner is not None:
            await runner.stop()
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


# --- the process ------------------------------------------------------------------------------


async def serve_health(url: str, state: Callable[[], dict[str, Any]]) -> web.AppRunner:
    """``/healthz`` for the kubelet, answered by standby and leader alike (the event loop is
    alive); the body says which one this replica is."""
    parts = urlsplit(url)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(state())

    app = web.Application()
    app.router.add_get(parts.path or "/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, parts.hostname or "0.0.0.0", parts.port or 8080).start()
    return runner


def exit_now(err: BaseException) -> None:
    """Stop acting at once: no graceful kopf shutdown, whose handlers could still write."""
    logging.getLogger("frugal.leader").critical("leadership lost (%s); exiting", err)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(LOST_EXIT_CODE)


async def run(
    *,
    registry: kopf.OperatorRegistry,
    settings: kopf.OperatorSettings,
    namespaces: list[str],
    elector: leader.LeaseElector | None,
    liveness: str | None = None,
    on_lost: Callable[[leader.LeaseLostError], None] = exit_now,
) -> None:
    """Stand by until the Lease is ours, then run kopf while renewing it.

    kopf starts only after the Lease is acquired rather than running paused: kopf's only pause
    switch is its peering, and a standby that watches nothing cannot act by mistake and costs
    the API server nothing. On SIGTERM kopf stops its handlers, then the Lease is released so
    the standby takes over at its next retry; a lost Lease ends the process at once
    (``on_lost``) and the Deployment restarts it as a new candidate.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)  # kopf installs its own once it runs
    started = asyncio.Event()

    def state() -> dict[str, Any]:
        if elector is None:
            return {"role": "standalone", "running": started.is_set()}
        # "starting" until the Lease has been read once: only then is a standby a standby.
        role = "leader" if elector.is_leader else "standby" if elector.observed else "starting"
        return {"role": role, "identity": elector.me, "holder": elector.holder}

    health = await serve_health(liveness, state) if liveness else None
    halt_renewals: Callable[[], None] | None = None
    try:
        if elector is not None:
            if not await elector.acquire(stop):
                return
            # On a thread: a busy event loop must not cost a healthy leader its Lease.
            halt_renewals = elector.renew_in_thread(on_lost)
        started.set()
        kopfperf.install()
        await kopf.operator(
            registry=registry,
            settings=settings,
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            stop_flag=stop,
        )
    finally:
        if halt_renewals is not None:
            await asyncio.to_thread(halt_renewals)
        if elector is not None:
            if elector.is_leader:
                await asyncio.to_thread(elector.release)
            elector.close()
        if health is not None:
            await health.cleanup()
