"""kopf's internals made linear: the same essence as kopf's, the same waiting semantics."""

from __future__ import annotations

import asyncio
import copy
import inspect
from typing import Any

import kopf
from hypothesis import given, settings
from hypothesis import strategies as st
from kopf._cogs.structs import bodies

from frugal.controller.kopfperf import (
    LeanStatusDiffBaseStorage,
    QuietToggleSet,
    install_quiet_toggle_sets,
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
