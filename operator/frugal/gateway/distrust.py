"""Cached answers of a tier whose live quality dipped below its objective stop being served.

The shadow sampler measures each tier's quality on fresh answers only (:mod:`.shadow`); the
cache would go on serving what a tier answered during a dip for the whole TTL after the tier
recovered. So, per CachePolicy and tier:

- the *bar* is the RoutingPolicy's ``objectives.minQuality`` less ``autoReroute.hysteresis``:
  the quality the operator's reroute loop calls "below the objective";
- when the tier's rolling quality is under the bar *with confidence* (:func:`evidence`: the
  one-sided 99 % upper confidence bound of the window's mean is under it, over at least
  :data:`MIN_COMPARISONS` comparisons), a *span* of distrust opens that starts at the oldest
  comparison in the quality window (the gauge cannot tell when within its window the dip
  began, so all of it is suspect). A plain ``mean < bar`` would fire on noise: with a window
  of 10 and a tier right 96 % of the time, one wrong answer takes the mean to 0.9, and such
  chance spans cost a healthy tier a tenth to two thirds of its cacheable answers, against
  under 0.2 % now (``bench/bench_distrust_noise.py``);
- while the tier's mean stays under the bar its answers are served but not stored, and the
  span stays open (its end is a lease the detecting replica pushes ahead, so a replica that
  dies does not leave a tier distrusted for ever);
- when the tier's mean is back at or over the bar the span closes at that moment;
- a lookup whose entry was written by a tier inside one of its spans treats it as a miss (no
  call to anyone), and the fresh answer replaces it once the tier is trusted again.

Entries carry their tier and wall-clock write time (``at``); entries without ``at`` (written
before this existed) are served. Spans live with the cache's store: in a Redis store they are
shared by every replica (a sorted set, see :meth:`frugal.gateway.store.RedisStore.exchange_spans`),
and each replica publishes its own and reads the others' every :data:`SYNC_SECONDS` in the
background, never on a request's path. Spans whose end is older than the cache's longest TTL
cover no live entry and are dropped. The pure decisions are :func:`evidence`, :func:`step`,
:func:`covered` and :func:`refused`; :class:`Distrust` and :class:`DistrustMonitor` are the
shell.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from frugal.gateway.shadow import Reading

if TYPE_CHECKING:
    from frugal.gateway.metering import Metrics
    from frugal.gateway.store import Store

log = logging.getLogger("frugal.gateway")

SYNC_SECONDS = 1.0
"""How often a replica publishes its spans and reads the other replicas' (Redis)."""
LEASE_SECONDS = 3 * SYNC_SECONDS
"""How far ahead of now an open span's end is pushed at each sync by the replica that opened
it: if that replica dies, the span ends at most this long after its last sync."""
CONFIDENCE = 0.99
"""How sure the window's mean must make the gateway that a tier is under its bar before it
throws its cached answers away (one-sided)."""
Z = NormalDist().inv_cdf(CONFIDENCE)
"""The normal quantile of :data:`CONFIDENCE` (2.33)."""
MIN_COMPARISONS = 5
"""Fewer comparisons than this (or than the window holds, if it is smaller) never open a span:
their spread says too little (two equal readings have none)."""


@dataclass(frozen=True)
class Span:
    """Entries of ``tier`` written at ``since`` <= at < ``until`` (wall-clock seconds) are
    not served."""

    tier: str
    since: float
    until: float
    owner: str = ""
    """The replica that published it (as read back from the store)."""


def bar(min_quality: float | None, hysteresis: float) -> float | None:
    """The quality under which a tier's answers are distrusted; None without an objective."""
    if min_quality is None:
        return None
    return min_quality - hysteresis


def upper_bound(reading: Reading) -> float:
    """The one-sided :data:`CONFIDENCE` upper bound of the tier's true quality given its
    window: mean + z·s/√n (normal approximation, sample standard deviation)."""
    return reading.mean + Z * reading.stdev / math.sqrt(max(reading.count, 1))


def evidence(reading: Reading, threshold: float) -> bool:
    """Whether the window shows the tier under ``threshold`` with confidence: enough
    comparisons, and even the upper bound of its quality is under it."""
    least = min(MIN_COMPARISONS, reading.size)
    return reading.count >= max(least, 1) and upper_bound(reading) < threshold


def step(
    current: Span | None, tier: str, reading: Reading, *, threshold: float, now: float
) -> tuple[Span | None, Span | None]:
    """One quality reading of ``tier``: (its open span afterwards, a span that just closed).

    With :func:`evidence` that the tier is under the bar a span opens at the window's oldest
    comparison; while the mean stays under the bar it stays open (its lease pushed ahead);
    once the mean is back at or over the bar it closes now. Opening wants confidence, closing
    only the mean: a tier found under its bar is not trusted again on a lucky bound, and the
    gap between the two keeps a span from flapping."""
    if current is None:
        if evidence(reading, threshold):
            return Span(tier, min(reading.since, now), now + LEASE_SECONDS), None
        return None, None
    if reading.mean < threshold:
        return replace(current, until=max(current.until, now + LEASE_SECONDS)), None
    return None, replace(current, until=now)


def covered(spans: Iterable[Span], at: float) -> bool:
    """Whether one of ``spans`` covers the write time ``at``."""
    return any(s.since <= at < s.until for s in spans)


def refused(entry: Mapping[str, Any], spans: Mapping[str, Sequence[Span]]) -> bool:
    """Whether a cached entry was written by its tier during one of that tier's spans."""
    tier_spans = spans.get(str(entry.get("tier", "")))
    if not tier_spans:
        return False
    at = entry.get("at")
    if not isinstance(at, int | float):
        return False  # written before entries carried their time: no evidence against it
    return covered(tier_spans, float(at))


def by_tier(spans: Iterable[Span]) -> dict[str, tuple[Span, ...]]:
    grouped: dict[str, list[Span]] = {}
    for span in spans:
        grouped.setdefault(span.tier, []).append(span)
    return {tier: tuple(group) for tier, group in grouped.items()}


class Distrust:
    """One CachePolicy's spans: this replica's own, and all it knows (its own and, with Redis,
    the other replicas'). State outlives configuration reloads."""

    def __init__(
        self,
        monitor: DistrustMonitor,
        policy: str,
        namespace: str,
        store: Store,
        keep: float,
    ) -> None:
        self._monitor = monitor
        self.policy = policy
        """What the CachePolicy targets (the ``policy`` label of the refusal counter)."""
        self.namespace = namespace
        self.cache_name = ""
        """The CachePolicy's name (the ``policy`` label of cache errors, as elsewhere)."""
        self.store = store
        self.keep = keep
        """The cache's longest TTL: spans that ended longer ago cover no live entry."""
        self.open: dict[str, Span] = {}
        """This replica's open spans, by tier (the tier is under its bar here)."""
        self.closed: list[Span] = []
        """This replica's closed spans, published until they are older than ``keep``."""
        self.shared: list[Span] = []
        """Spans read from the store at the last sync (every replica's)."""
        self.known: dict[str, tuple[Span, ...]] = {}
        """Everything known, by tier: what lookups check."""
        self.syncs = 0
        """Completed syncs with the store."""

    def _refresh(self) -> None:
        # This replica's own spans as it holds them now (a span it just closed may still be
        # open in what the store said at the last sync).
        me = self._monitor.owner
        others = [s for s in self.shared if s.owner != me]
        self.known = by_tier([*others, *self.open.values(), *self.closed])

    def refuses(self, entry: Mapping[str, Any]) -> bool:
        return bool(self.known) and refused(entry, self.known)

    def writable(self, tier: str, at: float) -> bool:
        """Whether an answer of ``tier`` written at ``at`` is worth storing: not while a span
        of the tier covers that moment (it would be refused)."""
        return tier not in self.open and not covered(self.known.get(tier, ()), at)

    def observe(self, tier: str, reading: Reading, threshold: float) -> None:
        """A new quality reading of ``tier`` (from a shadow comparison)."""
        now = self._monitor.wall()
        before = self.open.get(tier)
        after, closed = step(before, tier, reading, threshold=threshold, now=now)
        mean = reading.mean
        if after is None:
            self.open.pop(tier, None)
        else:
            self.open[tier] = after
        if closed is not None:
            self.closed.append(closed)
            log.info(
                "cache %s/%s: tier %s back at quality %.3f (bar %.3f); its entries written "
                "during the %.1f s before are not served",
                self.namespace,
                self.policy,
                tier,
                mean,
                threshold,
                closed.until - closed.since,
            )
        if before is None and after is not None:
            log.warning(
                "cache %s/%s: tier %s quality %.3f (at most %.3f, %d comparisons) is under its "
                "bar %.3f; its entries written since %.1f s ago are not served and its "
                "answers not stored until it recovers",
                self.namespace,
                self.policy,
                tier,
                mean,
                upper_bound(reading),
                reading.count,
                threshold,
                now - after.since,
            )
        if (before is None) != (after is None):
            self._refresh()
            self._monitor.poke()

    def settle(self, judged: Iterable[str]) -> None:
        """Close the open spans of tiers no longer judged (a reload removed the objective,
        the shadow sampling or the tier): no reading would ever close them."""
        keep = set(judged)
        now = self._monitor.wall()
        gone = [tier for tier in self.open if tier not in keep]
        for tier in gone:
            self.closed.append(replace(self.open.pop(tier), until=now))
            log.info("cache %s/%s: tier %s is no longer judged", self.namespace, self.policy, tier)
        if gone:
            self._refresh()
            self._monitor.poke()

    def count_refused(self, kind: str, entry: Mapping[str, Any]) -> None:
        self._monitor.metrics.cache_distrusted.labels(
            kind, self.policy, self.namespace, str(entry.get("tier", ""))
        ).inc()

    async def sync(self) -> None:
        """Publish this replica's spans (open ones with their lease pushed ahead) and read
        every replica's, in one round trip; on failure the last known spans stay."""
        now = self._monitor.wall()
        horizon = now - self.keep
        self.open = {
            t: replace(s, until=max(s.until, now + LEASE_SECONDS)) for t, s in self.open.items()
        }
        self.closed = [s for s in self.closed if s.until >= horizon]
        mine = [*self.open.values(), *self.closed]
        store = self.store
        if not store.outage.usable():
            self._refresh()
            return
        try:
            self.shared = await store.exchange_spans(
                self._monitor.owner, mine, horizon, self.keep + LEASE_SECONDS
            )
        except Exception as err:  # Redis down: lookups keep the spans known so far
            errors = self._monitor.metrics.cache_errors
            errors.labels(self.cache_name, self.namespace, "distrust").inc()
            log.debug(
                "distrust sync of %s/%s failed: %s", self.namespace, self.policy, type(err).__name__
            )
        self._refresh()
        self.syncs += 1


class DistrustMonitor:
    """Every CachePolicy's :class:`Distrust`, by what it targets, and the sync loop."""

    def __init__(self, metrics: Metrics, wall: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self.wall = wall
        self.owner = uuid.uuid4().hex
        """This replica's name on the spans it publishes."""
        self._books: dict[tuple[str, str, str], Distrust] = {}
        self._wake: asyncio.Future[None] | None = None

    def book(
        self, namespace: str, kind: str, target: str, store: Store, *, keep: float, name: str = ""
    ) -> Distrust:
        """The Distrust of the CachePolicy ``name`` in front of ``kind`` ``namespace/target``,
        made on first use and kept across reloads (with the store and TTL of the latest one)."""
        key = (namespace, kind, target)
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = Distrust(self, target, namespace, store, keep)
        book.store, book.keep, book.cache_name = store, keep, name
        return book

    def settle(self, judged: Mapping[Distrust, Iterable[str]]) -> None:
        """After a reload: every book keeps open only the spans of tiers still judged (a
        CachePolicy gone from the configuration judges none)."""
        for book in self._books.values():
            book.settle(judged.get(book, ()))

    def poke(self) -> None:
        """Sync soon: a span opened or closed here."""
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def sync_all(self) -> None:
        for book in list(self._books.values()):
            await book.sync()

    async def run(self) -> None:
        """Sync every :data:`SYNC_SECONDS`, or at once when poked (until cancelled).

        A bare future rather than ``wait_for(event.wait())``: Python 3.11's ``wait_for``
        swallows a cancellation that arrives as the event is set, and the loop would outlive
        the gateway's shutdown."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake = loop.create_future()
            timer = loop.call_later(SYNC_SECONDS, self.poke)
            try:
                await self._wake
            finally:
                timer.cancel()
            await self.sync_all()
