"""Leader election on a coordination.k8s.io/v1 Lease: exactly one operator replica acts.

The protocol is client-go's (kube-controller-manager, controller-runtime): the holder renews
the Lease every ``retry_period``; a candidate takes it over only when its record has not changed
for the record's ``leaseDurationSeconds`` as measured on the candidate's own monotonic clock
(no two clocks are ever compared; renewTime is written for people, not read); every write
carries the resourceVersion it was computed from, so of two concurrent writers the API server
accepts one. The holder gives up when it could not renew for ``renew_deadline`` (shorter than
the lease duration, so it stops before anyone else may start) and on shutdown it clears the
holder, so a standby takes over at its next retry instead of waiting for expiry.

The official client's ``kubernetes.leaderelection`` runs the same loop in threads, but it cannot
be stopped while it waits, never releases the Lease and uses the global client configuration;
kopf's own peering is priority-based pausing, not mutual exclusion. Hence this small elector:
a pure decision (``decide``) and a shell (``LeaseElector``) whose renewals run on a thread of
their own. Not on the event loop: reconciles do CPU work there (placement across the fleet),
and a loop busy for longer than the renew deadline would cost a healthy leader its Lease (seen
with 200 endpoints on two cores). A loop that hangs for good is the liveness probe's business.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient, ApiException
from prometheus_client import Gauge
from urllib3.exceptions import HTTPError

from frugal import kube

log = logging.getLogger("frugal.leader")

IS_LEADER = Gauge("frugal_leader", "1 while this operator replica holds the leader Lease.")
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
JITTER = 1.2
"""Candidates retry after retry_period × U(1, JITTER), so they do not write in lockstep."""


@dataclass(frozen=True)
class Timings:
    """client-go's defaults: a standby waits 15 s, the holder gives up after 10 s."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > JITTER * self.retry_period > 0:
            raise ValueError(
                "need lease_duration > renew_deadline > 1.2 × retry_period > 0, got "
                f"{self.lease_duration}, {self.renew_deadline}, {self.retry_period}"
            )


def identity(pod_name: str | None = None) -> str:
    """The pod's name (downward API) plus a random suffix: a restarted pod is a new candidate."""
    base = pod_name or os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{secrets.token_hex(4)}"


def lease_namespace(explicit: str | None, watched: list[str]) -> str:
    """Where the Lease lives: given, else the pod's namespace, else the first watched one."""
    if explicit:
        return explicit
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if SERVICE_ACCOUNT_NAMESPACE.is_file():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return watched[0] if watched else "default"


# --- the decision (pure) ----------------------------------------------------------------------


class Action(enum.Enum):
    WRITE = "write"
    """Write our record: create, renew, or take over an expired or released Lease."""
    WAIT = "wait"
    """Someone else holds a Lease that has not expired yet."""


@dataclass(frozen=True)
class Record:
    """What the elector reads from a Lease (a missing Lease is no Observation at all)."""

    holder: str
    duration: float
    transitions: int
    acquired: str | None
    """acquireTime as written (MicroTime text), kept while the holder stays the same."""
    resource_version: str


@dataclass(frozen=True)
class Observation:
    """The last record seen and when it was first seen, on this process's monotonic clock."""

    record: Record
    since: float


def observe(previous: Observation | None, record: Record, now: float) -> Observation:
    """Any write to the Lease (a new resourceVersion) restarts the expiry countdown."""
    if previous is not None and previous.record.resource_version == record.resource_version:
        return previous
    return Observation(record, now)


def decide(observation: Observation | None, me: str, now: float) -> Action:
    """Write when the Lease is missing, ours, released, or unchanged for its whole duration."""
    if observation is None:
        return Action.WRITE
    record = observation.record
    if not record.holder or record.holder == me:
        return Action.WRITE
    expired = now >= observation.since + record.duration
    return Action.WRITE if expired else Action.WAIT


# --- the shell --------------------------------------------------------------------------------


class LeaseLostError(RuntimeError):
    """Another replica holds the Lease, or it could not be renewed within the deadline."""


def _micro_time(t: dt.datetime) -> str:
    """MicroTime as the API server parses it: always six fractional digits. (The generated
    client's CoordinationV1Api turns times into datetimes and sends them with isoformat, which
    drops the digits on a whole second and is refused; hence plain JSON through kube.request.)
    """
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(lease: dict[str, Any]) -> Record:
    spec = lease.get("spec") or {}
    return Record(
        holder=spec.get("holderIdentity") or "",
        duration=float(spec.get("leaseDurationSeconds") or 0),
        transitions=int(spec.get("leaseTransitions") or 0),
        acquired=spec.get("acquireTime"),
        resource_version=lease["metadata"]["resourceVersion"],
    )


class LeaseElector:
    """Acquire, hold and release one Lease for ``me``.

    ``clock`` is monotonic and only ever compared with itself; ``wall`` only stamps renewTime
    and acquireTime for people reading the Lease. The API calls block: ``acquire`` runs them
    on a thread of the elector's own, ``hold`` is meant to run on a thread (``renew_in_thread``).
    """

    def __init__(
        self,
        api: ApiClient,
        *,
        namespace: str,
        name: str,
        me: str,
        timings: Timings = Timings(),
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.api = api
        self.namespace, self.name, self.me = namespace, name, me
        self.timings = timings
        self.clock, self.wall = clock, wall
        self.observed: Observation | None = None
        self.is_leader = False
        self.acquired_how = ""
        """How the Lease became ours: created, released, or expired from X (for logs)."""
        # Never queued behind reconciles on the default executor.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")
        self._lock = threading.Lock()

    @property
    def holder(self) -> str:
        observed = self.observed
        return observed.record.holder if observed else ""

    def _call(
        self, method: str, body: dict[str, Any] | None = None, until: float | None = None
    ) -> dict[str, Any]:
        """One request, given the time left until ``until`` (time.monotonic) to answer."""
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"
        if method != "POST":
            path += f"/{self.name}"
        left = self.timings.renew_deadline if until is None else until - time.monotonic()
        return kube.request(self.api, method, path, body=body, timeout=max(0.5, left))

    def _body(self, previous: Record | None, holder: str, duration: float) -> dict[str, Any]:
        """The whole Lease to write; with ``previous``, guarded by its resourceVersion."""
        now = _micro_time(self.wall())
        same = previous is not None and previous.holder == holder and bool(holder)
        transitions = previous.transitions if previous else 0
        if previous is not None and previous.holder and previous.holder != holder:
            transitions += 1
        metadata = {"name": self.name, "namespace": self.namespace}
        if previous is not None:
            metadata["resourceVersion"] = previous.resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": holder or None,
                "leaseDurationSeconds": max(1, round(duration)),
                "acquireTime": previous.acquired if same and previous else now,
                "renewTime": now,
                "leaseTransitions": transitions,
            },
        }

    def try_acquire_or_renew(self, timeout: float | None = None) -> bool:
        """One round: read, decide, write with the read's resourceVersion. True: we hold it.

        ``timeout`` bounds the whole round (its two requests)."""
        until = time.monotonic() + (timeout or self.timings.renew_deadline)
        with self._lock:
            try:
                return self._round(until)
            except ApiException as err:
                log.warning("Lease %s/%s: %s", self.namespace, self.name, err.reason)
            except (HTTPError, OSError) as err:  # the API server unreachable: a failed round
                log.warning("Lease %s/%s: %s", self.namespace, self.name, err)
            return False

    def _round(self, until: float) -> bool:
        try:
            lease = self._call("GET", until=until)
        except ApiException as err:
            if err.status != 404:
                raise
            try:
                lease = self._call(
                    "POST", self._body(None, self.me, self.timings.lease_duration), until
                )
            except ApiException as err2:
                if err2.status == 409:  # another candidate created it first
                    return False
                raise
            self.observed = Observation(_record(lease), self.clock())
            self.acquired_how = "created"
            return True
        now = self.clock()
        self.observed = observe(self.observed, _record(lease), now)
        if decide(self.observed, self.me, now) is Action.WAIT:
            return False
        previous = self.observed.record
        body = self._body(previous, self.me, self.timings.lease_duration)
        try:
            # The body carries the read's resourceVersion: 409 if anyone wrote since.
            lease = self._call("PUT", body, until)
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        self.observed = Observation(_record(lease), now)
        if previous.holder != self.me:
            self.acquired_how = f"expired from {previous.holder}" if previous.holder else "released"
        return True

    def _pause(self) -> float:
        return self.timings.retry_period * random.uniform(1.0, JITTER)

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Retry until we hold the Lease (True) or ``stop`` is set (False)."""
        loop = asyncio.get_running_loop()
        last_seen = None
        while not stop.is_set():
            if await loop.run_in_executor(self._pool, self.try_acquire_or_renew):
                self._set_leader(True)
                log.info(
                    "acquired Lease %s/%s as %s (%s)",
                    self.namespace,
                    self.name,
                    self.me,
                    self.acquired_how,
                )
                return True
            if self.holder != last_seen:
                last_seen = self.holder
                log.info(
                    "standing by: Lease %s/%s held by %s", self.namespace, self.name, last_seen
                )
            try:
                await asyncio.wait_for(stop.wait(), self._pause())
            except TimeoutError:
                continue
        return False

    def hold(self, stop: threading.Event) -> None:
        """Renew every retry period until ``stop`` is set (blocking).

        Raises LeaseLostError as soon as we may no longer act: another replica holds the Lease,
        or attempts kept failing until the renew deadline (counted from the start of the last
        successful attempt, so the holder stops before any standby may start). A renewal is
        always attempted before giving up: after a stall of the whole process, a write that
        the API server accepts on our resourceVersion proves nobody took the Lease meanwhile.
        """
        deadline = self.timings.renew_deadline
        last_renewed = self.clock()
        while not stop.wait(self.timings.retry_period):
            late = self.clock() - last_renewed
            if late > (self.timings.retry_period + deadline) / 2:
                log.warning("Lease renewal %.1f s after the last one: the process stalled", late)
            while True:
                started = self.clock()
                budget = max(last_renewed + deadline - started, self.timings.retry_period)
                if self.try_acquire_or_renew(timeout=budget):
                    last_renewed = started
                    break
                if self.holder and self.holder != self.me:
                    self._set_leader(False)
                    raise LeaseLostError(f"the Lease is held by {self.holder}")
                remaining = last_renewed + deadline - self.clock()
                if remaining <= 0:
                    self._set_leader(False)
                    raise LeaseLostError(f"no renewal within {deadline} s")
                if stop.wait(min(self.timings.retry_period, remaining)):
                    return

    def renew_in_thread(self, on_lost: Callable[[LeaseLostError], None]) -> Callable[[], None]:
        """Run ``hold`` on a thread of its own; ``on_lost`` is called on that thread. Returns
        a function that stops the renewals and waits for the thread."""
        stop = threading.Event()

        def renew() -> None:
            try:
                self.hold(stop)
            except LeaseLostError as err:
                on_lost(err)

        thread = threading.Thread(target=renew, name="lease renewal", daemon=True)
        thread.start()

        def halt() -> None:
            stop.set()
            thread.join()

        return halt

    def release(self) -> None:
        """Clear the holder (duration 1 s) so a standby takes over at its next retry."""
        self._set_leader(False)
        with self._lock:
            try:
                lease = self._call("GET")
                if _record(lease).holder != self.me:
                    return
                self._call("PUT", self._body(_record(lease), "", 1))
                log.info("released Lease %s/%s", self.namespace, self.name)
            except (ApiException, HTTPError, OSError) as err:
                # Expiry takes over from here: the standby waits the lease duration instead.
                log.warning("could not release Lease %s/%s: %s", self.namespace, self.name, err)

    def _set_leader(self, value: bool) -> None:
        self.is_leader = value
        IS_LEADER.set(1 if value else 0)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
