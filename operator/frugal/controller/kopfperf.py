"""Shell: kopf's internals, kept to kopf's behaviour but lean at a thousand endpoints.

Each was found by profiling the operator over 1,000 endpoints (4,000 to 6,000 watched
objects); BENCHMARKS.md "Fleet scale" has the figures. Each keeps kopf's observable behaviour
(tests compare them with kopf's own classes, or run them against the API server) and is
installed only through kopf's settings or, by :func:`install`, before ``kopf.operator``
starts.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import kopf
from kopf._cogs.aiokits import aiotoggles  # kopf's own primitives, as its reactor uses them
from kopf._cogs.clients import watching
from kopf._cogs.structs import dicts

_KOPF_TOGGLE_SET = aiotoggles.ToggleSet
_KOPF_CONTINUOUS_WATCH = watching.continuous_watch


class LeanStatusDiffBaseStorage(kopf.StatusDiffBaseStorage):
    """kopf's status diff-base storage, building the essence without copying what it drops.

    On every watch event kopf builds the object's "essence" (spec, labels, annotations) to detect
    changes. Its ``build`` deep-copies the whole object, then deletes metadata and status:
    copying managedFields and the status only to discard them was 11% of the event loop while a
    thousand endpoints converged. Only the parts the essence keeps are handed to kopf's own
    ``build`` here, so the essence (and what is stored) is exactly kopf's.
    """

    def build(self, *, body: Any, extra_fields: Iterable[Any] | None = None) -> Any:
        extra = list(extra_fields or [])
        meta = body.get("metadata") or {}
        lean: dict[str, Any] = {k: v for k, v in body.items() if k not in ("metadata", "status")}
        lean["metadata"] = {k: meta[k] for k in ("labels", "annotations") if k in meta}
        # Fields handlers asked for besides the essence (e.g. one in status), uncopied:
        # kopf's build copies them.
        dicts.cherrypick(src=body, dst=lean, fields=extra)
        return super().build(body=lean, extra_fields=extra)


class ProcessDiffBaseStorage(LeanStatusDiffBaseStorage):
    """kopf's diff base (the essence last handled) kept in this process, not in the status.

    kopf compares each object with the essence it last handled to tell a creation or a spec
    change from a status-only event, and by default writes that essence into the object: one
    more status write per created or changed object (1,000 of 3,900 while a thousand endpoints
    converged) and about a kilobyte more in every watch event of it. Only the leader runs kopf,
    and a process that starts (a restart, a new leader) reconciles every object anyway: what
    it has not handled yet counts as created, which the handlers treat as resumed. So the
    essence lives here, by uid, as compact JSON (as kopf would store it); it is dropped once the
    object is being deleted. The field an earlier version wrote is cleared on the next store.
    """

    def __init__(self, *, field: str) -> None:
        super().__init__(field=field)
        self._encoded: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._encoded)

    def fetch(self, *, body: Any) -> Any:
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            encoded = self._encoded.pop(meta.get("uid"), None)
        else:
            encoded = self._encoded.get(meta.get("uid"))
        return json.loads(encoded) if encoded is not None else None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        meta = body.get("metadata") or {}
        if not meta.get("deletionTimestamp"):
            self._encoded[meta["uid"]] = json.dumps(essence, separators=(",", ":"))
        if dicts.resolve(body, self.field, None) is not None:
            dicts.ensure(patch, self.field, None)


class LeanStatusProgressStorage(kopf.StatusProgressStorage):
    """kopf's status progress storage, clearing an essence without deep-copying it.

    On every watch event kopf clears its progress records out of the old and new essences
    before comparing them; its ``clear`` deep-copies each whole essence (the spec included) to
    delete one field, 5% of the event loop while a thousand endpoints converged. Here only the
    dicts on the deleted paths are copied: the result is equal to kopf's, and the essence passed
    in is left as it was, as with kopf's.
    """

    def clear(self, *, essence: Any) -> Any:
        out = dict(essence)
        node = out
        for part in self.field[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                break
            node[part] = node = dict(child)
        if isinstance(out.get("metadata"), dict):
            # remove_empty_stanzas deletes empty labels/annotations from it.
            out["metadata"] = dict(out["metadata"])
        dicts.remove(out, self.field)
        self.remove_empty_stanzas(out)
        return out


class QuietToggleSet(_KOPF_TOGGLE_SET):
    """kopf's toggle set, waking its waiters only when the set's state changes.

    At start-up kopf holds every object's handlers until all indexes are filled: each object
    of an indexed kind adds a toggle to one set while listed and drops it once indexed, and
    every handler waits on the set. kopf's set woke every waiter on every add and drop, and
    each woken waiter re-took the lock in turn: quadratic in the objects. At 6,000 objects
    that was 220 s of a saturated core before the first reconcile (75% of the samples in
    asyncio's call_soon). Waiters wait for the set's state, so waking them when it did not
    change is only work; toggles turned one by one still notify as in kopf.
    """

    async def make_toggle(self, __val: bool = False, *, name: str | None = None) -> Any:
        toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
        async with self._condition:
            before = self.is_on()
            self._toggles.add(toggle)
            if self.is_on() != before:
                self._condition.notify_all()
        return toggle

    async def drop_toggle(self, toggle: Any) -> None:
        await self.drop_toggles([toggle])

    async def drop_toggles(self, toggles: Iterable[Any]) -> None:
        async with self._condition:
            before = self.is_on()
            self._toggles.difference_update(toggles)
            if self.is_on() != before:
                self._condition.notify_all()


def in_loop(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as a coroutine function under its own name, so kopf calls it in the event loop.

    kopf runs every synchronous handler on its thread pool: an executor hop, a context copy and
    a thread switch per call (7% of the event loop while 1,000 endpoints converged, for index
    functions that take microseconds). Only for pure, fast functions: a blocking one would
    stall the loop. Not ``functools.wraps``: kopf follows ``__wrapped__`` to decide whether a
    handler is async, and would run the wrapper on a thread without awaiting it.
    """

    async def call(**kwargs: Any) -> Any:
        return fn(**kwargs)

    call.__name__, call.__qualname__, call.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
    call.__module__ = fn.__module__
    return call


def index(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``kopf.index`` for a pure index function, called in the event loop (:func:`in_loop`).
    Returns the function itself, so it stays a plain function for callers and tests."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        kopf.index(*args, **kwargs)(in_loop(fn))
        return fn

    return decorate


def drop_managed_fields(event: Any) -> Any:
    """The watch event with its object's ``metadata.managedFields`` removed (in place).

    managedFields is the API server's record of which manager set which field, for server-side
    apply; neither kopf nor frugal reads it, and it is about half of every listed Deployment,
    pod and endpoint. kopf holds every listed object until all its indexes are filled, so on a
    restart over 1,000 endpoints it was some 60 MB of the peak. client-go's informers offer the
    same trimming (a transform that strips managedFields) for the same reason.
    """
    obj = event.get("object") if isinstance(event, dict) else None
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return event


async def lean_continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
    """kopf's list-then-watch stream of one resource, with :func:`drop_managed_fields` applied
    to each event before kopf queues it."""
    async with contextlib.aclosing(_KOPF_CONTINUOUS_WATCH(**kwargs)) as stream:
        async for event in stream:
            yield drop_managed_fields(event)


def install_quiet_toggle_sets() -> None:
    """Make kopf's reactor build :class:`QuietToggleSet` (it looks the class up by module
    attribute when it starts). Call before ``kopf.operator``; idempotent."""
    aiotoggles.ToggleSet = QuietToggleSet  # type: ignore[misc]


def install_lean_watch() -> None:
    """Make kopf's watchers use :func:`lean_continuous_watch` (``infinite_watch`` looks the
    stream up by module attribute on each reconnect). Call before ``kopf.operator``;
    idempotent."""
    watching.continuous_watch = lean_continuous_watch  # type: ignore[assignment]


def install() -> None:
    """Everything here that kopf picks up from its modules rather than from its settings."""
    install_quiet_toggle_sets()
    install_lean_watch()
