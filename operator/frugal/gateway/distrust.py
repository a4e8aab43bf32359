"""Cached answers of a tier whose live quality dipped below its objective stop being served.

The shadow sampler measures each tier's quality on fresh answers only (:mod:`.shadow`); the
cache would go on serving what a tier answered during a dip for the whole TTL after the tier
recovered. So, per CachePolicy and tier:

- the *bar* is the RoutingPolicy's ``objectives.minQuality`` less ``autoReroute.hysteresis``:
  the quality the operator's reroute loop calls "below the objective";
- when the tier's rolling quality first falls under the bar, a *span* of distrust opens that
  starts at the oldest comparison in the quality window (the gauge cannot tell when within its
  window the dip began, so all of it is suspect);
- while the tier stays under the bar its answers are served but not stored, and the span stays
  open (its end is a lease the detecting replica pushes ahead, so a replica that dies does not
  leave a tier distrusted for ever);
- when the tier is back over the bar the span closes at that moment;
- a lookup whose entry was written by a tier inside one of its spans treats it as a miss (no
  call to anyone), and the fresh answer replaces it once the tier is trusted again.

Entries carry their tier and wall-clock write time (``at``); entries without ``at`` (written
before this existed) are served. Spans live with the cache's store: in a Redis store they are
shared by every replica (a sorted set, see :meth:`frugal.gateway.store.RedisStore.exchange_spans`),
and each replica publishes its own and reads the others' every :data:`SYNC_SECONDS` in the
background, never on a request's path. Spans whose end is older than the cache's longest TTL
cover no live entry and are dropped. The pure decisions are :func:`step`, :func:`covered` and
:func:`refused`; :class:`Distrust` and :class:`DistrustMonitor` are the shell.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from frugal.gateway.metering import Metrics
    from frugal.gateway.store import Store

log = logging.getLogger("frugal.gateway")

SYNC_SECONDS = 1.0
"""How often a replica publishes its spans and reads the other replicas' (Redis)."""
LEASE_SECONDS = 3 * SYNC_SECONDS
"""How far ahead of now an open span's end is pushed at each sync by the replica that opened
it: if that replica dies, the span ends at most this long after its last sync."""


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


def step(
    current: Span | None,
    tier: str,
    *,
    mean: float,
    threshold: float,
    window_start: float,
    now: float,
) -> tuple[Span | None, Span | None]:
    """One quality reading of ``tier``: (its open span afterwards, a span that just closed).

    Under the bar a span opens at the window's oldest comparison (or stays open, its lease
    pushed ahead); back over it the open span closes now."""
    if mean < threshold:
        if current is None:
            return Span(tier, min(window_start, now), now + LEASE_SECONDS), None
        return replace(current, until=max(current.until, now + LEASE_SECONDS)), None
    if current is None:
        return None, None
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

    def observe(self, tier: str, mean: float, threshold: float, window_start: float) -> None:
        """A new quality reading of ``tier`` (from a shadow comparison)."""
        now = self._monitor.wall()
        before = self.open.get(tier)
        after, closed = step(
            before, tier, mean=mean, threshold=threshold, window_start=window_start, now=now
        )
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
                "cache %s/%s: tier %s quality %.3f is under its bar %.3f; its entries written "
                "since %.1f s ago are not served and its answers not stored until it recovers",
                self.namespace,
                self.policy,
                tier,
                mean,
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
