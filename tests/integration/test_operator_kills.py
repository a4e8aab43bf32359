"""Fault test: the operator is SIGKILLed at random points of a rollout and restarted each time.

Endpoints are applied (and, after the first kill, some edited and some deleted) while the
operator process is killed at seeded random moments after it took the Lease; a new process is
started after each kill, as a Deployment would. At the end every endpoint must have exactly the
children ``frugal render`` computes for the final set (no missing, no extra, no duplicate),
every child exactly one controller reference to a live endpoint (no orphan) and every endpoint
a status for its current generation.

The short run (30 endpoints, two kills, 6 s leases) is in `make test`; the 200-endpoint,
five-kill run with the default lease timings (a restarted operator waits 15 s for the Lease of
the one killed) is `make chaos`. The seed is
printed; FRUGAL_KILL_SEED reproduces a run's kill points.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from frugal import kube
from frugal.controller.children import CHILD_KINDS
from frugal.render.fleet import render_files
from frugal.render.labels import ENDPOINT_LABEL
from frugal.settings import Settings
from support.process import OperatorProcess
from support.wait import wait_for

pytestmark = pytest.mark.cluster

SHORT_LEASE = ["--lease-duration", "6", "--renew-deadline", "4", "--retry-period", "1"]
"""For the short run: a killed leader's Lease expires in 6 s instead of 15 s. (A 2 s renew
deadline was too short for this busy test machine: a leader gave up when the API server
answered slowly, which is what it must do, but not what this test is about.)"""
PREFERENCES = (["on-demand"], ["spot", "on-demand"], ["spot"])
SETTINGS = {"reconcileIntervalSeconds": 10}


def endpoint(namespace: str, i: int, preference: list[str] | None = None) -> dict[str, Any]:
    name = f"ep-{i:03d}"
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"uri": "hf://org/m", "servedName": name, "parameters": 1e9 * (1 + i % 4)},
            "capacity": {"preference": preference or PREFERENCES[i % len(PREFERENCES)]},
        },
    }


@dataclass
class Rollout:
    """What the cluster should end up holding: the endpoints as last applied, minus deletions."""

    namespace: str
    wanted: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def apply(self, cluster, obj: dict[str, Any]) -> None:
        cluster.apply(obj)
        with self.lock:
            self.wanted[obj["metadata"]["name"]] = obj

    def delete(self, cluster, name: str) -> None:
        cluster.delete("InferenceEndpoint", self.namespace, name)
        with self.lock:
            self.wanted.pop(name, None)

    def expected_children(self, tmp: Path) -> dict[str, set[str]]:
        """endpoint name → {Kind/name} as `frugal render` places the final set of endpoints."""
        path = tmp / "final.yaml"
        with self.lock:
            path.write_text(yaml.safe_dump_all(list(self.wanted.values())))
        docs, problems = render_files([path], Settings(**SETTINGS), self.namespace)
        assert not problems, problems
        out: dict[str, set[str]] = {name: set() for name in self.wanted}
        for doc in docs:
            owner = doc["metadata"]["labels"][ENDPOINT_LABEL]
            out[owner].add(f"{doc['kind']}/{doc['metadata']['name']}")
        return out


def problems(cluster, rollout: Rollout, expected: dict[str, set[str]]) -> list[str]:
    """Everything that is not yet (or never will be) as expected; empty: converged."""
    ns = rollout.namespace
    path = kube.resource_path("frugal.dev/v1alpha1", "InferenceEndpoint", ns)
    live = {e["metadata"]["name"]: e for e in kube.request(cluster.api, "GET", path)["items"]}
    found: list[str] = []
    if set(live) != set(expected):
        found.append(f"endpoints {sorted(set(live) ^ set(expected))} differ from the rollout")
    for name, ep in live.items():
        status = ep.get("status") or {}
        if status.get("observedGeneration") != ep["metadata"]["generation"]:
            found.append(f"{name}: status is not for generation {ep['metadata']['generation']}")
    uids = {e["metadata"]["uid"]: name for name, e in live.items()}
    children: dict[str, set[str]] = {name: set() for name in live}
    for api_version, kind in CHILD_KINDS:
        items = kube.request(cluster.api, "GET", kube.resource_path(api_version, kind, ns))
        for child in items["items"]:
            key = f"{kind}/{child['metadata']['name']}"
            controllers = [
                r for r in child["metadata"].get("ownerReferences") or [] if r.get("controller")
            ]
            if len(controllers) != 1:
                found.append(f"{key}: {len(controllers)} controller references")
                continue
            owner = uids.get(controllers[0]["uid"])
            if owner is None:
                found.append(f"{key}: orphaned (its endpoint is gone)")
                continue
            children[owner].add(key)
    for name, have in children.items():
        want = expected.get(name, set())
        if have - want:
            found.append(f"{name}: extra or duplicate children {sorted(have - want)}")
        if want - have:
            found.append(f"{name}: missing children {sorted(want - have)}")
    return found


def wait_converged(cluster, rollout: Rollout, tmp_path: Path) -> dict[str, set[str]]:
    """Wait until nothing is amiss (else fail listing what still is); the expected children."""
    expected = rollout.expected_children(tmp_path)
    last: list[list[str]] = [[]]

    def converged() -> bool:
        last[0] = problems(cluster, rollout, expected)
        return not last[0]

    try:
        wait_for(converged, timeout=600, what="convergence after the kills")
    except AssertionError:
        raise AssertionError("\n".join(last[0][:30])) from None
    return expected


def progress(cluster, namespace: str) -> str:
    path = kube.resource_path("frugal.dev/v1alpha1", "InferenceEndpoint", namespace)
    items = kube.request(cluster.api, "GET", path)["items"]
    done = sum(
        (e.get("status") or {}).get("observedGeneration") == e["metadata"]["generation"]
        for e in items
    )
    deps = kube.request(cluster.api, "GET", kube.resource_path("apps/v1", "Deployment", namespace))
    return f"{done}/{len(items)} endpoints with a current status, {len(deps['items'])} Deployments"


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def edit(cluster, rollout: Rollout, k: int, endpoints: int) -> None:
    """While no operator runs: flip the spot preference of every 5th endpoint (a child is added
    or deleted) and delete every 20th, a different slice after each kill."""
    for i in range(k % 5, endpoints, 5):
        name = f"ep-{i:03d}"
        with rollout.lock:
            obj = rollout.wanted.get(name)
        if obj is None:
            continue
        spot = "spot" in obj["spec"]["capacity"]["preference"]
        rollout.apply(
            cluster,
            endpoint(rollout.namespace, i, ["on-demand"] if spot else ["spot", "on-demand"]),
        )
    for i in range((3 + k) % 20, endpoints, 20):
        rollout.delete(cluster, f"ep-{i:03d}")


def kill_during_rollout(
    cluster,
    namespace: str,
    tmp_path: Path,
    *,
    endpoints: int,
    kills: int,
    max_delay: float,
    lease: list[str],
) -> None:
    seed = int(os.environ.get("FRUGAL_KILL_SEED") or random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    print(f"\nkill test: {endpoints} endpoints, {kills} kills, seed {seed}")
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump(SETTINGS))
    rollout = Rollout(namespace)

    def operator(n: int) -> OperatorProcess:
        return OperatorProcess(
            cluster.kubeconfig, [namespace], settings, tmp_path / f"op{n}.log", lease
        ).start()

    applier = threading.Thread(
        target=lambda: [rollout.apply(cluster, endpoint(namespace, i)) for i in range(endpoints)],
        daemon=True,
    )
    started = time.monotonic()
    op = operator(0)
    applier.start()
    killed_at: float | None = None

    def take_over(k: int) -> None:
        """Wait for operator ``k`` to lead and write; say how long that took after the kill."""
        wait_for(lambda: op.role() == "leader", timeout=180, what=f"operator {k} leads")
        led = time.monotonic()
        try:
            wait_for(lambda: op.writes() > 0, timeout=30, what="writes")
        except AssertionError:
            print(f"  operator {k} had nothing to write")
        if killed_at is not None:
            print(
                f"  operator {k} led {led - killed_at:.1f} s after the kill, "
                f"wrote {time.monotonic() - killed_at:.1f} s after it"
            )

    try:
        for k in range(kills):
            # A random moment once this operator has started writing: mid-reconcile.
            take_over(k)
            delay = rng.uniform(0, max_delay)
            time.sleep(delay)
            state = progress(cluster, namespace)
            status = op.signal(signal.SIGKILL)
            assert status == -signal.SIGKILL, f"the operator exited {status}:\n{tail(op.log)}"
            killed_at = time.monotonic()
            print(f"  kill {k + 1}: {delay:.1f} s after its first write; {state}")
            applier.join(timeout=300)
            edit(cluster, rollout, k, endpoints)
            op = operator(k + 1)
        take_over(kills)
        applier.join(timeout=300)
        expected = wait_converged(cluster, rollout, tmp_path)
        print(
            f"  converged {time.monotonic() - started:.0f} s after the first apply: "
            f"{len(expected)} endpoints, {sum(map(len, expected.values()))} children; "
            f"{progress(cluster, namespace)}"
        )
        assert op.role() == "leader"
        assert op.proc is not None
        assert op.proc.poll() is None, "the last operator died"
    finally:
        op.stop()


def test_operator_killed_twice_during_a_30_endpoint_rollout(cluster, namespace, tmp_path) -> None:
    kill_during_rollout(
        cluster, namespace, tmp_path, endpoints=30, kills=2, max_delay=1.5, lease=SHORT_LEASE
    )


@pytest.mark.chaos
def test_operator_killed_five_times_during_a_200_endpoint_rollout(
    cluster, namespace, tmp_path
) -> None:
    kill_during_rollout(cluster, namespace, tmp_path, endpoints=200, kills=5, max_delay=5, lease=[])
