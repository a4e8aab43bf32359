"""Embedders for the semantic cache and the embedding classifier.

- ``minilm`` (the ``builtin`` default): all-MiniLM-L6-v2 run in numpy (:mod:`.minilm`), a real
  sentence-embedding model: paraphrases score high, unrelated questions low. Offline, CPU,
  about 15–30 ms per short query on one core, less per query in a batch; needs the
  weights package installed. Concurrent requests are micro-batched (:class:`Batcher`).
- ``hashed-ngram``: character 3–5-grams and words hashed into 1024 dimensions with sublinear
  term frequency. Deterministic, instant, dependency-free beyond numpy — but lexical: it finds
  near-identical wording, not paraphrases. The fallback when MiniLM's weights are absent.
- ``url``: any OpenAI-compatible ``/v1/embeddings`` API (an InferenceEndpoint serving an
  embedding model).

Every embedder returns L2-normalised float32 rows, so cosine similarity is a dot product, and
has an ``id`` that goes into the semantic context: vectors of different embedders never meet.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
import numpy as np

from frugal.gateway import minilm

log = logging.getLogger("frugal.gateway")

NGRAM_DIM = 1024
# One thread: a batch keeps a core busy, and the other core serves the event loop.
_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frugal-embed")
MAX_QUEUED = 64
"""Texts waiting to be embedded, at most (see :class:`Batcher`)."""
MAX_WAIT = 0.25
"""Seconds a text may be expected to wait for the embedder, at most (see :class:`Batcher`)."""


class EmbedderBusyError(RuntimeError):
    """The embedder's queue is full: the caller goes on without an embedding."""


class Embedder(Protocol):
    id: str

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _normalise_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


class HashedNgramEmbedder:
    """Feature hashing of character n-grams and words (lexical similarity only)."""

    def __init__(self, dim: int = NGRAM_DIM) -> None:
        self.dim = dim
        self.id = f"hashed-ngram-{dim}"

    def _features(self, text: str) -> dict[str, float]:
        words = re.findall(r"\w+", text.lower())
        counts: dict[str, float] = {}
        for word in words:
            counts["w:" + word] = counts.get("w:" + word, 0) + 1
            padded = f" {word} "
            for n in (3, 4, 5):
                for i in range(max(1, len(padded) - n + 1)):
                    gram = "c:" + padded[i : i + n]
                    counts[gram] = counts.get(gram, 0) + 1
        return counts

    def vector(self, text: str) -> np.ndarray:
        out = np.zeros(self.dim, dtype=np.float32)
        for feature, count in self._features(text).items():
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self.dim
            sign = 1.0 if digest[4] & 1 else -1.0
            out[index] += sign * (1.0 + math.log(count))
        return out

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return _normalise_rows(np.stack([self.vector(t) for t in texts]))


@dataclass
class _Waiting:
    texts: list[str]
    done: asyncio.Future[np.ndarray]


@dataclass
class Batcher:
    """Micro-batching in front of a blocking batch function that runs on the embed thread.

    While a batch is being embedded, new requests wait; the next batch takes everything that
    waits (whole requests, up to ``max_batch`` texts, at least one request) and embeds it in
    one call, which costs much less per text than one call each. The queue is bounded: a
    request that would take it past ``max_queued`` texts, or whose expected wait (texts ahead
    of it, in the queue and in the running batch, times the recent cost per text) is above
    ``max_wait`` seconds, is refused at once with :class:`EmbedderBusyError`, so that overload
    turns into cache misses (the caller skips the semantic lookup) instead of an ever longer
    wait in front of every request. The cost per text is measured, so the bound follows the
    CPU the embedder actually gets. A request that finds nothing queued is always taken.

    No long-lived task: the request that finds no batch running starts a drain task on its own
    event loop, which ends when the queue is empty.
    """

    run: Callable[[list[str]], np.ndarray]
    max_queued: int = MAX_QUEUED
    max_batch: int = 32
    max_wait: float = MAX_WAIT
    _queue: list[_Waiting] = field(default_factory=list)
    _queued: int = 0
    _running: int = 0
    _per_text: float = 0.0
    """Seconds per text of recent batches (moving average)."""
    _drain: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Texts waiting (not counting the batch being embedded)."""
        return self._queued

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if self._queued > 0:
            ahead = self._queued + self._running
            if (
                self._queued + len(texts) > self.max_queued
                or ahead * self._per_text > self.max_wait
            ):
                raise EmbedderBusyError(f"{self._queued} texts already wait for the embedder")
        loop = asyncio.get_running_loop()
        waiting = _Waiting(texts, loop.create_future())
        self._queue.append(waiting)
        self._queued += len(texts)
        if self._drain is None or self._drain.done() or self._drain.get_loop() is not loop:
            self._drain = loop.create_task(self._run_batches())
        return await waiting.done

    def _take(self) -> list[_Waiting]:
        batch, size = [], 0
        while self._queue and (not batch or size + len(self._queue[0].texts) <= self.max_batch):
            waiting = self._queue.pop(0)
            batch.append(waiting)
            size += len(waiting.texts)
        self._queued -= size
        return batch

    async def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch = self._take()
            texts = [t for waiting in batch for t in waiting.texts]
            self._running = len(texts)
            started = loop.time()
            try:
                vectors = await loop.run_in_executor(_EXECUTOR, self.run, texts)
            except Exception as err:  # every waiter learns of the failure
                for waiting in batch:
                    if not waiting.done.done():
                        waiting.done.set_exception(err)
                continue
            finally:
                self._running = 0
            per_text = (loop.time() - started) / len(texts)
            self._per_text = (
                per_text if not self._per_text else 0.8 * self._per_text + 0.2 * per_text
            )
            at = 0
            for waiting in batch:
                rows = vectors[at : at + len(waiting.texts)]
                at += len(waiting.texts)
                if not waiting.done.done():  # its request may have been cancelled
                    waiting.done.set_result(rows)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU, off the event loop, micro-batched."""

    id = "all-MiniLM-L6-v2"

    def __init__(
        self,
        max_queued: int = MAX_QUEUED,
        max_batch: int = 2 * minilm.BATCH_SIZE,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.model = minilm.load()
        self.batcher = Batcher(self.model.embed, max_queued, max_batch, max_wait)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return await self.batcher.embed(texts)


class UrlEmbedder:
    """An OpenAI-compatible embeddings API."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, model: str | None, api_key: str | None
    ) -> None:
        base = url.rstrip("/")
        self.endpoint = base + ("/embeddings" if base.endswith("/v1") else "/v1/embeddings")
        self.model = model
        self.session = session
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.id = f"url:{self.endpoint}:{model or ''}"

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        body: dict[str, object] = {"input": list(texts)}
        if self.model:
            body["model"] = self.model
        timeout = aiohttp.ClientTimeout(total=30)
        async with self.session.post(
            self.endpoint, json=body, headers=self.headers, timeout=timeout
        ) as resp:
            if resp.status != 200:
                raise RuntimeError(f"embeddings API answered HTTP {resp.status}")
            data = await resp.json()
        rows = sorted(data["data"], key=lambda d: d.get("index", 0))
        return _normalise_rows(np.array([r["embedding"] for r in rows], dtype=np.float32))


def builtin(model: str | None) -> Embedder:
    """The builtin embedder ``model`` names: MiniLM by default, hashed n-grams on request.

    Without MiniLM's weights the gateway still serves, with the lexical embedder, and says so
    once in the log: thresholds tuned for MiniLM then hit less, never more wrongly (the
    false-hit guard applies either way).
    """
    name = (model or "all-MiniLM-L6-v2").lower()
    if name in {"hashed-ngram", "ngram"}:
        return HashedNgramEmbedder()
    if name not in {"all-minilm-l6-v2", "minilm"}:
        raise ValueError(f"unknown builtin embedding model {model!r} (minilm or hashed-ngram)")
    try:
        return MiniLMEmbedder()
    except FileNotFoundError as err:
        log.warning("semantic cache falls back to hashed n-grams: %s", err)
        return HashedNgramEmbedder()
