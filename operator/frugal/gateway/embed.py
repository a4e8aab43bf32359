"""Embedders for the semantic cache and the embedding classifier.

- ``minilm`` (the ``builtin`` default): all-MiniLM-L6-v2 run in numpy (:mod:`.minilm`), a real
  sentence-embedding model: paraphrases score high, unrelated questions low. Offline, CPU,
  about 30 ms per short query on one core; needs the weights package installed.
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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import aiohttp
import numpy as np

from frugal.gateway import minilm

log = logging.getLogger("frugal.gateway")

NGRAM_DIM = 1024
# One thread: numpy already uses a core fully on these matrix sizes, and requests queue fairly.
_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frugal-embed")


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


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU, off the event loop."""

    id = "all-MiniLM-L6-v2"

    def __init__(self) -> None:
        self.model = minilm.load()

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_EXECUTOR, self.model.embed, list(texts))


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
