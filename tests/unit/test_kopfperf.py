"""kopf's internals made linear: the same essence as kopf's, the same waiting semantics."""

from __future__ import annotations

import asyncio
import copy
import inspect
from typing import Any

import kopf
from hypothesis import given, settings
from hypothesis import strategies as st
from kopf._cogs.structs import bodies, patches

from frugal.controller.kopfperf import (
    LeanStatusDiffBaseStorage,
    LeanStatusProgressStorage,
    ProcessDiffBaseStorage,
    QuietToggleSet,
    install_lean_watch,
    install_quiet_toggle_sets,
    lean_continuous_watch,
)

FIELD = "status.kopf.last-handled-configuration"
leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
annotations = st.dictionaries(
    st.sampled_from(
        [
            "a",
            "frugal.dev/wake",
            "kopf.zalando.org/last-handled-configuration",
            "kubectl.kubernetes.io/last-applied-configuration",
        ]
    ),
    st.text(max_size=5),
)


@st.composite
def objects(draw: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "e",
        "namespace": "ns",
        "uid": "u",
        "resourceVersion": "12",
        "managedFields": draw(st.lists(trees, max_size=2)),
    }
    if draw(st.booleans()):
        meta["labels"] = draw(st.dictionaries(st.text(max_size=4), st.text(max_size=4)))
    if draw(st.booleans()):
        meta["annotations"] = draw(annotations)
    obj: dict[str, Any] = {"apiVersion": "frugal.dev/v1alpha1", "kind": "InferenceEndpoint"}
    obj["metadata"] = meta
    obj["spec"] = draw(trees)
    if draw(st.booleans()):
        obj["status"] = {"phase": draw(st.text(max_size=4)), "kopf": {"x": 1}}
    return obj


@settings(max_examples=300)
@given(
    objects(),
    st.sampled_from(
        [None, [], [("metadata", "annotations", "frugal.dev/wake")], ["status.phase"], ["spec"]]
    ),
)
def test_the_essence_is_kopfs(obj: dict[str, Any], extra: Any) -> None:
    before = copy.deepcopy(obj)
    body = bodies.Body(obj)
    want = kopf.StatusDiffBaseStorage(field=FIELD).build(body=body, extra_fields=extra)
    got = LeanStatusDiffBaseStorage(field=FIELD).build(body=body, extra_fields=extra)
    assert got == want
    assert obj == before  # neither touches the object it was given


def test_the_diff_base_is_kept_in_the_process_not_written() -> None:
    storage = ProcessDiffBaseStorage(field=FIELD)
    obj: dict[str, Any] = {
        "metadata": {"name": "e", "uid": "u1", "labels": {"a": "b"}},
        "spec": {"model": {"uri": "hf://o/m"}},
        "status": {"phase": "Pending"},
    }
    body = bodies.Body(obj)
    assert storage.fetch(body=body) is None  # never handled: kopf treats it as created
    essence = storage.build(body=body)
    patch = patches.Patch()
    storage.store(body=body, patch=patch, essence=essence)
    assert not patch, "nothing is written to the object"
    assert (
        storage.fetch(body=body)
        == essence
        == kopf.StatusDiffBaseStorage(field=FIELD).build(body=body)
    )
    # Another object, and the same one as an earlier version left it: its field is cleared.
    legacy = copy.deepcopy(obj)
    legacy["metadata"]["uid"] = "u2"
    legacy["status"]["kopf"] = {"last-handled-configuration": '{"spec":{}}'}
    patch = patches.Patch()
    storage.store(body=bodies.Body(legacy), patch=patch, essence=essence)
    assert dict(patch) == {"status": {"kopf": {"last-handled-configuration": None}}}
    assert len(storage) == 2
    # Being deleted: forgotten, and not stored again by the deletion's own handling.
    obj["metadata"]["deletionTimestamp"] = "2026-11-27T00:00:00Z"
    assert storage.fetch(body=bodies.Body(obj)) == essence
    storage.store(body=bodies.Body(obj), patch=patches.Patch(), essence=essence)
    assert storage.fetch(body=bodies.Body(obj)) is None
    assert len(storage) == 1


@st.composite
def essences(draw: Any) -> dict[str, Any]:
    """What kopf clears: spec, labels and annotations (maybe empty), and maybe a status."""
    essence: dict[str, Any] = {"spec": draw(trees)}
    meta = {
        key: draw(st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2))
        for key in draw(st.lists(st.sampled_from(["labels", "annotations"]), unique=True))
    }
    if meta or draw(st.booleans()):
        essence["metadata"] = meta
    if draw(st.booleans()):
        kopf_part = draw(st.dictionaries(st.sampled_from(["progress", "dummy"]), trees))
        essence["status"] = {"kopf": kopf_part, **draw(st.dictionaries(st.text(max_size=3), trees))}
    return essence


@settings(max_examples=300)
@given(essences())
def test_clearing_progress_is_kopfs(essence: dict[str, Any]) -> None:
    before = copy.deepcopy(essence)
    want = kopf.StatusProgressStorage(field="status.kopf.progress").clear(essence=essence)
    got = LeanStatusProgressStorage(field="status.kopf.progress").clear(essence=essence)
    assert got == want
    assert essence == before  # the essence it was given is left as it was


def test_toggle_set_wakes_its_waiters_once_when_it_turns() -> None:
    async def run() -> None:
        toggles = QuietToggleSet(all)
        notified = 0
        notify_all = toggles._condition.notify_all

        def counting() -> None:
            nonlocal notified
            notified += 1
            notify_all()

        toggles._condition.notify_all = counting  # type: ignore[method-assign]
        # The first toggle turns the (empty, hence on) set off: one notification.
        listed = [await toggles.make_toggle(name=str(i)) for i in range(200)]
        assert notified == 1
        assert toggles.is_off()
        woken: list[int] = []

        async def handler(i: int) -> None:
            await toggles.wait_for(True)
            woken.append(i)

        waiting = [asyncio.create_task(handler(i)) for i in range(100)]
        await asyncio.sleep(0)
        for toggle in listed[:-1]:
            await toggles.drop_toggle(toggle)
        await asyncio.sleep(0)
        assert woken == []  # still off: nobody was woken for nothing
        assert notified == 1
        await toggles.drop_toggles(listed[-1:])
        await asyncio.gather(*waiting)
        assert sorted(woken) == list(range(100))
        assert notified == 2
        # Toggles turned one by one notify as in kopf (the pause set of peering uses that).
        paused = QuietToggleSet(any)
        one = await paused.make_toggle(name="peer")
        turned_on = asyncio.create_task(paused.wait_for(True))
        await asyncio.sleep(0)
        await one.turn_to(True)
        await asyncio.wait_for(turned_on, 5)

    asyncio.run(run())


def test_kopf_builds_its_toggle_sets_through_the_patched_module_attribute() -> None:
    """If kopf stops looking ToggleSet up on its module, installing would silently do nothing."""
    from kopf._cogs.aiokits import aiotoggles
    from kopf._core.reactor import orchestration, running

    assert "aiotoggles.ToggleSet(all)" in inspect.getsource(orchestration)
    assert "aiotoggles.ToggleSet(any)" in inspect.getsource(running)
    original = aiotoggles.ToggleSet
    try:
        install_quiet_toggle_sets()
        assert aiotoggles.ToggleSet is QuietToggleSet
    finally:
        aiotoggles.ToggleSet = original


def test_kopf_watches_through_the_patched_module_attribute() -> None:
    """If kopf stops looking continuous_watch up on its module, the lean stream is bypassed."""
    from kopf._cogs.clients import watching

    assert "stream = continuous_watch(" in inspect.getsource(watching.infinite_watch)
    original = watching.continuous_watch
    try:
        install_lean_watch()
        install_lean_watch()  # idempotent: never wraps itself
        assert watching.continuous_watch is lean_continuous_watch
    finally:
        watching.continuous_watch = original


def test_the_lean_stream_drops_managed_fields_and_closes_kopfs() -> None:
    from frugal.controller import kopfperf

    closed = []

    async def kopfs(**_: Any) -> Any:
        try:
            yield {"type": None, "object": {"metadata": {"name": "a", "managedFields": [{}]}}}
            yield "LISTED"  # kopf's bookmarks pass through
            yield {"type": "ERROR", "object": {"code": 410}}
            yield {"type": "MODIFIED", "object": {"metadata": {"name": "b"}}}
        finally:
            closed.append(True)

    async def run() -> list[Any]:
        original = kopfperf._KOPF_CONTINUOUS_WATCH
        kopfperf._KOPF_CONTINUOUS_WATCH = kopfs
        try:
            stream = lean_continuous_watch(resource="r")
            out = [await anext(stream) for _ in range(3)]
            await stream.aclose()  # kopf stops reading on a 410
            return out
        finally:
            kopfperf._KOPF_CONTINUOUS_WATCH = original

    out = asyncio.run(run())
    assert out == [
        {"type": None, "object": {"metadata": {"name": "a"}}},
        "LISTED",
        {"type": "ERROR", "object": {"code": 410}},
    ]
    assert closed == [True]


def test_index_functions_run_in_the_loop_under_their_own_names() -> None:
    """kopf calls them as coroutines (no thread hop), and the index keeps the function's name."""
    from kopf._core.actions.invocation import invoke, is_async_fn

    from frugal.controller import kopfperf

    threads: list[int] = []

    def by_name(name: str, **_: Any) -> dict[str, str]:
        """Doc."""
        import threading

        threads.append(threading.get_ident())
        return {name: name}

    registry = kopf.OperatorRegistry()
    assert kopfperf.index("", "v1", "configmaps", registry=registry)(by_name) is by_name
    (handler,) = registry._indexing.get_all_handlers()
    assert handler.id == by_name.__qualname__  # the id kopf gives the function itself
    assert is_async_fn(handler.fn)
    assert handler.fn.__doc__ == "Doc."

    async def call() -> Any:
        import threading

        result = await invoke(handler.fn, kwargs={"name": "a", "namespace": "n"})
        return result, threading.get_ident()

    result, loop_thread = asyncio.run(call())
    assert result == {"a": "a"}
    assert threads == [loop_thread]
