"""A CachePolicy at run time: look a request up (exact, then semantic), store an answer.

Entries are scoped per tenant unless the policy says ``scope: shared``: the scope is part of
every key, so a tenant can never be served another tenant's answer. Requests the policy
excludes (tools, high temperature, n > 1, matching patterns) neither read nor write. A cache
failure (Redis down, embedder error) is counted and the request goes on as a miss: the cache
may make the gateway cheaper, never less available. While the store is down it is skipped
(``store.Outage``) and the outage is logged once when it starts and once when it ends. When
the embedder's queue is full the semantic lookup is skipped (``embed_busy``): overload turns
into misses, not into waiting. An entry its tier wrote while its quality was under the bar
(:mod:`frugal.gateway.distrust`) is a miss, and such a tier's answers are not stored.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from frugal.gateway import cachekeys, guard
from frugal.gateway.cachekeys import Exclusion
from frugal.gateway.distrust import Distrust
from frugal.gateway.embed import Embedder, EmbedderBusyError
from frugal.gateway.falsehits import SemanticBudget
from frugal.gateway.metering import Metrics
from frugal.gateway.store import Store

log = logging.getLogger("frugal.gateway")

SHARED_SCOPE = "*shared*"
"""Cannot collide with a tenant name (tenant names are [A-Za-z0-9._-])."""


@dataclass(frozen=True)
class CacheSettings:
    """Compiled ``CachePolicy.spec``."""

    name: str
    namespace: str
    target: str
    """targetRef.name: the RoutingPolicy (or InferenceEndpoint) in front of which this cache
    is, the ``policy`` label of the semantic budget's metrics, as in the request metrics."""
    exact: bool
    exact_ttl: float
    semantic: bool
    threshold: float
    semantic_ttl: float
    shared: bool
    exclusion: Exclusion
    affinity: bool
    min_prefix_tokens: int
    max_false_hit_rate: float
    """semantic.maxFalseHitRate: the semantic cache is suspended while verified hits are
    false more often than this (see :mod:`frugal.gateway.falsehits`)."""


@dataclass
class Probe:
    """One request's cache lookup, kept so that storing the answer reuses its work."""

    scope: str
    key: str | None = None
    query: str | None = None
    context: str | None = None
    vector: np.ndarray | None = None
    hit: dict[str, Any] | None = None
    hit_kind: str = "miss"
    score: float = 0.0


class ResponseCache:
    def __init__(
        self,
        settings: CacheSettings,
        store: Store,
        embedder: Embedder | None,
        metrics: Metrics,
        budget: SemanticBudget | None = None,
        *,
        distrust: Distrust | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.metrics = metrics
        self.budget = budget
        """The semantic cache's false-hit budget (state outlives this object: reloads)."""
        self.distrust = distrust
        """Spans of tiers under their quality bar (state outlives this object: reloads)."""

    def _usable(self, kind: str, entry: dict[str, Any]) -> bool:
        """Whether an entry may be served: not if its tier was distrusted when it wrote it."""
        if self.distrust is None or not self.distrust.refuses(entry):
            return True
        self.distrust.count_refused(kind, entry)
        return False

    def _count(self, operation: str) -> None:
        s = self.settings
        self.metrics.cache_errors.labels(s.name, s.namespace, operation).inc()

    def _store_up(self) -> bool:
        """Whether to call the store now (not while it is known to be down)."""
        if self.store.outage.usable():
            return True
        self._count("unavailable")
        return False

    def _error(self, operation: str, err: Exception) -> None:
        self._count(operation)
        if self.store.outage.failed():
            s = self.settings
            log.warning(
                "cache %s/%s unavailable (%s failed: %s); serving without it until it answers",
                s.namespace,
                s.name,
                operation,
                type(err).__name__,
            )

    def _ok(self) -> None:
        took = self.store.outage.succeeded()
        if took is not None:
            s = self.settings
            log.warning("cache %s/%s answers again after %.1f s", s.namespace, s.name, took)

    def excluded(self, body: dict[str, Any], prompt: str) -> str | None:
        return cachekeys.excluded(self.settings.exclusion, body, prompt)

    async def lookup(self, model: str, kind: str, body: dict[str, Any], tenant: str) -> Probe:
        s = self.settings
        probe = Probe(scope=SHARED_SCOPE if s.shared else tenant)
        if not self._store_up():
            return probe  # nothing is stored either: no key, no vector
        if s.exact:
            probe.key = cachekeys.exact_key(model, kind, body)
            try:
                found = await self.store.get(probe.scope, probe.key)
            except Exception as err:
                self._error("get", err)
                probe.key = None
                return probe
            self._ok()
            # A refused entry keeps the key: the fresh answer replaces it.
            if found is not None and self._usable("exact", found):
                probe.hit, probe.hit_kind, probe.score = found, "exact", 1.0
                return probe
        if s.semantic and self.embedder is not None:
            await self._semantic(probe, model, kind, body)
        return probe

    async def _semantic(self, probe: Probe, model: str, kind: str, body: dict[str, Any]) -> None:
        assert self.embedder is not None
        parts = cachekeys.semantic_query(kind, body)
        if parts is None:
            return
        query = parts[0]
        try:
            vector = (await self.embedder.embed([query]))[0]
        except EmbedderBusyError:
            self._count("embed_busy")
            return
        except Exception as err:
            self._count("embed")
            log.debug("embedder failed: %s", type(err).__name__)
            return
        probe.query = query
        probe.vector = vector
        probe.context = cachekeys.context_digest(model, kind, parts[1], self.embedder.id)
        # Over its false-hit budget the semantic cache serves nothing, but the question is
        # still embedded so that the answer is stored: the cache is warm when it resumes.
        if self.budget is not None and self.budget.suspended():
            return
        try:
            found = await self.store.search(
                probe.scope,
                probe.context,
                vector,
                self.settings.threshold,
                lambda cached: guard.compatible(cached, query),
                usable=lambda entry: self._usable("semantic", entry),
            )
        except Exception as err:
            self._error("search", err)
            probe.vector = None
            return
        self._ok()
        if found is not None:
            probe.hit, probe.score = found
            probe.hit_kind = "semantic"

    async def save(self, probe: Probe, entry: dict[str, Any]) -> None:
        """Store an answer (``entry`` has its ``tier`` and wall-clock ``at``), unless its tier
        is distrusted at that moment: it would not be served."""
        s = self.settings
        at = entry.get("at")
        distrust = self.distrust
        tier = str(entry.get("tier", ""))
        if distrust is not None and isinstance(at, float) and not distrust.writable(tier, at):
            return
        if not self._store_up():
            return
        try:
            if probe.key is not None:
                await self.store.put(probe.scope, probe.key, entry, s.exact_ttl)
            if probe.vector is not None and probe.query and probe.context:
                await self.store.add(
                    probe.scope,
                    context=probe.context,
                    vector=probe.vector,
                    query=probe.query,
                    entry=entry,
                    ttl=s.semantic_ttl,
                )
        except Exception as err:
            self._error("put", err)
            return
        self._ok()


def entry_body(
    kind: str, model: str, text: str, finish_reason: str | None, usage: dict[str, int]
) -> dict[str, Any]:
    """A whole completion body for an answer that arrived as a stream."""
    chat = kind == "chat"
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason or "stop"}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {
        "id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage,
    }


def fresh(body: dict[str, Any], kind: str) -> dict[str, Any]:
    """A cached body with a new id and time, as a new answer would have."""
    prefix = "chatcmpl-" if kind == "chat" else "cmpl-"
    return body | {"id": prefix + uuid.uuid4().hex, "created": int(time.time())}


def stream_events(body: dict[str, Any], kind: str, include_usage: bool) -> list[bytes]:
    """A cached answer as the SSE events a streaming client expects, ending in [DONE]."""
    import json

    chat = kind == "chat"
    choice = (body.get("choices") or [{}])[0]
    text = (choice.get("message") or {}).get("content", "") if chat else choice.get("text", "")
    text = text or ""
    base = {
        "id": body.get("id"),
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": body.get("created"),
        "model": body.get("model"),
    }

    def event(obj: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n".encode()

    def delta(piece: str, finish: str | None, role: bool = False) -> dict[str, Any]:
        if chat:
            d: dict[str, Any] = {"role": "assistant", "content": ""} if role else {"content": piece}
            c = {"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}
        else:
            c = {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish}
        return base | {"choices": [c]}

    events = [event(delta("", None, role=True))] if chat else []
    pieces = [text[i : i + 64] for i in range(0, len(text), 64)] or [""]
    finish = choice.get("finish_reason") or "stop"
    for i, piece in enumerate(pieces):
        events.append(event(delta(piece, finish if i == len(pieces) - 1 else None)))
    if include_usage and body.get("usage"):
        events.append(event(base | {"choices": [], "usage": body["usage"]}))
    events.append(b"data: [DONE]\n\n")
    return events
