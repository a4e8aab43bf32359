"""Customer-support traffic for the demo: Banking77 queries on a compressed diurnal day.

Queries of the same intent paraphrase each other, so a semantic cache has something real to
find; the diurnal curve gives the autoscaler nights to scale down and peaks to scale up.
"""

from __future__ import annotations

import asyncio
import csv
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

DATA = Path(__file__).resolve().parent / "data" / "banking77-test.csv"


def load_queries(path: Path = DATA) -> list[tuple[str, str]]:
    with path.open(newline="") as f:
        return [(row["text"], row["category"]) for row in csv.DictReader(f)]


def diurnal(hour: float) -> float:
    """Relative request rate at a time of day: quiet nights, a morning and an afternoon peak."""
    morning = math.exp(-((hour - 10.5) ** 2) / 6)
    afternoon = 0.9 * math.exp(-((hour - 15.5) ** 2) / 8)
    return 0.08 + morning + afternoon


@dataclass
class Stats:
    """What happened to every request, for the live view and the summary."""

    sent: int = 0
    ok: int = 0
    failed: int = 0
    by_tier: Counter = field(default_factory=Counter)
    by_cache: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)

    def record(self, status: int, latency: float, headers: Mapping[str, str]) -> None:
        self.sent += 1
        if status == 200:
            self.ok += 1
            self.latencies.append(latency)
            self.by_tier[headers.get("x-frugal-tier", "?")] += 1
            self.by_cache[headers.get("x-frugal-cache", "miss")] += 1
        else:
            self.failed += 1
            self.errors[status] += 1

    def percentile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Stream:
    """One client population: which model it calls, how hard, and when."""

    model: str
    peak_rps: float
    api_key: str | None = None
    active: Callable[[float], bool] = lambda hour: True
    stats: Stats = field(default_factory=Stats)


async def drive(
    gateway: str,
    streams: list[Stream],
    *,
    hours: float,
    seconds_per_hour: float,
    on_hour: Callable[[float], None] | None = None,
    seed: int = 7,
    max_in_flight: int = 64,
) -> None:
    """Send the streams' requests through the gateway for ``hours`` simulated hours."""
    rng = random.Random(seed)
    queries = load_queries()
    limit = asyncio.Semaphore(max_in_flight)
    tasks: set[asyncio.Task] = set()
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        start = time.monotonic()
        last_hour = -1
        while (elapsed := time.monotonic() - start) < hours * seconds_per_hour:
            hour = elapsed / seconds_per_hour
            if on_hour and int(hour) != last_hour:
                last_hour = int(hour)
                on_hour(hour)
            tick = 0.1
            for stream in streams:
                if not stream.active(hour % 24):
                    continue
                expected = stream.peak_rps * diurnal(hour % 24) * tick
                count = int(expected) + (rng.random() < expected - int(expected))
                for _ in range(count):
                    text, _intent = rng.choice(queries)
                    await limit.acquire()
                    task = asyncio.create_task(_one(session, gateway, stream, text, limit))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            await asyncio.sleep(tick)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def _one(
    session: aiohttp.ClientSession,
    gateway: str,
    stream: Stream,
    text: str,
    limit: asyncio.Semaphore,
) -> None:
    body = {
        "model": stream.model,
        "messages": [
            {"role": "system", "content": "You are the support assistant of a bank."},
            {"role": "user", "content": text},
        ],
        "max_tokens": 48,
        "temperature": 0,
    }
    headers = {"Authorization": f"Bearer {stream.api_key}"} if stream.api_key else {}
    started = time.monotonic()
    try:
        async with session.post(
            f"{gateway}/v1/chat/completions", json=body, headers=headers
        ) as resp:
            await resp.read()
            stream.stats.record(resp.status, time.monotonic() - started, resp.headers)
    except (aiohttp.ClientError, TimeoutError) as err:
        stream.stats.failed += 1
        stream.stats.sent += 1
        stream.stats.errors[type(err).__name__] += 1
    finally:
        limit.release()
