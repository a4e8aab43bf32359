"""Scale from zero: hold requests for a sleeping endpoint, wake it once, serve when it is up.

The first request for an endpoint at zero starts one wake episode: the wake callback is called
at once (in the cluster it stamps the InferenceEndpoint's ``frugal.dev/wake`` annotation, which
the operator's scaler answers with a replica) and the endpoint's health is probed until it
answers 200. Every request that arrives meanwhile joins the same episode — one wake call, however
many wait. Each waits at most its tier's cold-start budget; the queue per endpoint is bounded,
and a request that finds it full is refused at once, so a burst at a sleeping tier costs no
memory. A request is sent upstream only after the probe succeeds, exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from frugal.gateway.errors import GatewayError
from frugal.gateway.metering import Metrics
from frugal.gateway.snapshot import Upstream

log = logging.getLogger("frugal.gateway")

WAKE_ANNOTATION = "frugal.dev/wake"
WakeCallback = Callable[[Upstream], Awaitable[None]]


@dataclass
class UpstreamState:
    """What the gateway knows about one upstream, across configuration reloads."""

    in_flight: int = 0
    asleep: bool = False
    configured_asleep: bool = False
    """The last ``scaledToZero`` the configuration said (a change re-arms ``asleep``)."""
    waiting: int = 0
    awake: asyncio.Event | None = None
    episode: asyncio.Task[None] | None = None


class Waker:
    """Upstream states, wake episodes and health probes."""

    def __init__(
        self,
        metrics: Metrics,
        session: Callable[[], aiohttp.ClientSession],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.session = session
        self.clock = clock
        self.states: dict[str, UpstreamState] = {}

    def state(self, upstream: Upstream) -> UpstreamState:
        state = self.states.get(upstream.key)
        if state is None:
            new = self.states[upstream.key] = UpstreamState(
                asleep=upstream.scaled_to_zero, configured_asleep=upstream.scaled_to_zero
            )
            self.metrics.track_in_flight(
                upstream.endpoint, upstream.namespace, lambda: new.in_flight
            )
            return new
        if upstream.scaled_to_zero != state.configured_asleep:
            state.configured_asleep = upstream.scaled_to_zero
            state.asleep = upstream.scaled_to_zero
        return state

    def _set_waiting(self, upstream: Upstream, state: UpstreamState) -> None:
        self.metrics.waiting.labels(upstream.endpoint, upstream.namespace).set(state.waiting)

    async def hold(
        self,
        upstream: Upstream,
        deadline: float,
        queue_limit: int,
        wake: WakeCallback | None,
        probe_interval: float,
    ) -> bool:
        """Wait until ``upstream`` is up (True) or ``deadline`` passes (False).

        Raises 503 at once when ``queue_limit`` requests already wait for it.
        """
        state = self.state(upstream)
        if state.waiting >= queue_limit:
            raise GatewayError(
                503,
                f"{upstream.endpoint or upstream.model} is waking from zero and its queue is "
                "full; try again shortly",
                code="wake_queue_full",
                retry_after=max(1.0, min(upstream.cold_start_budget, 60.0)),
            )
        state.waiting += 1
        self._set_waiting(upstream, state)
        try:
            if state.episode is None or state.episode.done():
                state.awake = asyncio.Event()
                state.episode = asyncio.create_task(
                    self._episode(upstream, state, state.awake, wake, probe_interval)
                )
            assert state.awake is not None
            remaining = deadline - self.clock()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(state.awake.wait(), remaining)
            except TimeoutError:
                return False
            return True
        finally:
            state.waiting -= 1
            self._set_waiting(upstream, state)
            if state.waiting == 0 and state.episode and not state.episode.done():
                state.episode.cancel()  # nobody waits: stop probing until the next request

    async def _episode(
        self,
        upstream: Upstream,
        state: UpstreamState,
        awake: asyncio.Event,
        wake: WakeCallback | None,
        interval: float,
    ) -> None:
        caller = asyncio.create_task(self._call_wake(upstream, wake)) if wake else None
        try:
            while not await self.probe(upstream):
                await asyncio.sleep(interval)
            state.asleep = False
            awake.set()
            log.info("%s/%s is up", upstream.namespace, upstream.endpoint or upstream.model)
        finally:
            if caller is not None and not caller.done():
                # The wake call is short; let it finish even if the probe is cancelled.
                await asyncio.shield(caller)

    async def _call_wake(self, upstream: Upstream, wake: WakeCallback) -> None:
        try:
            await wake(upstream)
            self.metrics.wakes.labels(upstream.endpoint, upstream.namespace, "ok").inc()
            log.info("asked %s/%s to wake", upstream.namespace, upstream.endpoint)
        except Exception as err:
            self.metrics.wakes.labels(upstream.endpoint, upstream.namespace, "error").inc()
            log.warning("waking %s/%s failed: %s", upstream.namespace, upstream.endpoint, err)

    async def probe(self, upstream: Upstream) -> bool:
        """Any replica answers its health path with 200."""
        timeout = aiohttp.ClientTimeout(total=2)
        for url in upstream.urls:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with self.session().get(url + upstream.health_path, timeout=timeout) as r:
                    if r.status == 200:
                        return True
        return False

    async def close(self) -> None:
        episodes = [s.episode for s in self.states.values() if s.episode and not s.episode.done()]
        for task in episodes:
            task.cancel()
        await asyncio.gather(*episodes, return_exceptions=True)


def rfc3339_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeWaker:
    """Wake by merge-patching ``metadata.annotations["frugal.dev/wake"]`` with the time now.

    The operator's scaler reads that annotation (newer than the endpoint's zeroSince) as a
    request for a replica. Uses the official client's transport through :func:`frugal.kube.request`.
    """

    def __init__(self, api: Any | None = None) -> None:
        self._api = api

    def _client(self) -> Any:
        if self._api is None:
            import os

            import kubernetes

            if os.environ.get("KUBERNETES_SERVICE_HOST"):
                config = kubernetes.client.Configuration()
                kubernetes.config.load_incluster_config(client_configuration=config)
                self._api = kubernetes.client.ApiClient(config)
            else:
                self._api = kubernetes.config.new_client_from_config(
                    config_file=os.environ.get("KUBECONFIG")
                )
        return self._api

    def patch(self, name: str, namespace: str) -> dict[str, Any]:
        from frugal import kube

        path = kube.resource_path("frugal.dev/v1alpha1", "InferenceEndpoint", namespace, name)
        body = {"metadata": {"annotations": {WAKE_ANNOTATION: rfc3339_now()}}}
        return kube.request(
            self._client(),
            "PATCH",
            path,
            body=body,
            content_type="application/merge-patch+json",
            timeout=10.0,
        )

    async def __call__(self, upstream: Upstream) -> None:
        if upstream.external:
            return
        await asyncio.to_thread(self.patch, upstream.endpoint, upstream.namespace)
