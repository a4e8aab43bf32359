"""End to end on a simulated GPU fleet: the real scheduler puts pods where frugal's plan says.

Runs on a KWOK fleet started here (kube-apiserver, etcd, controller-manager, scheduler, kwok,
fake GPU nodes labelled like Karpenter's), or on any cluster whose kubeconfig is in
FRUGAL_E2E_KUBECONFIG (e.g. kind, with nodes labelled the same way — see docs/fleet.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from frugal import kube
from frugal.api.endpoint import InferenceEndpointSpec
from frugal.placement.plan import EndpointWish, plan_fleet
from frugal.render.endpoint import Owner, render_endpoint
from frugal.render.scheduler import gpu_bin_packing_profile, scheduler_configuration
from frugal.settings import Settings
from support.operator import running_operator
from support.wait import wait_for
from testbed.client import Cluster
from testbed.controlplane import bin_dir
from testbed.fleet import ExternalFleet, Fleet, fleet_for, karpenter_pool, karpenter_pools

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


# --- GPU-count-aware placement --------------------------------------------------------------
#
# A fixed fleet with, per GPU type, two one-GPU and two four-GPU nodes. Several one-GPU replicas
# come first, then a replica sharded over four GPUs: it is only scheduled if the one-GPU replicas
# left a four-GPU node whole. Each scenario has a GPU type of its own, so the scenarios share
# the fleet without sharing nodes. kube-scheduler runs two profiles: ``default-scheduler`` is
# frugal's recommended GPU bin-packing profile, ``stock-scheduler`` the unmodified defaults
# (what a managed control plane runs); a scenario picks one through the pods' schedulerName.

STOCK_SCHEDULER = "stock-scheduler"
GPU_COUNT = "karpenter.k8s.aws/instance-gpu-count"
SHAPES = {  # GPU type: (one-GPU shape, four-GPU shape)
    "l4": ("g6.2xlarge", "g6.12xlarge"),
    "l40s": ("g6e.2xlarge", "g6e.12xlarge"),
    "a10g": ("g5.2xlarge", "g5.12xlarge"),
    "t4": ("g4dn.xlarge", "g4dn.12xlarge"),
}
PACKING_SETTINGS = Settings.model_validate(
    {
        "profile": "karpenter",
        "reconcileIntervalSeconds": 1,
        "engine": {"cpuPerGpu": "4", "memoryPerGpu": "16Gi"},
    }
)


@pytest.fixture(scope="module")
def mixed_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    fleet = fleet_for(tmp_path_factory.mktemp("mixed-fleet"))
    if isinstance(fleet, ExternalFleet):
        pytest.skip("needs a kube-scheduler configured by the test (local KWOK fleet)")
    pools = [
        karpenter_pool("on-demand", "on-demand", shape, 2)
        for small, large in SHAPES.values()
        for shape in (small, large)
    ]
    config = scheduler_configuration(
        gpu_bin_packing_profile("default-scheduler"), {"schedulerName": STOCK_SCHEDULER}
    )
    fleet.up(pools, scheduler_config=config)
    try:
        yield Cluster(Path(fleet.kubeconfig), str(bin_dir("kubernetes") / "kubectl"))
    finally:
        fleet.down()


def tier(namespace: str, name: str, gpu: str, gpus: int, replicas: int) -> dict:
    """An on-demand InferenceEndpoint: a 4B model on one GPU, or a 70B one on four."""
    params = 4e9 if gpus == 1 else 70e9
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"uri": f"hf://org/{name}", "servedName": name, "parameters": params},
            "engine": {"quantization": "awq", "maxModelLen": 8192},
            "resources": {"gpu": {"type": gpu, "count": gpus}},
            "scaling": {"minReplicas": replicas, "maxReplicas": replicas},
            "capacity": {"preference": ["on-demand"]},
        },
    }


def rendered_deployment(obj: dict, *, gpu_count_affinity: bool, scheduler: str) -> dict:
    """The Deployment frugal renders for ``obj``, applied here without the operator.

    ``gpu_count_affinity=False`` is the rendering before GPU-count-aware placement.
    """
    spec = InferenceEndpointSpec.model_validate(obj["spec"])
    meta = obj["metadata"]
    key = f"{meta['namespace']}/{meta['name']}"
    plan = plan_fleet([EndpointWish(key, spec, spec.scaling.min_replicas)], PACKING_SETTINGS)[key]
    owner = Owner(meta["name"], meta["namespace"], uid="none")
    (deployment,) = [
        c for c in render_endpoint(owner, spec, plan, PACKING_SETTINGS) if c["kind"] == "Deployment"
    ]
    # No InferenceEndpoint owns it: the garbage collector would delete an orphan's children.
    del deployment["metadata"]["ownerReferences"]
    pod = deployment["spec"]["template"]["spec"]
    if not gpu_count_affinity:
        del pod["affinity"]
    pod["schedulerName"] = scheduler
    return deployment


def engine_pods(cluster: Cluster, namespace: str, name: str) -> list[dict]:
    return kube.request(
        cluster.api,
        "GET",
        f"/api/v1/namespaces/{namespace}/pods",
        query=[("labelSelector", f"frugal.dev/endpoint={name}")],
    )["items"]


def gpus_of_nodes(cluster: Cluster) -> dict[str, int]:
    nodes = kube.request(cluster.api, "GET", "/api/v1/nodes")["items"]
    return {n["metadata"]["name"]: int(n["metadata"]["labels"][GPU_COUNT]) for n in nodes}


def running_on(cluster: Cluster, namespace: str, name: str, replicas: int) -> list[str] | None:
    """The nodes of the endpoint's pods once all ``replicas`` run and are Ready, else None."""
    pods = engine_pods(cluster, namespace, name)
    ready = [
        p["spec"]["nodeName"]
        for p in pods
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p.get("status", {}).get("conditions", [])
        )
    ]
    return ready if len(ready) == replicas == len(pods) else None


def unschedulable(cluster: Cluster, namespace: str, name: str) -> str | None:
    """The scheduler's message once the endpoint's pod is marked Unschedulable."""
    for pod in engine_pods(cluster, namespace, name):
        for c in pod.get("status", {}).get("conditions", []):
            if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable":
                return c.get("message", "")
    return None


def gpus_used(cluster: Cluster, placements: list[list[str]]) -> dict[str, int]:
    """GPU-count class of the nodes the one-GPU replicas landed on: {"1-GPU": n, "4-GPU": m}."""
    sizes = gpus_of_nodes(cluster)
    out: Counter = Counter()
    for nodes in placements:
        out.update(f"{sizes[n]}-GPU" for n in nodes)
    return dict(out)


def place_one_gpu_tiers(
    cluster: Cluster, namespace: str, gpu: str, replicas: dict[str, int], **render: Any
) -> list[list[str]]:
    cluster.ensure_namespace(namespace)
    for name, n in replicas.items():
        cluster.apply(rendered_deployment(tier(namespace, name, gpu, 1, n), **render))
    return [
        wait_for(lambda n=n, name=name: running_on(cluster, namespace, name, n), what=f"{name} up")
        for name, n in replicas.items()
    ]


def test_stock_scheduler_fragments_four_gpu_nodes_without_gpu_count_affinity(mixed_fleet) -> None:
    """The demo's failure, reproduced: the rendering before GPU-count-aware placement."""
    cluster, ns = mixed_fleet, "fragmented"
    render = {"gpu_count_affinity": False, "scheduler": STOCK_SCHEDULER}
    placed = place_one_gpu_tiers(cluster, ns, "l4", {"small": 2, "medium": 1}, **render)
    # Most free CPU and memory, then spreading: the stock scheduler prefers the big nodes.
    assert gpus_used(cluster, placed) == {"4-GPU": 3}
    assert len({n for nodes in placed for n in nodes}) >= 2, "both four-GPU nodes broken up"
    cluster.apply(rendered_deployment(tier(ns, "large", "l4", 4, 1), **render))
    message = wait_for(lambda: unschedulable(cluster, ns, "large"), what="large Unschedulable")
    assert "Insufficient nvidia.com/gpu" in message


def test_gpu_count_affinity_keeps_a_four_gpu_node_whole_on_the_stock_scheduler(
    mixed_fleet,
) -> None:
    cluster, ns = mixed_fleet, "affinity"
    render = {"gpu_count_affinity": True, "scheduler": STOCK_SCHEDULER}
    placed = place_one_gpu_tiers(cluster, ns, "l40s", {"small": 2, "medium": 1}, **render)
    # Both one-GPU nodes are used before a four-GPU node is touched.
    assert gpus_used(cluster, placed) == {"1-GPU": 2, "4-GPU": 1}
    cluster.apply(rendered_deployment(tier(ns, "large", "l40s", 4, 1), **render))
    (node,) = wait_for(lambda: running_on(cluster, ns, "large", 1), what="large Running")
    assert gpus_of_nodes(cluster)[node] == 4


def test_stock_scheduler_spreads_the_overflow_over_four_gpu_nodes(mixed_fleet) -> None:
    """Affinity alone cannot pack: once the one-GPU nodes are full, the rest is spread."""
    cluster, ns = mixed_fleet, "overflow-stock"
    render = {"gpu_count_affinity": True, "scheduler": STOCK_SCHEDULER}
    placed = place_one_gpu_tiers(cluster, ns, "t4", {"small": 3, "medium": 2}, **render)
    assert gpus_used(cluster, placed) == {"1-GPU": 2, "4-GPU": 3}
    cluster.apply(rendered_deployment(tier(ns, "large", "t4", 4, 1), **render))
    wait_for(lambda: unschedulable(cluster, ns, "large"), what="large Unschedulable")


def test_bin_packing_profile_packs_the_overflow_and_the_operator_places_all_tiers(
    mixed_fleet,
) -> None:
    """The recommended setup, end to end: the operator renders, the bin-packing profile packs."""
    cluster, ns = mixed_fleet, "overflow-packed"
    cluster.ensure_namespace(ns)
    small = {"small": 3, "medium": 2}
    with running_operator(str(cluster.kubeconfig), [ns], PACKING_SETTINGS):
        for name, n in small.items():
            cluster.apply(tier(ns, name, "a10g", 1, n))
        placed = [
            wait_for(lambda n=n, name=name: running_on(cluster, ns, name, n), what=f"{name} up")
            for name, n in small.items()
        ]
        assert gpus_used(cluster, placed) == {"1-GPU": 2, "4-GPU": 3}
        packed = {n for nodes in placed for n in nodes if gpus_of_nodes(cluster)[n] == 4}
        assert len(packed) == 1, "the overflow shares one four-GPU node"
        cluster.apply(tier(ns, "large", "a10g", 4, 1))
        (node,) = wait_for(lambda: running_on(cluster, ns, "large", 1), what="large Running")
        assert gpus_of_nodes(cluster)[node] == 4
        assert node not in packed
