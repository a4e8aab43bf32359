"""Where cache entries live: in this process, or in Redis shared by every gateway replica.

Both stores keep, per scope (a tenant, or everything for a shared cache), exact entries by key
and semantic entries as (vector, context digest, question, entry). Both bound a scope to
``max_entries`` per kind, evicting the oldest first, and expire entries after their TTL.

Semantic search is a linear scan with numpy over the scope's vectors. At the sizes a
per-tenant answer cache reaches (thousands to tens of thousands of entries of 384 floats) that is
a few milliseconds, simpler and more predictable than an approximate index. In Redis the
vectors are stored as float32 bytes in one hash per entry, indexed by a sorted set per scope
(member = entry id, score = expiry time) that also drives eviction; each gateway replica keeps
the vectors it has fetched, so a search reads the index and only the entries new to it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import numpy as np

Accept = Callable[[str], bool]
"""The false-hit guard: may a cached answer to this question be served?"""


class Store(Protocol):
    async def get(self, scope: str, key: str) -> dict[str, Any] | None: ...

    async def put(self, scope: str, key: str, entry: dict[str, Any], ttl: float) -> None: ...

    async def search(
        self, scope: str, context: str, vector: np.ndarray, threshold: float, accept: Accept
    ) -> tuple[dict[str, Any], float] | None: ...

    async def add(
        self,
        scope: str,
        *,
        context: str,
        vector: np.ndarray,
        query: str,
        entry: dict[str, Any],
        ttl: float,
    ) -> None: ...

    async def close(self) -> None: ...


def best_accepted(
    scores: np.ndarray, threshold: float, accept_at: Callable[[int], bool]
) -> tuple[int, float] | None:
    """The most similar candidate at or above ``threshold`` that the guard accepts."""
    above = np.flatnonzero(scores >= threshold)
    for i in above[np.argsort(-scores[above], kind="stable")]:
        if accept_at(int(i)):
            return int(i), float(scores[i])
    return None


@dataclass
class _Semantic:
    vector: np.ndarray
    context: str
    query: str
    entry: dict[str, Any]
    expires: float


@dataclass
class _Scope:
    exact: OrderedDict[str, tuple[float, dict[str, Any]]] = field(default_factory=OrderedDict)
    semantic: OrderedDict[str, _Semantic] = field(default_factory=OrderedDict)


class MemoryStore:
    """Per-process entries; lost on restart and not shared between replicas."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._scopes: dict[str, _Scope] = {}

    def _scope(self, scope: str) -> _Scope:
        return self._scopes.setdefault(scope, _Scope())

    async def get(self, scope: str, key: str) -> dict[str, Any] | None:
        found = self._scope(scope).exact.get(key)
        if found is None:
            return None
        expires, entry = found
        if expires <= self.clock():
            del self._scope(scope).exact[key]
            return None
        return entry

    async def put(self, scope: str, key: str, entry: dict[str, Any], ttl: float) -> None:
        exact = self._scope(scope).exact
        exact[key] = (self.clock() + ttl, entry)
        exact.move_to_end(key)
        while len(exact) > self.max_entries:
            exact.popitem(last=False)

    def _live(self, scope: str) -> list[_Semantic]:
        semantic = self._scope(scope).semantic
        now = self.clock()
        for key in [k for k, s in semantic.items() if s.expires <= now]:
            del semantic[key]
        return list(semantic.values())

    async def search(
        self, scope: str, context: str, vector: np.ndarray, threshold: float, accept: Accept
    ) -> tuple[dict[str, Any], float] | None:
        rows = [
            s for s in self._live(scope) if s.context == context and len(s.vector) == len(vector)
        ]
        if not rows:
            return None
        scores = np.stack([s.vector for s in rows]) @ vector
        found = best_accepted(scores, threshold, lambda i: accept(rows[i].query))
        return (rows[found[0]].entry, found[1]) if found else None

    async def add(
        self,
        scope: str,
        *,
        context: str,
        vector: np.ndarray,
        query: str,
        entry: dict[str, Any],
        ttl: float,
    ) -> None:
        semantic = self._scope(scope).semantic
        semantic[uuid.uuid4().hex] = _Semantic(vector, context, query, entry, self.clock() + ttl)
        while len(semantic) > self.max_entries:
            semantic.popitem(last=False)

    async def close(self) -> None:
        self._scopes.clear()


class RedisStore:
    """Entries in Redis (redis-py asyncio), shared by all gateway replicas."""

    def __init__(self, client: Any, prefix: str, max_entries: int) -> None:
        self.redis = client
        self.prefix = prefix
        self.max_entries = max_entries
        self._mirror: dict[str, dict[str, tuple[np.ndarray, str]]] = {}
        """Vectors already fetched, by scope and entry id: an entry never changes once written,
        so each search fetches only entries it has not seen (and forgets removed ones)."""

    def _key(self, kind: str, scope: str, rest: str = "") -> str:
        base = f"{self.prefix}{kind}:{quote(scope, safe='')}"
        return f"{base}:{rest}" if rest else base

    async def get(self, scope: str, key: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self._key("x", scope, key))
        return json.loads(raw) if raw else None

    async def _bound(self, index: str, entry_kind: str, scope: str) -> None:
        """Drop expired index members and the oldest beyond ``max_entries``."""
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(index, "-inf", now_ms)
            pipe.zcard(index)
            _, count = await pipe.execute()
        excess = int(count) - self.max_entries
        if excess > 0:
            popped = await self.redis.zpopmin(index, excess)
            keys = [self._key(entry_kind, scope, m.decode()) for m, _ in popped]
            if keys:
                await self.redis.delete(*keys)

    async def put(self, scope: str, key: str, entry: dict[str, Any], ttl: float) -> None:
        ttl_ms = max(1, int(ttl * 1000))
        index = self._key("xi", scope)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._key("x", scope, key), json.dumps(entry), px=ttl_ms)
            pipe.zadd(index, {key: int(time.time() * 1000) + ttl_ms})
            pipe.pexpire(index, ttl_ms)
            await pipe.execute()
        await self._bound(index, "x", scope)

    async def search(
        self, scope: str, context: str, vector: np.ndarray, threshold: float, accept: Accept
    ) -> tuple[dict[str, Any], float] | None:
        index = self._key("si", scope)
        now_ms = int(time.time() * 1000)
        ids = [m.decode() for m in await self.redis.zrangebyscore(index, now_ms, "+inf")]
        mirror = self._mirror.setdefault(scope, {})
        for gone in set(mirror) - set(ids):
            del mirror[gone]
        missing = [entry_id for entry_id in ids if entry_id not in mirror]
        if missing:
            async with self.redis.pipeline(transaction=False) as pipe:
                for entry_id in missing:
                    pipe.hmget(self._key("s", scope, entry_id), "v", "c")
                rows = await pipe.execute()
            for entry_id, (v, c) in zip(missing, rows, strict=True):
                if v is not None and c is not None:
                    mirror[entry_id] = (np.frombuffer(v, dtype=np.float32), c.decode())
        dim = len(vector)
        keep = [
            (entry_id, mirror[entry_id][0])
            for entry_id in ids
            if entry_id in mirror
            and mirror[entry_id][1] == context
            and len(mirror[entry_id][0]) == dim
        ]
        if not keep:
            return None
        scores = np.stack([v for _, v in keep]) @ vector
        # The guard needs the question text: fetch it only for candidates above the threshold.
        above = [int(i) for i in np.flatnonzero(scores >= threshold)]
        if not above:
            return None
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in above:
                pipe.hmget(self._key("s", scope, keep[i][0]), "q", "e")
            details = await pipe.execute()
        texts: dict[int, tuple[str, bytes]] = {
            i: (q.decode(), e) for i, (q, e) in zip(above, details, strict=True) if q and e
        }
        found = best_accepted(scores, threshold, lambda i: i in texts and accept(texts[i][0]))
        return (json.loads(texts[found[0]][1]), found[1]) if found else None

    async def add(
        self,
        scope: str,
        *,
        context: str,
        vector: np.ndarray,
        query: str,
        entry: dict[str, Any],
        ttl: float,
    ) -> None:
        ttl_ms = max(1, int(ttl * 1000))
        entry_id = uuid.uuid4().hex
        key = self._key("s", scope, entry_id)
        index = self._key("si", scope)
        mapping = {
            "v": np.asarray(vector, dtype=np.float32).tobytes(),
            "c": context,
            "q": query,
            "e": json.dumps(entry),
        }
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=mapping)
            pipe.pexpire(key, ttl_ms)
            pipe.zadd(index, {entry_id: int(time.time() * 1000) + ttl_ms})
            pipe.pexpire(index, ttl_ms)
            await pipe.execute()
        await self._bound(index, "s", scope)

    async def close(self) -> None:
        """The client is shared and closed by its owner."""
