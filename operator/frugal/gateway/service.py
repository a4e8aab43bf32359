"""The gateway's long-lived state and configuration swaps.

Everything that must survive a reload lives here, keyed by stable names: the HTTP session, cache
stores and embedders (entries and loaded models are kept when a policy's TTL changes), Redis
clients, upstream states (in-flight counts, wake episodes), rate-limit buckets, quality
samples, the semantic caches' false-hit windows and the caches' distrust spans. A reload
compiles a new :class:`~frugal.gateway.snapshot.Snapshot` off to the side and swaps one
reference; a configuration that fails to compile is refused and the old one serves on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from frugal.api.cache import CachePolicy
from frugal.gateway import embed
from frugal.gateway.cache import ResponseCache
from frugal.gateway.config import GatewayConfig
from frugal.gateway.distrust import Distrust, DistrustMonitor
from frugal.gateway.embed import Embedder
from frugal.gateway.falsehits import FalseHitMonitor
from frugal.gateway.metering import Metrics
from frugal.gateway.shadow import Quality, ShadowSampler
from frugal.gateway.snapshot import Snapshot, build, cache_settings
from frugal.gateway.source import ConfigSource
from frugal.gateway.store import MemoryStore, RedisStore, Store
from frugal.gateway.tenancy import RateLimiter
from frugal.gateway.wake import KubeWaker, WakeCallback, Waker

log = logging.getLogger("frugal.gateway")


class Gateway:
    """One gateway process: the current snapshot plus everything that outlives it."""

    def __init__(
        self,
        source: ConfigSource,
        *,
        rng: random.Random | None = None,
        wake: WakeCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.source = source
        self.rng = rng or random.Random()
        self.clock = clock
        self.metrics = Metrics(registry)
        self.config = source.read()  # refuse a broken file before serving anything
        self._wake_override = wake
        self._kube_waker: KubeWaker | None = None
        self.limiter = RateLimiter(clock)
        self.quality = Quality(self.metrics, self.config.limits.quality_window)
        self.shadow = ShadowSampler(
            self.metrics, self.quality, self.config.limits.shadow_concurrency
        )
        self.falsehits = FalseHitMonitor(self.metrics, clock, self.config.limits)
        self.distrust = DistrustMonitor(self.metrics)
        self._distrust_sync: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.waker = Waker(self.metrics, lambda: self.session, clock)
        self._stores: dict[tuple[str, ...], Store] = {}
        self._embedders: dict[tuple[str, ...], Embedder] = {}
        self._redis: dict[str, Any] = {}
        self._snapshot: Snapshot | None = None
        self.generation = 0
        self._watcher: asyncio.Task[None] | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the gateway has not started")
        return self._session

    @property
    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            raise RuntimeError("the gateway has not started")
        return self._snapshot

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        # No cookie jar: a cookie one upstream sets must never ride along on another tenant's
        # request (and skipping the jar saves its filtering on every call).
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar()
        )
        self._install(self.config)
        self._watcher = asyncio.create_task(self._watch())
        self._distrust_sync = asyncio.create_task(self.distrust.run())

    async def stop(self) -> None:
        for task in (self._watcher, self._distrust_sync):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.shadow.drain()
        await self.falsehits.drain()
        await self.waker.close()
        for store in self._stores.values():
            await store.close()  # before the Redis clients: a catch-up may still be reading
        for client in self._redis.values():
            await client.aclose()
        if self._session is not None:
            await self._session.close()

    # --- configuration -------------------------------------------------------------------------

    def _install(self, config: GatewayConfig) -> None:
        snapshot = build(
            config, lambda policy, ns: self._make_cache(policy, ns, config), self._classifier
        )
        self.config = config
        self.quality.window = config.limits.quality_window
        self.shadow.concurrency = config.limits.shadow_concurrency
        self.falsehits.limits = config.limits
        judged: dict[Distrust, set[str]] = {}
        for route in snapshot.routes.values():
            if route.shadow_tier and route.shadow_rate > 0:
                self.quality.reference(route.policy, route.namespace, route.shadow_tier)
            book = route.cache.distrust if route.cache is not None else None
            if book is not None:
                tiers = judged.setdefault(book, set())
                if route.quality_bar is not None and route.shadow_rate > 0:
                    tiers.update(t.name for t in route.tiers if t.name != route.shadow_tier)
            for tier in route.tiers:
                self.waker.state(tier.upstream)  # apply scaledToZero changes now
        self.distrust.settle(judged)
        self._snapshot = snapshot  # the swap: requests that already hold the old one keep it
        self.generation += 1
        self.metrics.generation.set(self.generation)

    def reload(self, config: GatewayConfig | None = None) -> bool:
        """Read (or take) a configuration and swap it in; False if it was refused."""
        try:
            new = config or self.source.read()
            self._install(new)
        except Exception as err:
            self.metrics.reloads.labels("error").inc()
            log.error("configuration refused, keeping generation %d: %s", self.generation, err)
            return False
        self.metrics.reloads.labels("ok").inc()
        log.info("configuration generation %d loaded", self.generation)
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.reload_interval_seconds)
            if self.source.changed():
                self.reload()

    def wake_callback(self) -> WakeCallback | None:
        if self._wake_override is not None:
            return self._wake_override
        if self.config.wake.kubernetes:
            self._kube_waker = self._kube_waker or KubeWaker()
            return self._kube_waker
        return None

    # --- caches --------------------------------------------------------------------------------

    def _redis_client(self, url: str) -> Any:
        client = self._redis.get(url)
        if client is None:
            import redis.asyncio as redis

            # A host that drops packets must not hold a request for the OS connect timeout.
            client = redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=0.5)
            self._redis[url] = client
        return client

    def _make_cache(
        self, policy: CachePolicy, namespace: str, config: GatewayConfig
    ) -> ResponseCache:
        settings = cache_settings(policy, namespace)
        spec = policy.spec
        max_entries = spec.semantic.max_entries
        if spec.backend.type == "redis":
            backend = spec.backend.redis
            if backend is None:
                raise ValueError(f"CachePolicy {policy.metadata.name}: backend.redis is required")
            url = backend.url
            if url is None and backend.url_secret_ref is not None:
                ref = f"{backend.url_secret_ref.name}/{backend.url_secret_ref.key}"
                if ref not in config.secrets:
                    raise ValueError(f"CachePolicy {policy.metadata.name}: secret {ref} unknown")
                url = config.secrets[ref].resolve()
            assert url is not None
            key = ("redis", url, namespace, policy.metadata.name)
            store = self._stores.get(key)
            if store is None:
                prefix = f"frugal:cache:{namespace}/{policy.metadata.name}:"
                store = self._stores[key] = RedisStore(self._redis_client(url), prefix, max_entries)
        else:
            key = ("memory", namespace, policy.metadata.name)
            store = self._stores.get(key)
            if store is None:
                store = self._stores[key] = MemoryStore(max_entries, self.clock)
        if isinstance(store, MemoryStore | RedisStore):
            store.max_entries = max_entries
        embedder = self._embedder(policy) if spec.semantic.enabled else None
        ref = spec.target_ref
        budget = None
        if spec.semantic.enabled:
            budget = self.falsehits.budget(namespace, ref.kind, ref.name)
        keep = max(settings.exact_ttl, settings.semantic_ttl)
        distrust = self.distrust.book(
            namespace, ref.kind, ref.name, store, keep=keep, name=settings.name
        )
        return ResponseCache(settings, store, embedder, self.metrics, budget, distrust=distrust)

    def _classifier(self) -> Embedder:
        """The embedding classifier's embedder: the builtin default."""
        key = ("builtin", "")
        if key not in self._embedders:
            self._embedders[key] = embed.builtin(None)
        return self._embedders[key]

    def _embedder(self, policy: CachePolicy) -> Embedder:
        source = policy.spec.semantic.embedding
        if source.source == "url":
            assert source.url is not None
            key: tuple[str, ...] = ("url", source.url, source.model or "")
            if key not in self._embedders:
                self._embedders[key] = embed.UrlEmbedder(
                    self.session, source.url, source.model, None
                )
        else:
            key = ("builtin", (source.model or "").lower())
            if key not in self._embedders:
                self._embedders[key] = embed.builtin(source.model)
        return self._embedders[key]
