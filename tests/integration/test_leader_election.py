"""The Lease elector against the real API server: races, expiry, loss and release.

Expiry is driven by each elector's injected monotonic clock, so nothing here waits for real
lease durations, and the candidates' wall clocks are set years apart to show that no clock is
compared with another.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import kubernetes
import pytest

from frugal.controller.leader import LeaseElector, LeaseLostError, Timings
from support.wait import wait_for

pytestmark = pytest.mark.cluster

FAST = Timings(lease_duration=3, renew_deadline=2, retry_period=0.2)


class Clock:
    """A monotonic clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(cluster, namespace: str, me: str, clock=None, year: int = 2026) -> LeaseElector:
    """A candidate whose wall clock starts on 1 January of ``year`` and ticks 1 ms a call."""
    ticks = itertools.count()
    start = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
    return LeaseElector(
        cluster.api,
        namespace=namespace,
        name="frugal-operator",
        me=me,
        timings=FAST,
        clock=clock or Clock(),
        wall=lambda: start + dt.timedelta(milliseconds=next(ticks)),
    )


def lease(cluster, namespace: str):
    return kubernetes.client.CoordinationV1Api(cluster.api).read_namespaced_lease(
        "frugal-operator", namespace
    )


def test_of_concurrent_candidates_exactly_one_wins_every_round(cluster, namespace) -> None:
    candidates = [elector(cluster, namespace, f"c{i}") for i in range(3)]
    winners = []
    with ThreadPoolExecutor(max_workers=len(candidates)) as pool:
        for _ in range(15):
            won = list(pool.map(lambda c: c.try_acquire_or_renew(), candidates))
            assert sum(won) == 1, won
            winner = candidates[won.index(True)]
            assert lease(cluster, namespace).spec.holder_identity == winner.me
            winners.append(winner.me)
            winner.release()
    assert len(winners) == 15
    assert lease(cluster, namespace).spec.lease_transitions >= 1


def test_a_silent_holder_is_replaced_only_after_the_lease_duration(cluster, namespace) -> None:
    holder = elector(cluster, namespace, "holder", year=2040)  # its clock is far ahead
    standby_clock = Clock()
    standby = elector(cluster, namespace, "standby", standby_clock, year=2001)

    assert holder.try_acquire_or_renew()
    assert not standby.try_acquire_or_renew()
    # The holder renews: the standby's countdown starts again from that write.
    standby_clock.now += FAST.lease_duration - 0.5
    assert holder.try_acquire_or_renew()
    assert not standby.try_acquire_or_renew()
    standby_clock.now += FAST.lease_duration - 0.5
    assert not standby.try_acquire_or_renew(), "took over a renewed lease"
    # Now the holder falls silent for a whole lease duration.
    standby_clock.now += 1.0
    assert standby.try_acquire_or_renew()
    assert standby.acquired_how == "expired from holder"
    # The old holder, coming back, finds the Lease taken and must not renew it.
    assert not holder.try_acquire_or_renew()
    assert holder.holder == "standby"
    spec = lease(cluster, namespace).spec
    assert spec.holder_identity == "standby"
    assert spec.lease_transitions == 1


def test_the_holder_stops_at_once_when_another_replica_took_the_lease(cluster, namespace) -> None:
    clock = Clock()
    old, new = elector(cluster, namespace, "old"), elector(cluster, namespace, "new", clock)
    assert asyncio.run(old.acquire(asyncio.Event()))
    assert old.is_leader
    assert not new.try_acquire_or_renew()
    clock.now += FAST.lease_duration + 1  # the old holder's renewals went unseen
    assert new.try_acquire_or_renew()
    with pytest.raises(LeaseLostError, match="held by new"):
        old.hold(threading.Event())
    assert not old.is_leader


def test_the_holder_gives_up_when_it_cannot_renew_within_the_deadline(cluster, namespace) -> None:
    holder = elector(cluster, namespace, "holder", clock=time.monotonic)
    assert asyncio.run(holder.acquire(asyncio.Event()))
    config = kubernetes.client.Configuration()
    config.host = "https://127.0.0.1:9"  # the API server, gone
    holder.api = kubernetes.client.ApiClient(config)
    with pytest.raises(LeaseLostError, match="no renewal within"):
        holder.hold(threading.Event())
    assert not holder.is_leader


def test_renewals_on_their_thread_keep_the_lease_and_report_a_loss(cluster, namespace) -> None:
    holder, rival_clock = elector(cluster, namespace, "holder", clock=time.monotonic), Clock()
    rival = elector(cluster, namespace, "rival", rival_clock)
    assert holder.try_acquire_or_renew()
    lost: list[LeaseLostError] = []
    reported = threading.Event()
    halt = holder.renew_in_thread(lambda err: (lost.append(err), reported.set()))
    try:
        first = lease(cluster, namespace).metadata.resource_version
        wait_for(
            lambda: lease(cluster, namespace).metadata.resource_version != first,
            what="a renewal",
        )
        assert not rival.try_acquire_or_renew()
        rival_clock.now += FAST.lease_duration + 1
        assert rival.try_acquire_or_renew()
        assert reported.wait(timeout=60), "the loss was not reported"
        assert "held by rival" in str(lost[0])
    finally:
        halt()


def test_a_released_lease_is_taken_without_waiting_for_expiry(cluster, namespace) -> None:
    leader, standby = elector(cluster, namespace, "leader"), elector(cluster, namespace, "standby")
    assert leader.try_acquire_or_renew()
    assert not standby.try_acquire_or_renew()
    leader.release()
    spec = lease(cluster, namespace).spec
    assert spec.holder_identity is None
    assert spec.lease_duration_seconds == 1
    # The standby's clock has not moved: only the release lets it in.
    assert standby.try_acquire_or_renew()
    assert standby.acquired_how == "released"
    # Releasing a Lease someone else holds changes nothing.
    leader.release()
    assert lease(cluster, namespace).spec.holder_identity == "standby"


def test_a_stopped_candidate_stops_waiting(cluster, namespace) -> None:
    holder, waiting = elector(cluster, namespace, "holder"), elector(cluster, namespace, "waiting")
    assert holder.try_acquire_or_renew()

    async def scenario() -> bool:
        stop = asyncio.Event()
        attempt = asyncio.create_task(waiting.acquire(stop))
        await asyncio.sleep(0.5)
        stop.set()
        return await asyncio.wait_for(attempt, timeout=30)

    assert asyncio.run(scenario()) is False
    assert lease(cluster, namespace).spec.holder_identity == "holder"
