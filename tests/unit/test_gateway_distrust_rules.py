"""Distrust of cached answers written while a tier's quality was under its bar: the pure
decisions (spans opening, staying open, closing; which entries they refuse) and the shell's
bookkeeping over the real in-memory store and the quality window."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from frugal.gateway import distrust
from frugal.gateway.distrust import LEASE_SECONDS, DistrustMonitor, Span
from frugal.gateway.metering import Metrics
from frugal.gateway.shadow import Quality, Reading
from frugal.gateway.store import MemoryStore


def test_the_bar_is_the_objective_less_the_hysteresis() -> None:
    assert distrust.bar(None, 0.02) is None
    assert distrust.bar(0.95, 0.02) == pytest.approx(0.93)
    assert distrust.bar(0.9, 0.0) == 0.9


def reading(mean: float, since: float, *, stdev: float = 0.0, count: int = 10) -> Reading:
    return Reading(mean, stdev, count, max(count, 10), since)


def window(scores: list[float], size: int) -> Reading:
    """What the quality window says after the last of ``scores`` (the first given at 0.0)."""
    quality = Quality(Metrics(), window=size)
    last = None
    for i, score in enumerate(scores):
        last = quality.add("p", "ns", "small", score, at=float(i))
    assert last is not None
    return last


def test_a_span_opens_at_the_window_start_stays_open_and_closes_on_recovery() -> None:
    fine, _ = distrust.step(None, "small", reading(0.95, 10.0), threshold=0.9, now=50.0)
    assert fine is None
    opened, closed = distrust.step(None, "small", reading(0.5, 10.0), threshold=0.9, now=50.0)
    assert opened == Span("small", 10.0, 50.0 + LEASE_SECONDS)
    assert closed is None
    # still under: the start stays, the lease moves on (no confidence needed to stay)
    under = reading(0.6, 40.0, stdev=0.5)
    assert not distrust.evidence(under, 0.9)
    still, _ = distrust.step(opened, "small", under, threshold=0.9, now=70.0)
    assert still == Span("small", 10.0, 70.0 + LEASE_SECONDS)
    # back at the bar: closed now, nothing open
    after, closed = distrust.step(still, "small", reading(0.9, 60.0), threshold=0.9, now=80.0)
    assert after is None
    assert closed == Span("small", 10.0, 80.0)
    # a window start in the future of the reading (clock skew) never opens a span late
    skewed, _ = distrust.step(None, "small", reading(0.1, 99.0), threshold=0.9, now=90.0)
    assert skewed is not None
    assert skewed.since == 90.0


def test_a_span_opens_only_on_confidence_that_the_mean_is_under_the_bar() -> None:
    assert round(distrust.Z, 3) == 2.326
    assert distrust.upper_bound(Reading(0.6, 0.5, 25, 25, 0.0)) == pytest.approx(
        0.6 + distrust.Z * 0.1
    )
    # a mean under the bar, but with a spread that cannot rule out a tier over it
    assert not distrust.evidence(Reading(0.88, 0.3, 10, 10, 0.0), 0.9)
    assert distrust.evidence(Reading(0.88, 0.01, 10, 10, 0.0), 0.9)
    # too few comparisons say nothing, however bad (two equal readings have no spread) ...
    assert not distrust.evidence(Reading(0.0, 0.0, 4, 200, 0.0), 0.9)
    assert distrust.evidence(Reading(0.0, 0.0, 5, 200, 0.0), 0.9)
    # ... unless the window holds no more
    assert distrust.evidence(Reading(0.0, 0.0, 2, 2, 0.0), 0.9)
    assert not distrust.evidence(Reading(0.0, 0.0, 1, 2, 0.0), 0.9)


def test_a_healthy_tiers_noise_opens_no_span() -> None:
    """A tier right 96 % of the time, against a bar of 0.94 over a window of 10 (the demo's):
    one wrong answer takes the mean to 0.9. The plain threshold opened a span at each of
    them and threw away about half of the tier's cacheable answers."""
    one_wrong = window([1.0] * 9 + [0.0], 10)
    assert one_wrong.mean == pytest.approx(0.9)
    assert distrust.step(None, "small", one_wrong, threshold=0.94, now=10.0) == (None, None)
    two_wrong = window([1.0] * 8 + [0.0, 1.0, 0.0], 10)
    assert two_wrong.mean == pytest.approx(0.8)
    assert distrust.step(None, "small", two_wrong, threshold=0.94, now=20.0) == (None, None)
    rng = random.Random(7)
    quality = Quality(Metrics(), window=10)
    span, dips = None, 0
    for i in range(5000):
        noisy = quality.add("p", "ns", "small", float(rng.random() < 0.96), at=float(i))
        dips += noisy.mean < 0.94
        span, _ = distrust.step(span, "small", noisy, threshold=0.94, now=i + 0.5)
        assert span is None, f"comparison {i}"
    assert dips > 1000  # the gauge was under the bar a third of the time


def test_a_real_dip_opens_a_span_back_to_the_window_start() -> None:
    # right, then wrong every time: the fifth wrong answer in a window of 10 is evidence
    scores = [1.0] * 10 + [0.0] * 5
    for wrong in range(1, 5):
        early = window(scores[: 10 + wrong], 10)
        assert early.mean < 0.94
        assert distrust.step(None, "small", early, threshold=0.94, now=20.0) == (None, None)
    found = window(scores, 10)
    assert found.mean == pytest.approx(0.5)
    assert found.since == 5.0  # the oldest answer in the window
    opened, _ = distrust.step(None, "small", found, threshold=0.94, now=15.0)
    assert opened == Span("small", 5.0, 15.0 + LEASE_SECONDS)


def test_entries_are_refused_only_inside_a_span_of_their_own_tier() -> None:
    spans = distrust.by_tier([Span("small", 10.0, 20.0), Span("small", 30.0, 40.0)])
    assert distrust.refused({"tier": "small", "at": 10.0}, spans)  # the start is inside
    assert distrust.refused({"tier": "small", "at": 35.5}, spans)
    assert not distrust.refused({"tier": "small", "at": 20.0}, spans)  # the end is not
    assert not distrust.refused({"tier": "small", "at": 9.99}, spans)
    assert not distrust.refused({"tier": "small", "at": 25.0}, spans)
    assert not distrust.refused({"tier": "large", "at": 15.0}, spans)
    # written before entries carried their time: no evidence against it
    assert not distrust.refused({"tier": "small"}, spans)
    assert not distrust.refused({"tier": "small", "at": "15"}, spans)
    assert not distrust.refused({"tier": "small", "at": 15.0}, {})


class Wall:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_book_refuses_the_dip_and_stops_writing_until_recovery() -> None:
    async def test() -> None:
        wall = Wall(1000.0)
        metrics = Metrics()
        monitor = DistrustMonitor(metrics, wall)
        store = MemoryStore(100)
        book = monitor.book("ns", "RoutingPolicy", "chat", store, keep=3600.0, name="c")
        assert monitor.book("ns", "RoutingPolicy", "chat", store, keep=60.0) is book  # reload
        book.keep = 3600.0
        before, dip = {"tier": "small", "at": 900.0}, {"tier": "small", "at": 990.0}
        assert book.writable("small", 1000.0)
        assert not book.refuses(dip)
        book.observe("small", reading(0.5, 950.0), 0.9)
        assert book.refuses(dip)
        assert not book.refuses(before)
        assert not book.refuses({"tier": "large", "at": 990.0})
        assert not book.writable("small", 1000.0)
        assert book.writable("large", 1000.0)
        wall.now = 1100.0
        book.observe("small", reading(0.95, 1050.0), 0.9)
        assert book.writable("small", 1100.0)
        assert book.refuses({"tier": "small", "at": 1099.0})  # still inside the closed span
        assert not book.refuses({"tier": "small", "at": 1100.0})
        book.count_refused("exact", dip)
        assert metrics.cache_distrusted.labels("exact", "chat", "ns", "small")._value.get() == 1
        # a sync keeps the span while an entry it covers may live, and drops it after
        await book.sync()
        assert book.refuses(dip)
        wall.now = 1100.0 + 3600.0 + 1.0
        await book.sync()
        assert not book.refuses(dip)
        assert book.known == {}
        assert book.syncs == 2
        # a reload that stops judging a tier closes its open span: nothing else would
        book.observe("small", reading(0.1, wall.now - 10), 0.9)
        book.observe("large", reading(0.1, wall.now - 10), 0.9)
        monitor.settle({book: {"large"}})
        assert book.writable("small", wall.now + 1)
        assert not book.writable("large", wall.now + 1)
        monitor.settle({})
        assert not book.open

    asyncio.run(test())


def test_memory_store_skips_unusable_semantic_candidates() -> None:
    async def test() -> None:
        store = MemoryStore(100)
        vector = np.ones(8, dtype=np.float32) / np.sqrt(8)
        for i, tier in enumerate(["small", "large"]):
            await store.add(
                "t", context="c", vector=vector, query="q", entry={"tier": tier, "i": i}, ttl=60
            )
        found = await store.search(
            "t", "c", vector, 0.9, lambda _: True, usable=lambda e: e["tier"] != "small"
        )
        assert found is not None
        assert found[0]["tier"] == "large"
        assert (
            await store.search("t", "c", vector, 0.9, lambda _: True, usable=lambda _: False)
            is None
        )

    asyncio.run(test())


def test_the_quality_window_reports_when_its_oldest_answer_was_given() -> None:
    quality = Quality(Metrics(), window=3)
    assert quality.add("p", "ns", "small", 1.0, at=10.0) == Reading(1.0, 0.0, 1, 3, 10.0)
    second = quality.add("p", "ns", "small", 0.0, at=5.0)  # compared out of order
    assert (second.mean, second.count, second.since) == (0.5, 2, 5.0)
    assert second.stdev == pytest.approx(np.sqrt(0.5))  # the sample standard deviation
    quality.add("p", "ns", "small", 1.0, at=20.0)
    third = quality.add("p", "ns", "small", 1.0, at=30.0)  # the first one slid out
    assert third.mean == pytest.approx(2 / 3)
    assert (third.count, third.since) == (3, 5.0)
    fourth = quality.add("p", "ns", "small", 1.0, at=40.0)
    assert (fourth.mean, fourth.stdev, fourth.since) == (1.0, 0.0, 20.0)


readings = st.lists(
    st.tuples(
        st.floats(0, 1),  # the rolling mean after a comparison
        st.floats(0, 0.6),  # the comparisons' standard deviation
        st.integers(1, 50),  # how many there are
        st.floats(0.001, 100),  # seconds since the previous reading
        st.floats(0, 1000),  # how far back the window's oldest answer was given
    ),
    max_size=40,
)


@given(readings)
def test_spans_cover_every_moment_of_evidence_and_are_open_only_under_the_bar(
    steps: list[tuple[float, float, int, float, float]],
) -> None:
    now, current, spans, found = 0.0, None, [], []
    for mean, stdev, count, gap, lookback in steps:
        now += gap
        seen = Reading(mean, stdev, count, 50, now - lookback)
        was = current
        current, closed = distrust.step(current, "t", seen, threshold=0.5, now=now)
        if closed is not None:
            spans.append(closed)
        if distrust.evidence(seen, 0.5):
            found.append(now)
            assert current is not None
        if current is not None:
            assert mean < 0.5  # open only while the mean is under the bar
            if was is None:
                assert distrust.evidence(seen, 0.5)  # and opened only on evidence
        else:
            assert mean >= 0.5 or was is None
    everything = [*spans, *([current] if current else [])]
    assert all(distrust.covered(everything, t) for t in found)
    assert all(s.since < s.until for s in everything)
    assert all(s.until <= now for s in spans)  # closed spans ended by the last reading
