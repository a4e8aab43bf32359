"""Two `frugal operator` processes and a Lease: exactly one acts; the other takes over.

The replicas run with short lease timings (8 s / 5 s / 1 s) to keep the test quick; the
protocol is the same as with the defaults (15 s / 10 s / 2 s).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import yaml
from kubernetes.client import ApiException

from frugal import kube
from frugal.controller.operator import LOST_EXIT_CODE
from support.process import OperatorProcess
from support.wait import wait_for

pytestmark = pytest.mark.cluster

TIMINGS = ["--lease-duration", "8", "--renew-deadline", "5", "--retry-period", "1"]


def endpoint(namespace: str, name: str) -> dict:
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"uri": "hf://org/m", "servedName": name, "parameters": 1e9},
            "capacity": {"preference": ["on-demand"]},
        },
    }


def deployed(cluster, namespace: str, name: str) -> bool:
    return (
        kube.get(cluster.api, "apps/v1", "Deployment", namespace, f"{name}-on-demand") is not None
    )


def lease(cluster, namespace: str) -> dict:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/frugal-operator"
    return kube.request(cluster.api, "GET", path)["spec"]


def intrude(cluster, namespace: str) -> bool:
    """Write another holder into the Lease; False when c renewed in between (409)."""
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/frugal-operator"
    current = kube.request(cluster.api, "GET", path)
    current["spec"] = {
        **current["spec"],
        "holderIdentity": "intruder",
        "leaseDurationSeconds": 3600,
    }
    try:
        kube.request(cluster.api, "PUT", path, body=current)
    except ApiException as err:
        if err.status == 409:
            return False
        raise
    return True


@pytest.fixture
def replicas(cluster, namespace, tmp_path: Path):
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"reconcileIntervalSeconds": 2}))
    started: list[OperatorProcess] = []

    def start(name: str) -> OperatorProcess:
        proc = OperatorProcess(
            cluster.kubeconfig, [namespace], settings, tmp_path / f"{name}.log", TIMINGS
        ).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def test_one_replica_acts_and_the_other_takes_over(cluster, namespace, replicas) -> None:
    a = replicas("a")
    wait_for(lambda: a.role() == "leader", what="a to lead")
    b = replicas("b")
    wait_for(lambda: b.role() == "standby", what="b to stand by")
    assert lease(cluster, namespace)["holderIdentity"] == a.health()["identity"]
    assert b.health()["holder"] == a.health()["identity"]

    cluster.apply(endpoint(namespace, "first"))
    wait_for(lambda: deployed(cluster, namespace, "first"), what="first reconciled")
    wait_for(lambda: a.writes() > 0, what="a's write counter")
    assert b.writes() == 0, "the standby wrote"
    assert "Handler" not in b.log.read_text(), "the standby ran kopf handlers"

    # SIGKILL: no goodbye, the standby notices the silence by itself.
    assert a.signal(signal.SIGKILL) == -signal.SIGKILL
    cluster.apply(endpoint(namespace, "second"))
    wait_for(lambda: b.role() == "leader", what="b to take over")
    wait_for(lambda: deployed(cluster, namespace, "second"), what="second reconciled by b")
    assert f"expired from {a.log.stem}_" in b.log.read_text()

    # SIGTERM: b stops its handlers and releases the Lease; c need not wait for expiry.
    c = replicas("c")
    wait_for(lambda: c.role() == "standby", what="c to stand by")
    assert b.signal(signal.SIGTERM) == 0
    wait_for(lambda: c.role() == "leader", what="c to take over")
    assert "(released)" in c.log.read_text(), "c waited for expiry instead of the release"
    cluster.apply(endpoint(namespace, "third"))
    wait_for(lambda: deployed(cluster, namespace, "third"), what="third reconciled by c")
    assert lease(cluster, namespace)["leaseTransitions"] == 2

    # Someone else writes the Lease: c must stop acting at once and exit non-zero.
    wait_for(lambda: intrude(cluster, namespace), what="the intruder's write")
    assert c.proc is not None
    assert c.proc.wait(timeout=120) == LOST_EXIT_CODE
    assert "leadership lost" in c.log.read_text()
