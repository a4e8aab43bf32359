"""Shell: periodic passes over the watched objects, in place of kopf timers.

The control loops need "every object, every interval". A kopf timer is one task per object,
and kopf puts its finalizer on every object that has one, to stop the task at deletion: one
more write and watch event per created object (1,000 while a thousand endpoints converged),
and objects that cannot be deleted while the operator is gone. Here one task per loop walks
the objects held by a watch index, pacing its calls over the interval (or all at once, for
loops that read a fleet query cached for the tick). It calls the handler with the keyword
arguments a kopf timer would get (body, spec, status, meta, name, namespace, uid, memo and
every index).

Like a kopf timer, a sweep never runs two calls for the same object at once. It skips objects
that are being deleted. A failing call is logged, counted and tried again after ``backoff``
seconds. The sweeps start only once kopf has filled every index (until then a handler would
act on partial data): kopf holds its own handlers back the same way, so the first event one of
them gets marks the moment. Started from that handler, the sweeps also inherit the context
kopf's handlers run in, which ``kopf.event`` needs to post Events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from prometheus_client import Counter

from frugal.controller import kopfperf

log = logging.getLogger("frugal.sweeps")

SWEEP_CALLS = Counter(
    "frugal_sweep_calls_total", "Periodic loop calls, by loop and outcome.", ["sweep", "result"]
)

Handler = Callable[..., Awaitable[Any]]
_REGISTRY_ATTRIBUTE = "_frugal_sweeps"
_KEPT_METADATA = (
    "name",
    "namespace",
    "uid",
    "generation",
    "resourceVersion",
    "labels",
    "annotations",
    "deletionTimestamp",
)


def index_id(plural: str) -> str:
    return f"sweep_{plural}"


def lean_body(body: Any, **_: Any) -> dict[str, Any]:
    """Index function: the parts of an object a periodic handler reads, by namespace/name.

    References into kopf's copy of the event, not copies: the spec and status are shared with
    the other indexes of the same object.
    """
    meta = body.get("metadata") or {}
    lean = {k: body[k] for k in ("apiVersion", "kind", "spec", "status") if k in body}
    lean["metadata"] = {k: meta[k] for k in _KEPT_METADATA if k in meta}
    return {f"{meta.get('namespace')}/{meta.get('name')}": lean}


def handler_kwargs(lean: Mapping[str, Any], memo: Any, indices: Mapping[str, Any]) -> dict:
    """What kopf would pass a timer handler for this object."""
    body = kopf.Body(dict(lean))
    meta = body.metadata
    return {
        **indices,
        "body": body,
        "spec": body.spec,
        "status": body.status,
        "meta": meta,
        "labels": meta.labels,
        "annotations": meta.annotations,
        "name": meta.name,
        "namespace": meta.namespace,
        "uid": meta.uid,
        "memo": memo,
        "logger": log,
    }


@dataclass(frozen=True)
class Sweep:
    """A handler called for every object of a resource, every ``interval`` seconds."""

    id: str
    plural: str
    interval: float
    handler: Handler
    initial_delay: float = 0.0
    backoff: float = 5.0
    concurrency: int = 8
    paced: bool = True
    """Spread the calls over the interval. Off for loops that read a fleet query cached for
    the tick: spread calls would read it up to a tick old, and a decision (scale to zero,
    reroute) would come up to a whole tick later (25 s beyond ``idleAfter`` at 1,000
    endpoints, against 7 s with the calls together)."""


def every(
    registry: kopf.OperatorRegistry,
    group: str,
    version: str,
    plural: str,
    *,
    id: str,
    interval: float,
    initial_delay: float = 0.0,
    backoff: float = 5.0,
    paced: bool = True,
) -> Callable[[Handler], Handler]:
    """Decorator: register ``handler`` to run every ``interval`` seconds for each object."""

    def decorate(handler: Handler) -> Handler:
        sweeps: list[Sweep] = getattr(registry, _REGISTRY_ATTRIBUTE, [])
        if not any(s.plural == plural for s in sweeps):
            index = kopfperf.index(group, version, plural, id=index_id(plural), registry=registry)
            index(lean_body)
            kopf.on.event(
                group, version, plural, id=f"{index_id(plural)}-ready", registry=registry
            )(start_when_indexed)
        sweeps.append(Sweep(id, plural, interval, handler, initial_delay, backoff, paced=paced))
        setattr(registry, _REGISTRY_ATTRIBUTE, sweeps)
        return handler

    return decorate


def registered(registry: kopf.OperatorRegistry) -> list[Sweep]:
    return list(getattr(registry, _REGISTRY_ATTRIBUTE, []))


async def start_when_indexed(memo: Any, **_: Any) -> None:
    """kopf runs this only once every index is filled: the sweeps may start."""
    runner: Runner | None = getattr(memo, "sweeps", None)
    if runner is not None:
        runner.start()


@dataclass
class Runner:
    """The sweeps of one operator process (its leader), started once its indexes are filled."""

    sweeps: list[Sweep]
    memo: Any
    indices: Mapping[str, Any]
    tasks: list[asyncio.Task] = field(default_factory=list)
    calls: dict[tuple[str, str], asyncio.Task] = field(default_factory=dict)
    """The calls running now, by (sweep, object)."""
    started: bool = False

    def start(self) -> None:
        """Start every sweep, once; from a kopf handler, whose context the sweeps keep."""
        if self.started:
            return
        self.started = True
        self.tasks = [asyncio.create_task(self._run(s), name=f"sweep {s.id}") for s in self.sweeps]

    async def stop(self) -> None:
        """Cancel the sweeps and the calls they started."""
        pending = [*self.tasks, *self.calls.values()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _run(self, sweep: Sweep) -> None:
        await asyncio.sleep(sweep.initial_delay)
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(sweep.concurrency)
        while True:
            started = loop.time()
            keys = list(self.indices[index_id(sweep.plural)])
            pace = sweep.interval / max(len(keys), 1) if sweep.paced else 0.0
            for i, key in enumerate(keys):
                if (sweep.id, key) not in self.calls:
                    await slots.acquire()
                    self._spawn(sweep, key, slots)
                await asyncio.sleep(max(0.0, started + (i + 1) * pace - loop.time()))
            await asyncio.sleep(max(0.0, started + sweep.interval - loop.time()))

    def _spawn(self, sweep: Sweep, key: str, slots: asyncio.Semaphore) -> None:
        task = asyncio.create_task(self._call(sweep, key, slots), name=f"{sweep.id} {key}")
        self.calls[sweep.id, key] = task
        task.add_done_callback(lambda _: self.calls.pop((sweep.id, key), None))

    async def _call(self, sweep: Sweep, key: str, slots: asyncio.Semaphore) -> None:
        try:
            while True:
                lean = current(self.indices[index_id(sweep.plural)], key)
                if lean is None or (lean.get("metadata") or {}).get("deletionTimestamp"):
                    return
                try:
                    await sweep.handler(**handler_kwargs(lean, self.memo, self.indices))
                except Exception:
                    SWEEP_CALLS.labels(sweep.id, "error").inc()
                    log.exception(
                        "%s: %s failed; trying again in %ss", key, sweep.id, sweep.backoff
                    )
                    await asyncio.sleep(sweep.backoff)
                    continue
                SWEEP_CALLS.labels(sweep.id, "ok").inc()
                return
        finally:
            slots.release()


def current(index: Mapping[str, Iterable[Any]], key: str) -> Any:
    """The object's newest lean body in the index, or None once it is gone."""
    if key not in index:
        return None
    return next(iter(index[key]), None)
