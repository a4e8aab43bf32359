"""Live quality: a sample of requests is also answered by the reference tier, off the user's path.

The served answer is compared with the reference answer by token-set Jaccard similarity (1.0
for the same words, 0.0 for none in common); the rolling mean per tier is the gauge
``frugal_gateway_quality_ratio`` that the operator's reroute loop reads. Against the engine
simulator (whose wrong answers share no word with the right one) a tier of quality q scores q.

Shadow calls are fire-and-forget tasks under a concurrency bound: a sample that finds the bound
full is skipped, never queued, so shadowing can never slow or pile up behind user traffic. The
reference tier is never woken for a shadow call, and its spend is metered apart. Each
comparison remembers when the compared answer was given, so that a caller told of the new mean
(``observe``) also learns when the window it averages began, and how much the comparisons in it
spread (:class:`Reading`): a mean of a few noisy comparisons is weak evidence of a dip
(:mod:`frugal.gateway.distrust`).
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from frugal.gateway.background import BoundedTasks
from frugal.gateway.metering import Metrics

log = logging.getLogger("frugal.gateway")

_TOKEN = re.compile(r"\w+")


@dataclass(frozen=True)
class Reading:
    """A tier's quality window after a comparison: the gauge's value and how much to trust it."""

    mean: float
    """The rolling mean (the gauge)."""
    stdev: float
    """The comparisons' sample standard deviation (0 for a single one)."""
    count: int
    """Comparisons in the window."""
    size: int
    """The window's capacity (``limits.qualityWindow``)."""
    since: float
    """When the window's oldest compared answer was given (wall clock)."""


Observer = Callable[[Reading], None]
"""Told the tier's :class:`Reading` after each comparison."""


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
    ) -> Reading:
        """Add one comparison of an answer given at ``at`` (wall clock; default now); the
        window afterwards."""
        samples = self._samples.get((policy, namespace, tier))
        if samples is None or samples.maxlen != self.window:
            samples = deque(samples or (), maxlen=self.window)
            self._samples[(policy, namespace, tier)] = samples
        samples.append((value, time.time() if at is None else at))
        values = np.fromiter((v for v, _ in samples), float, len(samples))
        mean = float(values.mean())
        stdev = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        self.metrics.quality.labels(policy, namespace, tier).set(mean)
        since = min(t for _, t in samples)
        return Reading(mean, stdev, len(values), self.window, since)

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
        if started. ``observe`` is told the window's new :class:`Reading`."""
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
        reading = self.quality.add(policy, namespace, tier, similarity(answer, expected), at)
        if observe is not None:
            observe(reading)

    async def drain(self) -> None:
        """Cancel outstanding comparisons (shutdown)."""
        await self._tasks.cancel_all()

    @property
    def active(self) -> int:
        return len(self._tasks)
