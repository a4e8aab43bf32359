"""The semantic cache's false-hit budget (``CachePolicy.spec.semantic.maxFalseHitRate``).

The guard (:mod:`frugal.gateway.guard`) refuses the pairs it can tell apart; this measures what
gets past it. A sample of semantic hits (``limits.falseHitSampleRate``) is *verified*: after the
cached answer was served, the same request goes to the tier that produced that answer, in a
background task, and the fresh answer is compared with the cached one by the shadow sampler's
measure (:func:`frugal.gateway.shadow.similarity`). Below :data:`FALSE_HIT_BELOW` the hit was a
false hit: the model answers this question differently from the one whose answer was served.

Each CachePolicy keeps the verdicts of its last ``limits.falseHitWindow`` verified hits. Once
there are at least ``limits.falseHitMinSamples`` and their false-hit rate is above
``maxFalseHitRate``, the policy's semantic cache is *suspended* for
``limits.semanticSuspendSeconds``: lookups skip the semantic search (exact hits still answer),
misses still store their entries, and no semantic hit is served, so none is verified. Then it
resumes with an empty window, and verdicts of hits sampled before the suspension are not counted
in the new one.

Verifications are fire-and-forget tasks under a concurrency bound (``limits.shadowConcurrency``,
counted apart from shadow calls): a sample that finds the bound full is skipped, never queued.
A verification never wakes a tier, stays within its in-flight limit, and its spend is metered
apart (``frugal_gateway_semantic_verify_cost_usd_total``). The state is per gateway replica and
survives configuration reloads.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from frugal.gateway.background import BoundedTasks
from frugal.gateway.config import Limits
from frugal.gateway.metering import Metrics
from frugal.gateway.shadow import similarity

log = logging.getLogger("frugal.gateway")

FALSE_HIT_BELOW = 0.5
"""A fresh answer whose similarity to the cached one is below this makes the hit a false one:
they share less than half of their distinct words."""


class SemanticBudget:
    """One CachePolicy's window of verdicts and suspension state.

    ``policy`` is the name of what the CachePolicy targets (a RoutingPolicy, or an
    InferenceEndpoint called directly): the ``policy`` label of its metrics."""

    def __init__(self, monitor: FalseHitMonitor, policy: str, namespace: str) -> None:
        self._monitor = monitor
        self.policy = policy
        self.namespace = namespace
        self.verdicts: deque[bool] = deque(maxlen=monitor.limits.false_hit_window)
        """True for a false hit, in the order verified."""
        self.epoch = 0
        """Bumped whenever a window ends; a verdict counts only in the window it was sampled in."""
        self.until: float | None = None
        """While suspended: the clock reading at which the semantic cache resumes."""
        self._timer: asyncio.TimerHandle | None = None
        monitor.metrics.semantic_suspended.labels(policy, namespace).set(0)

    @property
    def rate(self) -> float:
        """False hits per verified hit in the current window (0 when it is empty)."""
        return sum(self.verdicts) / len(self.verdicts) if self.verdicts else 0.0

    def suspended(self) -> bool:
        """Whether semantic lookups are off now; resumes the cache when the cool-off is over."""
        if self.until is None:
            return False
        if self._monitor.clock() < self.until:
            return True
        self._resume()
        return False

    def record(self, false_hit: bool, max_rate: float, epoch: int) -> None:
        """Count one verdict; suspend the semantic cache if the window is over ``max_rate``."""
        m = self._monitor.metrics
        m.semantic_verified.labels(self.policy, self.namespace).inc()
        if false_hit:
            m.semantic_false_hits.labels(self.policy, self.namespace).inc()
        if epoch != self.epoch or self.suspended():
            return  # sampled in an earlier window
        limits = self._monitor.limits
        if self.verdicts.maxlen != limits.false_hit_window:
            self.verdicts = deque(self.verdicts, maxlen=limits.false_hit_window)
        self.verdicts.append(false_hit)
        rate = self.rate
        m.semantic_false_hit_rate.labels(self.policy, self.namespace).set(rate)
        if len(self.verdicts) >= limits.false_hit_min_samples and rate > max_rate:
            self._suspend(rate, max_rate, limits.semantic_suspend_seconds)

    def _suspend(self, rate: float, max_rate: float, seconds: float) -> None:
        self.until = self._monitor.clock() + seconds
        self.epoch += 1
        self._monitor.metrics.semantic_suspended.labels(self.policy, self.namespace).set(1)
        log.warning(
            "semantic cache %s/%s suspended for %gs: false-hit rate %.3f over %d verified hits "
            "is above maxFalseHitRate %.3f",
            self.namespace,
            self.policy,
            seconds,
            rate,
            len(self.verdicts),
            max_rate,
        )
        self._schedule(seconds)

    def _schedule(self, delay: float) -> None:
        """Resume on time even without traffic (lookups also resume it when they find it due)."""
        self.cancel_timer()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timer = loop.call_later(max(delay, 0.01), self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.suspended() and self.until is not None:  # not due yet (an injected clock)
            self._schedule(self.until - self._monitor.clock())

    def _resume(self) -> None:
        self.until = None
        self.epoch += 1
        self.verdicts.clear()
        self.cancel_timer()
        m = self._monitor.metrics
        m.semantic_suspended.labels(self.policy, self.namespace).set(0)
        m.semantic_false_hit_rate.labels(self.policy, self.namespace).set(0.0)
        log.info("semantic cache %s/%s resumed with a fresh window", self.namespace, self.policy)

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class FalseHitMonitor:
    """The budgets of every CachePolicy, by what it targets, and the verification tasks."""

    def __init__(self, metrics: Metrics, clock: Callable[[], float], limits: Limits) -> None:
        self.metrics = metrics
        self.clock = clock
        self.limits = limits
        self._budgets: dict[tuple[str, str], SemanticBudget] = {}
        self._tasks = BoundedTasks()

    def budget(self, namespace: str, kind: str, target: str) -> SemanticBudget:
        """The budget of the CachePolicy in front of ``kind`` ``namespace/target`` (one at most),
        made on first use and kept across reloads; its metrics are labelled
        ``policy=target``, like the request and cache-hit metrics."""
        key = (namespace, kind, target)
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = SemanticBudget(self, target, namespace)
        return budget

    def submit(
        self,
        budget: SemanticBudget,
        max_rate: float,
        cached: str,
        fresh: Callable[[], Awaitable[str | None]],
    ) -> bool:
        """Start one verification unless the bound is full; True if started."""
        epoch = budget.epoch
        started = self._tasks.start(
            lambda: self._verify(budget, max_rate, cached, fresh, epoch),
            self.limits.shadow_concurrency,
        )
        if not started:
            log.debug("verification of a %s/%s hit skipped", budget.namespace, budget.policy)
        return started

    async def _verify(
        self,
        budget: SemanticBudget,
        max_rate: float,
        cached: str,
        fresh: Callable[[], Awaitable[str | None]],
        epoch: int,
    ) -> None:
        try:
            answer = await fresh()
        except Exception as err:  # a failed verification must never surface anywhere else
            log.debug("verification call for %s failed: %s", budget.policy, type(err).__name__)
            answer = None
        if answer is None:
            return  # no verdict: the tier could not answer (asleep, busy, failed)
        budget.record(similarity(cached, answer) < FALSE_HIT_BELOW, max_rate, epoch)

    async def drain(self) -> None:
        """Cancel outstanding verifications and resume timers (shutdown)."""
        for budget in self._budgets.values():
            budget.cancel_timer()
        await self._tasks.cancel_all()

    @property
    def active(self) -> int:
        return len(self._tasks)
