"""Periodic sweeps: kopf-timer arguments, start after indexing, no overlap, retry, deletions."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace
from typing import Any

import kopf

from frugal.controller.sweeps import (
    Runner,
    Sweep,
    handler_kwargs,
    index_id,
    lean_body,
    start_when_indexed,
)


def endpoint(name: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "generation": 2,
            "managedFields": [{"manager": "kubectl"}],
            **meta,
        },
        "spec": {"model": {"uri": "hf://o/m"}},
        "status": {"phase": "Serving"},
    }


def index_of(*objects: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A stand-in for kopf's index (key → store of values), filled by the real index function."""
    out: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        for key, value in lean_body(kopf.Body(obj)).items():
            out[key] = [value]
    return out


def test_the_lean_body_keeps_what_handlers_read_and_shares_spec_and_status() -> None:
    obj = endpoint("a", annotations={"frugal.dev/wake": "t"})
    ((key, lean),) = lean_body(obj).items()
    assert key == "ns/a"
    assert "managedFields" not in lean["metadata"]
    assert lean["spec"] is obj["spec"]
    assert lean["status"] is obj["status"]
    kwargs = handler_kwargs(lean, memo="memo", indices={"endpoints_index": "idx"})
    assert (kwargs["name"], kwargs["namespace"], kwargs["uid"]) == ("a", "ns", "uid-a")
    assert kwargs["meta"].get("generation") == 2
    assert kwargs["annotations"]["frugal.dev/wake"] == "t"
    assert dict(kwargs["spec"]) == obj["spec"]
    assert dict(kwargs["status"]) == obj["status"]
    assert kwargs["body"]["kind"] == "InferenceEndpoint"  # events need the involved object
    assert (kwargs["memo"], kwargs["endpoints_index"]) == ("memo", "idx")


async def until(condition: Any, what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def test_sweeps_call_each_live_object_once_at_a_time_after_indexing() -> None:
    async def run() -> None:
        indices = {
            index_id("inferenceendpoints"): index_of(
                endpoint("a"),
                endpoint("b"),
                endpoint("gone", deletionTimestamp="2026-11-27T00:00:00Z"),
            )
        }
        calls: Counter[str] = Counter()
        active: set[str] = set()
        overlaps: list[str] = []
        release_a = asyncio.Event()

        async def handler(name: str, **kwargs: Any) -> None:
            if name in active:
                overlaps.append(name)
            active.add(name)
            calls[name] += 1
            try:
                if name == "a":
                    await release_a.wait()  # a slow call spans many passes
            finally:
                active.discard(name)

        sweep = Sweep("scale", "inferenceendpoints", 0.01, handler)
        runner = Runner([sweep], memo=None, indices=indices)
        memo = SimpleNamespace(sweeps=runner)
        await asyncio.sleep(0.05)
        assert not calls, "nothing runs before kopf has filled its indexes"
        # kopf's first handler call after indexing starts the sweeps, once.
        await start_when_indexed(memo=memo)
        await start_when_indexed(memo=memo)
        assert len(runner.tasks) == 1
        await until(lambda: calls["b"] >= 5, "several passes over b")
        assert calls["a"] == 1, "a call still running is not started again"
        release_a.set()
        await until(lambda: calls["a"] >= 2, "a called again once its call returned")
        await runner.stop()
        assert not overlaps
        assert calls["gone"] == 0, "an object being deleted is skipped"

    asyncio.run(run())


def test_a_failing_call_is_retried_after_its_backoff() -> None:
    async def run() -> None:
        indices = {index_id("routingpolicies"): index_of(endpoint("p"))}
        attempts = 0

        async def flaky(**_: Any) -> None:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise RuntimeError("API server away")

        # One pass an hour: only the backoff can bring the second attempt.
        sweep = Sweep("reroute-tick", "routingpolicies", 3600, flaky, backoff=0.01)
        runner = Runner([sweep], memo=None, indices=indices)
        runner.start()
        await until(lambda: attempts == 2, "the retry")
        await runner.stop()

    asyncio.run(run())


def test_stopping_cancels_the_calls_in_flight() -> None:
    async def run() -> None:
        indices = {index_id("cachepolicies"): index_of(endpoint("c"))}
        entered, cancelled = asyncio.Event(), asyncio.Event()

        async def hangs(**_: Any) -> None:
            entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        runner = Runner([Sweep("cache-status", "cachepolicies", 1, hangs)], None, indices)
        runner.start()
        await asyncio.wait_for(entered.wait(), 10)
        await runner.stop()
        assert cancelled.is_set()
        assert not runner.calls

    asyncio.run(run())


def test_an_unpaced_sweep_calls_every_object_at_the_start_of_its_pass() -> None:
    async def run() -> None:
        names = [f"e{i}" for i in range(20)]
        indices = {index_id("inferenceendpoints"): index_of(*(endpoint(n) for n in names))}
        called: set[str] = set()

        async def handler(name: str, **_: Any) -> None:
            called.add(name)

        # One pass an hour: paced, the second object would wait three minutes.
        sweep = Sweep("scale", "inferenceendpoints", 3600, handler, paced=False)
        runner = Runner([sweep], None, indices)
        runner.start()
        await until(lambda: called == set(names), "every object in the first pass")
        await runner.stop()

    asyncio.run(run())
