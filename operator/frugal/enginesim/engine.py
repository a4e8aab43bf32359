"""The simulated engine: a scheduler with max_num_seqs slots, paced decoding and a prefix cache.

It holds no model: what to answer is decided up front (:mod:`frugal.enginesim.answers`); the
engine only decides *when* each token comes out and keeps the metrics vLLM would keep. Pacing
re-reads the configuration and wakes on every change, so a knob turned through ``/sim/config``
applies to requests already in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from types import TracebackType

from frugal.enginesim.answers import CHARS_PER_TOKEN, count_tokens
from frugal.enginesim.config import SimConfig
from frugal.enginesim.metrics import EngineMetrics, Load

BLOCK_TOKENS = 16  # vLLM's default KV block size; prefix caching works on full blocks


class PrefixCache:
    """Which full prompt blocks were prefilled before, as vLLM's block hashes see them.

    A block's key is a hash of the whole prompt up to its end, so a block only hits when
    everything before it matched too. Least recently used blocks are forgotten past ``capacity``.
    """

    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = capacity
        self._blocks: OrderedDict[bytes, None] = OrderedDict()

    def prefill(self, prompt: str) -> int:
        """Tokens of ``prompt`` served from the cache; its blocks are cached from now on."""
        block_chars = BLOCK_TOKENS * CHARS_PER_TOKEN
        running = hashlib.blake2b(digest_size=16)
        hits, hitting = 0, True
        for start in range(0, len(prompt) - block_chars + 1, block_chars):
            running.update(prompt[start : start + block_chars].encode())
            key = running.copy().digest()
            hitting = hitting and key in self._blocks
            hits += hitting
            self._blocks[key] = None
            self._blocks.move_to_end(key)
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)
        return hits * BLOCK_TOKENS


class Engine:
    """The mutable state of one simulator: configuration, queue, batch, cache and metrics."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.running = 0
        self.waiting = 0
        self.started_at = time.monotonic()
        self.started_wall = time.time()
        self.prefix_cache = PrefixCache()
        self.metrics = EngineMetrics(self.load)
        self._failures = random.Random(config.seed)
        self._slots = asyncio.Condition()
        self._changed = asyncio.Event()

    def start(self) -> None:
        """Begin "loading weights" now (called when the server starts listening)."""
        self.started_at = time.monotonic()
        self.started_wall = time.time()

    @property
    def loading(self) -> bool:
        return time.monotonic() < self.started_at + self.config.startup_delay_seconds

    def load(self) -> Load:
        c = self.config
        return Load(c.model, self.running, self.waiting, c.max_num_seqs)

    def roll_failure(self) -> bool:
        """Whether this request fails: a seeded sequence, so a run's failures are repeatable."""
        return self._failures.random() < self.config.failure_rate

    async def reconfigure(self, config: SimConfig) -> None:
        """Apply new knobs at once: wake paced requests and the queue so they re-read them."""
        old, self.config = self.config, config
        if config.seed != old.seed:
            self._failures = random.Random(config.seed)
        self.metrics.rename(config.model)
        self._changed.set()
        self._changed = asyncio.Event()
        async with self._slots:
            self._slots.notify_all()

    def request(self, prompt: str, prompt_tokens: int | None = None) -> Run:
        """A request's life in the engine; use as ``async with``."""
        return Run(self, prompt, count_tokens(prompt) if prompt_tokens is None else prompt_tokens)

    async def acquire(self) -> None:
        """Wait for a free sequence slot; the request counts as waiting meanwhile."""
        self.waiting += 1
        try:
            async with self._slots:
                await self._slots.wait_for(lambda: self.running < self.config.max_num_seqs)
                self.running += 1
        finally:
            self.waiting -= 1

    async def release(self) -> None:
        self.running -= 1
        async with self._slots:
            self._slots.notify_all()

    async def sleep_until(self, due: Callable[[], float]) -> None:
        """Sleep until the monotonic time ``due()``, recomputed after every config change."""
        while (delay := due() - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), delay)


class Run:
    """One request: queued, then scheduled (prefill), then decoding token by token, then done.

    Leaving the ``async with`` block without :meth:`finish` (the client went away, an error)
    counts the request as aborted, as vLLM does.
    """

    def __init__(self, engine: Engine, prompt: str, prompt_tokens: int) -> None:
        self.engine = engine
        self.prompt = prompt
        self.prompt_tokens = prompt_tokens
        self.generated = 0
        self.finish_reason = "abort"
        self.arrived = time.monotonic()
        self._scheduled = self._last = self.arrived

    async def __aenter__(self) -> Run:
        await self.engine.acquire()
        self._scheduled = time.monotonic()
        cached = self.engine.prefix_cache.prefill(self.prompt)
        self.engine.metrics.scheduled(self.prompt_tokens, min(cached, self.prompt_tokens))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.engine.release()
        self.engine.metrics.finished(self.finish_reason, time.monotonic() - self.arrived)

    async def prefill(self) -> None:
        """Wait out time-to-first-token (counted from arrival, queueing included, like vLLM)."""
        await self.engine.sleep_until(lambda: self._scheduled + self.engine.config.ttft_seconds)
        self._last = time.monotonic()
        self.engine.metrics.first_token(self._last - self.arrived)

    async def emit(self) -> None:
        """Wait until the next token is due at tokens_per_second, then count it."""
        if self.generated:
            await self.engine.sleep_until(self._next_due)
        self._last = time.monotonic()
        self.generated += 1
        self.engine.metrics.token()

    def _next_due(self) -> float:
        tps = self.engine.config.tokens_per_second
        return self._last + 1 / tps if tps > 0 else 0.0

    def finish(self, reason: str) -> None:
        self.finish_reason = reason
