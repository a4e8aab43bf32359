"""Live quality: a sample of requests is also answered by the reference tier, off the user's path.

The served answer is compared with the reference answer by token-set Jaccard similarity (1.0
for the same words, 0.0 for none in common); the rolling mean per tier is the gauge
``frugal_gateway_quality_ratio`` that the operator's reroute loop reads. Against the engine
simulator (whose wrong answers share no word with the right one) a tier of quality q scores q.

Shadow calls are fire-and-forget tasks under a concurrency bound: a sample that finds the bound
full is skipped, never queued, so shadowing can never slow or pile up behind user traffic. The
reference tier is never woken for a shadow call, and its spend is metered apart. Each
comparison remembers when the compared answer was given, so that a caller told of the new mean
(``observe``) also learns when the window it averages began (:mod:`frugal.gateway.distrust`).
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable

from frugal.gateway.background import BoundedTasks
from frugal.gateway.metering import Metrics

log = logging.getLogger("frugal.gateway")

_TOKEN = re.compile(r"\w+")

Observer = Callable[[float, float], None]
"""Told (rolling mean, when the window's oldest compared answer was given) after a comparison."""


def similarity(answer: str, reference: str) -> float:
    """Token-set Jaccard similarity of two answers, case-insensitive; two empty answers agree."""
    a = set(_TOKEN.findall(answer.lower()))
    b = set(_TOKEN.findall(reference.lower()))
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class Quality:
    """Rolling means per (policy, namespace, tier), published as gauges."""

    def __init__(self, metrics: Metrics, window: int) -> None:
        self.metrics = metrics
        self.window = window
        self._samples: dict[tuple[str, str, str], deque[tuple[float, float]]] = {}
        """(similarity, when the compared answer was given) per tier, oldest first."""

    def add(
        self, policy: str, namespace: str, tier: str, value: float, at: float | None = None
    ) -> tuple[float, float]:
        """Add one comparison of an answer given at ``at`` (wall clock; default now):
        (the new rolling mean, when the window's oldest compared answer was given)."""
        samples = self._samples.get((policy, namespace, tier))
        if samples is None or samples.maxlen != self.window:
            samples = deque(samples or (), maxlen=self.window)
            self._samples[(policy, namespace, tier)] = samples
        samples.append((value, time.time() if at is None else at))
        mean = sum(v for v, _ in samples) / len(samples)
        self.metrics.quality.labels(policy, namespace, tier).set(mean)
        return mean, min(t for _, t in samples)

    def reference(self, policy: str, namespace: str, tier: str) -> None:
        """The reference tier is the yardstick: its quality is 1 by definition."""
        self.metrics.quality.labels(policy, namespace, tier).set(1.0)


class ShadowSampler:
    """Runs shadow comparisons as background tasks, at most ``concurrency`` at once."""

    def __init__(self, metrics: Metrics, quality: Quality, concurrency: int) -> None:
        self.metrics = metrics
        self.quality = quality
        self.concurrency = concurrency
        self._tasks = BoundedTasks()

    def submit(
        self,
        policy: str,
        namespace: str,
        tier: str,
        answer: str,
        reference: Callable[[], Awaitable[str | None]],
        *,
        at: float | None = None,
        observe: Observer | None = None,
    ) -> bool:
        """Start one comparison of an answer given at ``at`` unless the bound is full; True
        if started. ``observe`` is told the new mean and window start."""
        at = time.time() if at is None else at
        started = self._tasks.start(
            lambda: self._compare(
                policy, namespace, tier, answer, reference, at=at, observe=observe
            ),
            self.concurrency,
        )
        if not started:
            self.metrics.shadow.labels(policy, namespace, tier, "skipped").inc()
        return started

    async def _compare(
        self,
        policy: str,
        namespace: str,
        tier: str,
        answer: str,
        reference: Callable[[], Awaitable[str | None]],
        *,
        at: float,
        observe: Observer | None,
    ) -> None:
        try:
            expected = await reference()
        except Exception as err:  # a failed shadow call must never surface anywhere else
            log.debug("shadow call for %s/%s failed: %s", policy, tier, type(err).__name__)
            expected = None
        if expected is None:
            self.metrics.shadow.labels(policy, namespace, tier, "failed").inc()
            return
        self.metrics.shadow.labels(policy, namespace, tier, "compared").inc()
        mean, since = self.quality.add(policy, namespace, tier, similarity(answer, expected), at)
        if observe is not None:
            observe(mean, since)

    async def drain(self) -> None:
        """Cancel outstanding comparisons (shutdown)."""
        await self._tasks.cancel_all()

    @property
    def active(self) -> int:
        return len(self._tasks)
