"""The false-hit budget's bookkeeping: when a window judges, suspends and resumes."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from frugal.gateway.config import Limits
from frugal.gateway.falsehits import FALSE_HIT_BELOW, FalseHitMonitor
from frugal.gateway.metering import Metrics
from frugal.gateway.shadow import similarity


def gauges(metrics: Metrics) -> tuple[float, float, float, float]:
    """(suspended, rate, verified, false hits) of policy p in namespace ns."""

    def get(name: str) -> float:
        value = metrics.registry.get_sample_value(name, {"policy": "p", "namespace": "ns"})
        return value or 0.0

    return (
        get("frugal_gateway_semantic_suspended"),
        get("frugal_gateway_semantic_false_hit_rate"),
        get("frugal_gateway_semantic_verified_total"),
        get("frugal_gateway_semantic_false_hits_total"),
    )


def make(now: list[float], **limits: object) -> tuple[FalseHitMonitor, Metrics]:
    metrics = Metrics(CollectorRegistry())
    return FalseHitMonitor(metrics, lambda: now[0], Limits.model_validate(limits)), metrics


def test_a_window_judges_only_with_enough_verdicts_and_above_the_budget() -> None:
    now = [0.0]
    monitor, metrics = make(now, falseHitWindow=10, falseHitMinSamples=5)
    budget = monitor.budget("ns", "RoutingPolicy", "p")
    assert gauges(metrics) == (0, 0, 0, 0)
    for _ in range(4):  # all false, but too few to judge
        budget.record(True, 0.5, budget.epoch)
    assert not budget.suspended()
    assert gauges(metrics) == (0, 1.0, 4, 4)
    epoch = budget.epoch
    budget.record(False, 0.5, epoch)  # 4 of 5 is above
    assert budget.suspended()
    assert gauges(metrics) == (1, 0.8, 5, 4)
    # a hit sampled before the suspension still counts as a verification, not in a window
    budget.record(True, 0.5, epoch)
    assert gauges(metrics) == (1, 0.8, 6, 5)
    now[0] = 599.9
    assert budget.suspended()
    now[0] = 600.0  # the default cool-off is over: a fresh window
    assert not budget.suspended()
    assert gauges(metrics) == (0, 0, 6, 5)
    assert len(budget.verdicts) == 0
    budget.record(True, 0.5, epoch)  # sampled two windows ago
    assert len(budget.verdicts) == 0
    # exactly at the budget is not above it
    for false_hit in (False, True) * 4:
        budget.record(false_hit, 0.5, budget.epoch)
    assert not budget.suspended()
    assert gauges(metrics)[1] == 0.5


def test_the_window_rolls_and_follows_a_resized_limit() -> None:
    now = [0.0]
    monitor, metrics = make(now, falseHitWindow=4, falseHitMinSamples=4)
    budget = monitor.budget("ns", "RoutingPolicy", "p")
    for false_hit in (True, False, False, False, False):
        budget.record(false_hit, 0.3, budget.epoch)
    assert gauges(metrics)[1] == 0  # the false hit rolled out of the last four
    monitor.limits = Limits(false_hit_window=2, false_hit_min_samples=2)
    budget.record(True, 0.3, budget.epoch)
    assert list(budget.verdicts) == [False, True]
    assert budget.suspended()  # 1 of 2 > 0.3
    assert (
        monitor.budget("ns", "RoutingPolicy", "p") is budget
    )  # the same state for the same policy


def test_a_zero_budget_suspends_on_the_first_judged_false_hit_and_one_never() -> None:
    now = [0.0]
    monitor, _ = make(now, falseHitMinSamples=3)
    strict, lax = (
        monitor.budget("ns", "RoutingPolicy", "p"),
        monitor.budget("ns", "RoutingPolicy", "q"),
    )
    for _ in range(2):
        strict.record(False, 0.0, strict.epoch)
    strict.record(True, 0.0, strict.epoch)
    assert strict.suspended()
    for _ in range(100):
        lax.record(True, 1.0, lax.epoch)
    assert not lax.suspended()


def test_min_samples_cannot_exceed_the_window() -> None:
    with pytest.raises(ValueError, match="falseHitMinSamples"):
        Limits.model_validate({"falseHitWindow": 10, "falseHitMinSamples": 11})


def test_the_cool_off_ends_without_traffic() -> None:
    """A timer resumes the cache (and flips the gauge) even when no lookup asks."""
    monitor, metrics = make(
        [0.0], falseHitWindow=1, falseHitMinSamples=1, semanticSuspendSeconds=0.05
    )
    monitor.clock = time.monotonic

    async def run() -> None:
        budget = monitor.budget("ns", "RoutingPolicy", "p")
        budget.record(True, 0.0, budget.epoch)
        assert gauges(metrics)[0] == 1
        deadline = time.monotonic() + 10
        while gauges(metrics)[0] == 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert budget.until is None

    asyncio.run(run())


def test_verifications_are_bounded_and_judged_by_similarity() -> None:
    now = [0.0]
    monitor, metrics = make(now, shadowConcurrency=2, falseHitMinSamples=1)
    budget = monitor.budget("ns", "RoutingPolicy", "p")
    assert similarity("a b c d", "a b x y") < FALSE_HIT_BELOW <= similarity("a b c", "a b c d")

    async def run() -> None:
        release = asyncio.Event()

        async def slow(answer: str | None) -> str | None:
            await release.wait()
            return answer

        assert monitor.submit(budget, 1.0, "a b c", lambda: slow("a b c d"))
        assert monitor.submit(budget, 1.0, "a b c", lambda: slow(None))  # no answer: no verdict
        assert not monitor.submit(budget, 1.0, "a b c", lambda: slow("x"))  # full: skipped
        release.set()
        while monitor.active:
            await asyncio.sleep(0)
        assert gauges(metrics) == (0, 0, 1, 0)

        async def broken() -> str | None:
            raise OSError("gone")

        assert monitor.submit(budget, 0.0, "a b c", broken)
        assert monitor.submit(budget, 0.0, "a b c", lambda: slow("x y z"))
        while monitor.active:
            await asyncio.sleep(0)
        assert gauges(metrics) == (1, 0.5, 2, 1)
        await monitor.drain()

    asyncio.run(run())
