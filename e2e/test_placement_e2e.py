"""End to end on a simulated GPU fleet: the real scheduler puts pods where frugal's plan says.

Runs on a KWOK fleet started here (kube-apiserver, etcd, controller-manager, scheduler, kwok,
fake GPU nodes labelled like Karpenter's), or on any cluster whose kubeconfig is in
FRUGAL_E2E_KUBECONFIG (e.g. kind, with nodes labelled the same way — see docs/fleet.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from frugal import kube
from frugal.settings import Settings
from support.operator import running_operator
from support.wait import wait_for
from testbed.client import Cluster
from testbed.controlplane import bin_dir
from testbed.fleet import Fleet, fleet_for, karpenter_pools

pytestmark = pytest.mark.fleet

RESERVATION = "support-l4"
SETTINGS = Settings.model_validate(
    {
        "profile": "karpenter",
        "reconcileIntervalSeconds": 1,
        "reservations": [{"name": RESERVATION, "gpuType": "l4", "gpus": 2}],
        "engine": {"cpuPerGpu": "4", "memoryPerGpu": "16Gi"},
        "loops": {"scaleIntervalSeconds": 1, "spotUnschedulableGraceSeconds": 2},
    }
)


@pytest.fixture(scope="module")
def fleet_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Fleet]]:
    fleet = fleet_for(tmp_path_factory.mktemp("fleet"))
    fleet.up(
        karpenter_pools(
            reserved_pool=RESERVATION, instance_types={"l4": "g6.2xlarge", "l40s": "g6e.2xlarge"}
        )
    )
    try:
        yield Cluster(Path(fleet.kubeconfig), str(bin_dir("kubernetes") / "kubectl")), fleet
    finally:
        fleet.down()


def endpoint(namespace: str, name: str, replicas: int, capacity: dict) -> dict:
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"uri": "hf://Qwen/Qwen3-4B-AWQ", "servedName": name, "parameters": 4e9},
            "engine": {"quantization": "awq", "maxModelLen": 8192},
            "resources": {"gpu": {"type": "l4", "count": 1}},
            "scaling": {"minReplicas": replicas, "maxReplicas": replicas},
            "capacity": capacity,
            "costAllocation": {"team": "support"},
        },
    }


def placement(cluster: Cluster, namespace: str, name: str) -> Counter:
    """Running+Ready pods of an endpoint by the capacity type of the node they run on."""
    nodes = {
        n["metadata"]["name"]: n["metadata"]["labels"]
        for n in kube.request(cluster.api, "GET", "/api/v1/nodes")["items"]
    }
    pods = kube.request(
        cluster.api,
        "GET",
        f"/api/v1/namespaces/{namespace}/pods",
        query=[("labelSelector", f"frugal.dev/endpoint={name}")],
    )["items"]
    out: Counter = Counter()
    for pod in pods:
        ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod.get("status", {}).get("conditions", [])
        )
        node = pod["spec"].get("nodeName")
        if ready and node in nodes and not pod["metadata"].get("deletionTimestamp"):
            labels = nodes[node]
            ctype = labels["karpenter.sh/capacity-type"]
            # The pod's own Deployment must match the node it landed on.
            assert pod["metadata"]["labels"]["frugal.dev/capacity-type"] == ctype
            if ctype == "reserved":
                assert labels["karpenter.sh/nodepool"] == RESERVATION
            out[ctype] += 1
    return out


def status(cluster: Cluster, namespace: str, name: str) -> dict:
    return cluster.get("InferenceEndpoint", namespace, name).get("status", {})


def test_pods_land_on_the_planned_capacity_and_survive_spot_reclamation(fleet_cluster) -> None:
    cluster, fleet = fleet_cluster
    namespace = "support"
    cluster.ensure_namespace(namespace)
    with running_operator(str(cluster.kubeconfig), [namespace], SETTINGS):
        cluster.apply(
            endpoint(
                namespace,
                "small",
                4,
                {
                    "preference": ["reserved", "spot", "on-demand"],
                    "reservation": RESERVATION,
                    "spot": {"maxShare": 0.5},
                    "onDemandFloor": 1,
                },
            )
        )
        cluster.apply(
            endpoint(
                namespace,
                "other",
                2,
                {"preference": ["reserved", "on-demand"], "reservation": RESERVATION},
            )
        )

        # Reservations fill first (the steadier endpoint gets the pool), spot up to its share,
        # the floor on on-demand; the scheduler agrees.
        wait_for(
            lambda: (
                placement(cluster, namespace, "small")
                == Counter({"reserved": 2, "spot": 1, "on-demand": 1})
            ),
            timeout=120,
            what="small placed 2 reserved / 1 spot / 1 on-demand",
        )
        wait_for(
            lambda: placement(cluster, namespace, "other") == Counter({"on-demand": 2}),
            what="other on on-demand: the reservation is full",
        )
        small = wait_for(
            lambda: (s := status(cluster, namespace, "small")).get("phase") == "Serving" and s,
            what="small Serving",
        )
        assert small["replicas"] == {
            "desired": 4,
            "ready": 4,
            "reserved": 2,
            "spot": 1,
            "onDemand": 1,
            "summary": "4/4",
        }
        other = status(cluster, namespace, "other")
        placed = next(c for c in other["conditions"] if c["type"] == "Placed")
        assert placed["reason"] == "ReservationFull"

        # Spot is reclaimed: the floor keeps serving, the spot replica moves to on-demand.
        fleet.delete_pool("spot")
        wait_for(
            lambda: (
                placement(cluster, namespace, "small") == Counter({"reserved": 2, "on-demand": 2})
            ),
            timeout=120,
            what="spot replica back on on-demand",
        )
        st = wait_for(
            lambda: (s := status(cluster, namespace, "small")).get("phase") == "Serving" and s,
            what="Serving again",
        )
        assert st["spot"]["shareLimit"] == 0.0
        assert st["spot"]["lastAction"] == "LowerSpotShare"
        assert st["replicas"]["onDemand"] == 2
