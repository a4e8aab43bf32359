"""Fault test: the API server and etcd restart under load; the operator reconnects and converges."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from frugal import kube
from frugal.settings import Settings
from support.operator import running_operator
from support.wait import wait_for
from testbed import ControlPlane, bin_dir
from testbed.client import Cluster

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[tuple[ControlPlane, Cluster]]:
    """A control plane of this test's own: restarting the shared one would disturb others."""
    cp = ControlPlane(tmp_path / "plane")
    cp.up(crds=REPO / "crds")
    try:
        yield cp, Cluster(cp.kubeconfig, str(bin_dir("kubernetes") / "kubectl"))
    finally:
        cp.down()


def endpoint(name: str) -> dict:
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": name, "namespace": "load"},
        "spec": {
            "model": {"uri": "hf://org/m", "servedName": name, "parameters": 1e9},
            "capacity": {"preference": ["on-demand"]},
        },
    }


def deployed(cluster: Cluster, names: list[str]) -> bool:
    return all(
        kube.get(cluster.api, "apps/v1", "Deployment", "load", f"{n}-on-demand") for n in names
    )


def test_operator_survives_an_api_server_and_etcd_restart(plane) -> None:
    cp, cluster = plane
    cluster.ensure_namespace("load")
    settings = Settings(reconcile_interval_seconds=2)
    with running_operator(str(cp.kubeconfig), ["load"], settings) as runner:
        first = [f"before-{i}" for i in range(5)]
        for name in first:
            cluster.apply(endpoint(name))
        wait_for(lambda: deployed(cluster, first), what="first endpoints deployed")

        # Keep writing while the control plane goes down and comes back.
        stop = threading.Event()
        written: list[str] = []

        def load() -> None:
            i = 0
            while not stop.is_set():
                name = f"during-{i}"
                try:
                    cluster.apply(endpoint(name))
                    written.append(name)
                    i += 1
                except Exception:
                    stop.wait(0.2)

        writer = threading.Thread(target=load, daemon=True)
        writer.start()
        cp.restart("kube-apiserver", "etcd", down_for=3)
        wait_for(lambda: len(written) >= 10, what="writes after the restart")
        stop.set()
        writer.join(timeout=30)

        wait_for(
            lambda: deployed(cluster, first + written),
            timeout=180,
            what="every endpoint, old and new, reconciled after the restart",
        )
        for name in first + written:
            dep = kube.get(cluster.api, "apps/v1", "Deployment", "load", f"{name}-on-demand")
            assert len(dep["metadata"]["ownerReferences"]) == 1
    assert runner.exception is None
