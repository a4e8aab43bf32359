"""Distrust of cached answers written while a tier's quality was under its bar: the pure
decisions (spans opening, staying open, closing; which entries they refuse) and the shell's
bookkeeping over the real in-memory store and the quality window."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from frugal.gateway import distrust
from frugal.gateway.distrust import LEASE_SECONDS, DistrustMonitor, Span
from frugal.gateway.metering import Metrics
from frugal.gateway.shadow import Quality
from frugal.gateway.store import MemoryStore


def test_the_bar_is_the_objective_less_the_hysteresis() -> None:
    assert distrust.bar(None, 0.02) is None
    assert distrust.bar(0.95, 0.02) == pytest.approx(0.93)
    assert distrust.bar(0.9, 0.0) == 0.9


def test_a_span_opens_at_the_window_start_stays_open_and_closes_on_recovery() -> None:
    fine, _ = distrust.step(None, "small", mean=0.95, threshold=0.9, window_start=10.0, now=50.0)
    assert fine is None
    opened, closed = distrust.step(
        None, "small", mean=0.5, threshold=0.9, window_start=10.0, now=50.0
    )
    assert opened == Span("small", 10.0, 50.0 + LEASE_SECONDS)
    assert closed is None
    # still under: the start stays, the lease moves on
    still, _ = distrust.step(opened, "small", mean=0.6, threshold=0.9, window_start=40.0, now=70.0)
    assert still == Span("small", 10.0, 70.0 + LEASE_SECONDS)
    # back over the bar: closed now, nothing open
    after, closed = distrust.step(
        still, "small", mean=0.9, threshold=0.9, window_start=60.0, now=80.0
    )
    assert after is None
    assert closed == Span("small", 10.0, 80.0)
    # a window start in the future of the reading (clock skew) never opens a span late
    skewed, _ = distrust.step(None, "small", mean=0.1, threshold=0.9, window_start=99.0, now=90.0)
    assert skewed is not None
    assert skewed.since == 90.0


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
        book.observe("small", mean=0.5, threshold=0.9, window_start=950.0)
        assert book.refuses(dip)
        assert not book.refuses(before)
        assert not book.refuses({"tier": "large", "at": 990.0})
        assert not book.writable("small", 1000.0)
        assert book.writable("large", 1000.0)
        wall.now = 1100.0
        book.observe("small", mean=0.95, threshold=0.9, window_start=1050.0)
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
        book.observe("small", mean=0.1, threshold=0.9, window_start=wall.now - 10)
        book.observe("large", mean=0.1, threshold=0.9, window_start=wall.now - 10)
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
    assert quality.add("p", "ns", "small", 1.0, at=10.0) == (1.0, 10.0)
    assert quality.add("p", "ns", "small", 0.0, at=5.0) == (0.5, 5.0)  # compared out of order
    quality.add("p", "ns", "small", 1.0, at=20.0)
    mean, start = quality.add("p", "ns", "small", 1.0, at=30.0)  # the first one slid out
    assert mean == pytest.approx(2 / 3)
    assert start == 5.0
    mean, start = quality.add("p", "ns", "small", 1.0, at=40.0)
    assert (mean, start) == (1.0, 20.0)


readings = st.lists(
    st.tuples(
        st.floats(0, 1),  # the rolling mean after a comparison
        st.floats(0.001, 100),  # seconds since the previous reading
        st.floats(0, 1000),  # how far back the window's oldest answer was given
    ),
    max_size=40,
)


@given(readings)
def test_every_moment_under_the_bar_is_covered_and_only_then_a_span_is_open(
    steps: list[tuple[float, float, float]],
) -> None:
    now, current, spans, under = 0.0, None, [], []
    for mean, gap, lookback in steps:
        now += gap
        current, closed = distrust.step(
            current, "t", mean=mean, threshold=0.5, window_start=now - lookback, now=now
        )
        if closed is not None:
            spans.append(closed)
        if mean < 0.5:
            under.append(now)
    everything = [*spans, *([current] if current else [])]
    assert all(distrust.covered(everything, t) for t in under)
    assert all(s.since < s.until for s in everything)
    assert all(s.until <= now for s in spans)  # closed spans ended by the last reading
    assert (current is not None) == bool(steps and steps[-1][0] < 0.5)
