"""The Redis cache store against a real redis-server: replicas' local index mirrors, eviction
and expiry seen through the mirror, a lookup's round trips, and a Redis outage and restart
under a running gateway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest
from test_gateway_cache import FAST, A, ask, cached_config, post, run

from frugal.gateway.store import RedisStore
from frugal.gateway.testing import RedisServer, config, gateway, scrape, sims, total


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def accept_all(_: str) -> bool:
    return True


@contextlib.asynccontextmanager
async def replicas(url: str, max_entries: int) -> AsyncIterator[tuple[Any, RedisStore, RedisStore]]:
    import redis.asyncio as redis

    one, two = redis.from_url(url), redis.from_url(url)
    try:
        prefix = "frugal:cache:test/mirror:"
        yield one, RedisStore(one, prefix, max_entries), RedisStore(two, prefix, max_entries)
    finally:
        await one.aclose()
        await two.aclose()


def test_replicas_share_entries_through_their_mirrors(redis_server: RedisServer) -> None:
    rng = np.random.default_rng(3)
    vectors = unit(rng.standard_normal((8, 64)).astype(np.float32))

    async def test() -> None:
        async with replicas(redis_server.url, max_entries=5) as (_, first, second):

            async def add(store: RedisStore, i: int, scope: str = "alpha") -> None:
                await store.add(
                    scope, context="c", vector=vectors[i], query=f"q{i}", entry={"i": i}, ttl=60
                )

            await add(first, 0)
            assert await second.search("alpha", "c", vectors[0], 0.95, accept_all) == (
                {"i": 0},
                pytest.approx(1.0),
            )
            await add(second, 1)
            found = await first.search("alpha", "c", vectors[1], 0.95, accept_all)
            assert found is not None
            assert found[0] == {"i": 1}
            # another tenant, another context: nothing
            assert await second.search("beta", "c", vectors[0], 0.5, accept_all) is None
            assert await second.search("alpha", "d", vectors[0], 0.5, accept_all) is None
            await add(first, 7, scope="beta")
            assert await second.search("alpha", "c", vectors[7], 0.95, accept_all) is None
            # the guard sees the cached question
            assert await second.search("alpha", "c", vectors[0], 0.95, lambda q: q != "q0") is None
            # past max_entries the oldest are evicted in Redis: a replica that mirrored them
            # does not serve them, and forgets them
            for i in range(2, 7):
                await add(first, i)
            mirror = second._mirrors["alpha"]
            assert await second.search("alpha", "c", vectors[0], 0.95, accept_all) is None
            assert await second.search("alpha", "c", vectors[1], 0.95, accept_all) is None
            assert all(entry[2] for entry in mirror.entries.values())
            assert len(mirror.entries) <= 5
            for i in range(2, 7):
                found = await second.search("alpha", "c", vectors[i], 0.95, accept_all)
                assert found is not None
                assert found[0] == {"i": i}

    run(test)


def test_entries_expire_in_every_replica(redis_server: RedisServer) -> None:
    rng = np.random.default_rng(4)
    vectors = unit(rng.standard_normal((2, 32)).astype(np.float32))

    async def test() -> None:
        async with replicas(redis_server.url, max_entries=10) as (_, first, second):
            await first.add("a", context="c", vector=vectors[0], query="q", entry={}, ttl=0.5)
            await first.add("a", context="c", vector=vectors[1], query="q", entry={}, ttl=60)
            assert await second.search("a", "c", vectors[0], 0.95, accept_all) is not None
            deadline = asyncio.get_running_loop().time() + 20
            while await second.search("a", "c", vectors[0], 0.95, accept_all) is not None:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.1)
            assert await first.search("a", "c", vectors[0], 0.95, accept_all) is None
            assert await second.search("a", "c", vectors[1], 0.95, accept_all) is not None

    run(test)


def test_a_lookup_reads_only_news_and_candidates(redis_server: RedisServer) -> None:
    """A warm replica's lookup is an XRANGE of what is new plus one HMGET per candidate, and a
    new replica catches up from the stream in the background (past ``BULK`` records)."""
    rng = np.random.default_rng(5)
    vectors = unit(rng.standard_normal((1500, 48)).astype(np.float32))

    async def test() -> None:
        async with replicas(redis_server.url, max_entries=5000) as (client, first, second):
            for i, v in enumerate(vectors):
                await first.add("a", context="c", vector=v, query=f"q{i}", entry={"i": i}, ttl=60)
            # a new replica: its first lookup starts indexing the stream in the background,
            # and lookups are misses until that is done
            assert await second.search("a", "c", vectors[1234], 0.95, accept_all) is None
            catching_up = second._mirrors["a"].catching_up
            assert catching_up is not None
            assert await second.search("a", "c", vectors[1234], 0.95, accept_all) is None
            await catching_up
            found = await second.search("a", "c", vectors[1234], 0.95, accept_all)
            assert found is not None
            assert found[0] == {"i": 1234}
            assert len(second._mirrors["a"].entries) == 1500
            await client.config_resetstat()
            found = await second.search("a", "c", vectors[42], 0.95, accept_all)
            assert found is not None
            assert found[0] == {"i": 42}
            stats = await client.info("commandstats")
            calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
            assert calls.pop("xrange") == 1
            assert 1 <= calls.pop("hmget") <= 16
            assert set(calls) <= {"config|resetstat", "info"}, calls  # nothing else: no listing

    run(test)


def test_gateway_serves_through_a_redis_outage_and_uses_it_again(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="frugal.gateway")

    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", **FAST)
            data = cached_config(
                fleet,
                "outage",
                backend={"type": "redis", "redis": {"url": redis_server.url}},
                semantic={"enabled": True, "threshold": 0.8, "embedding": {"model": "ngram"}},
            )
            async with gateway(config(**data, limits={"falseHitSampleRate": 0})) as client:
                assert (await post(client, ask("How do I reset my password?"), A))[0] == "miss"
                assert (await post(client, ask("how do I reset my password"), A))[0] == "semantic"

                redis_server.stop()  # no persistence: every entry is lost
                caplog.clear()
                for i in range(6):  # every request answered, each by the model
                    kind, _ = await post(client, ask(f"How do I reset my password? {i}"), A)
                    assert kind == "miss"
                    kind, _ = await post(client, ask("How do I reset my password?"), A)
                    assert kind == "miss"
                    await asyncio.sleep(0.3)  # past the store's retry pause now and then
                down = [r for r in caplog.records if "unavailable" in r.getMessage()]
                assert len(down) == 1, [r.getMessage() for r in down]
                samples = await scrape(client)
                assert total(samples, "frugal_gateway_cache_errors_total") >= 1

                redis_server.dir.mkdir(parents=True, exist_ok=True)
                redis_server.start()
                deadline = asyncio.get_running_loop().time() + 30
                body = ask("What are your opening hours?")
                while (await post(client, body, A))[0] != "exact":
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.2)
                assert any("answers again" in r.getMessage() for r in caplog.records)
                # the replica still mirrors the lost entry: it must not be served
                assert (await post(client, ask("how do I reset my password"), A))[0] == "miss"
                assert (await post(client, ask("How do I reset my password"), A))[0] == "semantic"

    run(test)
