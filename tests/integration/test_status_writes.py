"""Status writes from the newest known copy, preconditioned, against the real API server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from frugal import kube
from frugal.controller.endpoints import Context
from frugal.controller.metrics import API_REQUESTS
from frugal.controller.statuswrites import Snapshot, StatusWriter, newer
from frugal.settings import Settings
from support.operator import counter_total

pytestmark = pytest.mark.cluster


def endpoint(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"uri": "hf://o/m", "servedName": name, "parameters": 1e9},
            "capacity": {"preference": ["on-demand"]},
        },
    }


def set_phase(phase: str) -> Any:
    def compute(current: Snapshot) -> dict[str, Any]:
        return {} if current.status.get("phase") == phase else {"phase": phase}

    return compute


def test_a_status_write_needs_no_read_when_the_copy_is_current(cluster, namespace) -> None:
    obj = cluster.apply(endpoint(namespace, "a"))
    ctx = Context(settings=Settings(), api=cluster.api)

    async def run() -> None:
        before = counter_total(API_REQUESTS)
        written = await ctx.statuses.update(
            ctx, namespace, "a", Snapshot.of(obj), set_phase("Pending")
        )
        assert written is not None
        assert written[1] == {"phase": "Pending"}
        # One PATCH, no GET: the copy was current.
        assert counter_total(API_REQUESTS) - before == 1
        # The answer is remembered: the next write starts from it, though the caller's
        # (watched) copy is now older, and an unchanged status sends nothing at all.
        before = counter_total(API_REQUESTS)
        assert (
            await ctx.statuses.update(ctx, namespace, "a", Snapshot.of(obj), set_phase("Pending"))
            is None
        )
        assert counter_total(API_REQUESTS) == before
        assert await ctx.statuses.update(
            ctx, namespace, "a", Snapshot.of(obj), set_phase("Serving")
        )
        assert counter_total(API_REQUESTS) - before == 1

    asyncio.run(run())
    assert cluster.get("InferenceEndpoint", namespace, "a")["status"]["phase"] == "Serving"


def test_a_stale_copy_costs_a_conflict_and_a_read_never_another_writers_update(
    cluster, namespace
) -> None:
    obj = cluster.apply(endpoint(namespace, "b"))
    stale = Snapshot.of(obj)
    # Another writer (another loop, kopf, a person) writes after our copy was taken.
    path = kube.resource_path("frugal.dev/v1alpha1", "InferenceEndpoint", namespace, "b")
    kube.request(
        cluster.api,
        "PATCH",
        f"{path}/status",
        body={
            "status": {
                "conditions": [
                    {
                        "type": "Other",
                        "status": "True",
                        "reason": "R",
                        "message": "m",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ]
            }
        },
        content_type="application/merge-patch+json",
    )
    ctx = Context(settings=Settings(), api=cluster.api)
    seen: list[Snapshot] = []

    def add_condition(current: Snapshot) -> dict[str, Any]:
        seen.append(current)
        mine = {
            "type": "Mine",
            "status": "True",
            "reason": "R",
            "message": "m",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
        return {"conditions": [*current.status.get("conditions", []), mine]}

    written = asyncio.run(ctx.statuses.update(ctx, namespace, "b", stale, add_condition))
    assert written is not None
    # Computed twice: on the stale copy (refused with 409), then on a fresh read.
    assert len(seen) == 2
    assert seen[0].resource_version == stale.resource_version
    assert seen[1].resource_version != stale.resource_version
    types = [
        c["type"] for c in cluster.get("InferenceEndpoint", namespace, "b")["status"]["conditions"]
    ]
    assert types == ["Other", "Mine"]


def test_a_deleted_endpoint_is_not_written_nor_remembered(cluster, namespace) -> None:
    obj = cluster.apply(endpoint(namespace, "c"))
    cluster.delete("InferenceEndpoint", namespace, "c")
    ctx = Context(settings=Settings(), api=cluster.api)
    written = asyncio.run(
        ctx.statuses.update(ctx, namespace, "c", Snapshot.of(obj), set_phase("Pending"))
    )
    assert written is None
    assert ctx.statuses.latest(f"{namespace}/c", None) is None


def test_newer_prefers_the_higher_revision_and_the_watch_when_unsure() -> None:
    def snap(rv: str) -> Snapshot:
        return Snapshot("n", "ns", "u", rv, 1, {"rv": rv})

    assert newer(snap("10"), snap("9")).resource_version == "10"
    assert newer(snap("9"), snap("10")).resource_version == "10"
    assert newer(None, snap("3")).resource_version == "3"
    assert newer(snap("3"), None).resource_version == "3"
    # Not numbers (another storage): the second (the watched copy) wins; a 409 corrects it.
    assert newer(snap("a"), snap("b")).resource_version == "b"
    assert StatusWriter().latest("ns/n", snap("7")).resource_version == "7"
