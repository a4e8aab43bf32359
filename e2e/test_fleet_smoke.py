"""Smoke tests of the simulated GPU fleet: the real scheduler placing pods on KWOK GPU nodes.

One fleet (the default Karpenter pools) serves the whole session; every test works in its own
namespace. Timing is never asserted: conditions are polled with a generous deadline.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import kubernetes
import pytest
from kubernetes.client import ApiException

from testbed import bin_dir
from testbed.client import Cluster
from testbed.fleet import (
    GPU_RESOURCE,
    INSTANCE_TYPES,
    POOL_LABEL,
    Fleet,
    NodePool,
    karpenter_pools,
)

pytestmark = pytest.mark.fleet

T = TypeVar("T")
DEADLINE = 120.0
CAPACITY_TYPE = "karpenter.sh/capacity-type"
GPU_NAME = "karpenter.k8s.aws/instance-gpu-name"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
POOLS = karpenter_pools()


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("fleet"))
    fleet.up(POOLS)
    try:
        yield fleet
    finally:
        fleet.down()


@pytest.fixture(scope="session")
def cluster(fleet: Fleet) -> Cluster:
    return Cluster(fleet.kubeconfig, kubectl_path=str(bin_dir("kubernetes") / "kubectl"))


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace with its default ServiceAccount (admission refuses pods without it)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.ensure_namespace(name)
    wait_for(lambda: _get_service_account(cluster, name), f"default ServiceAccount in {name}")
    yield name
    cluster.core.delete_namespace(name)


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def _get_service_account(cluster: Cluster, namespace: str) -> bool:
    try:
        cluster.core.read_namespaced_service_account("default", namespace)
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def gpu_deployment(name: str, namespace: str, replicas: int, **pod_spec: Any) -> dict[str, Any]:
    """A Deployment of fake vLLM pods that each want one GPU and tolerate the GPU taint."""
    container = {
        "name": "vllm",
        "image": "vllm/vllm-openai:latest",  # never pulled: kwok runs nothing
        "resources": {"requests": {"cpu": "1"}, "limits": {GPU_RESOURCE: "1"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"tolerations": [GPU_TOLERATION], "containers": [container], **pod_spec},
            },
        },
    }


def create_deployment(cluster: Cluster, manifest: dict[str, Any]) -> None:
    apps = kubernetes.client.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(manifest["metadata"]["namespace"], manifest)


def live_pods(cluster: Cluster, namespace: str, app: str) -> list[Any]:
    """The Deployment's pods that are not being deleted."""
    pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def is_running_and_ready(pod: Any) -> bool:
    conditions = pod.status.conditions or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    return pod.status.phase == "Running" and ready


def node_labels(cluster: Cluster) -> dict[str, dict[str, str]]:
    return {n.metadata.name: n.metadata.labels for n in cluster.core.list_node().items}


def all_running_on(
    cluster: Cluster, namespace: str, app: str, replicas: int, labels: dict[str, str]
) -> Callable[[], list[Any] | None]:
    """A probe: the app's live pods, once there are ``replicas`` of them, all Running and Ready
    on nodes that carry ``labels``."""

    def probe() -> list[Any] | None:
        pods = live_pods(cluster, namespace, app)
        nodes = node_labels(cluster)
        if len(pods) == replicas and all(
            is_running_and_ready(p) and labels.items() <= nodes.get(p.spec.node_name, {}).items()
            for p in pods
        ):
            return pods
        return None

    return probe


def test_nodes_are_ready_with_karpenter_labels_taints_and_gpus(cluster: Cluster) -> None:
    nodes = cluster.core.list_node(label_selector=POOL_LABEL).items
    assert len(nodes) == sum(p.count for p in POOLS)
    by_shape: dict[tuple[str, str], NodePool] = {(p.name, p.gpu_type): p for p in POOLS}
    seen: dict[tuple[str, str], int] = {}
    for node in nodes:
        labels = node.metadata.labels
        pool = by_shape[(labels[POOL_LABEL], labels["frugal.dev/gpu-type"])]
        seen[(pool.name, pool.gpu_type)] = seen.get((pool.name, pool.gpu_type), 0) + 1
        assert pool.labels.items() <= labels.items(), node.metadata.name
        assert labels[CAPACITY_TYPE] == pool.capacity_type
        assert labels["karpenter.sh/nodepool"] == pool.name
        assert labels["nvidia.com/gpu.present"] == "true"
        shape = INSTANCE_TYPES[labels["node.kubernetes.io/instance-type"]]
        assert (shape.gpu_name, shape.gpus) == (labels[GPU_NAME], pool.gpus_per_node)
        assert node.status.capacity["cpu"] == str(shape.cpus)
        assert node.status.capacity["memory"] == shape.memory
        taints = {(t.key, t.value, t.effect) for t in node.spec.taints or []}
        assert (GPU_RESOURCE, "true", "NoSchedule") in taints
        assert node.status.capacity[GPU_RESOURCE] == str(pool.gpus_per_node)
        assert node.status.allocatable[GPU_RESOURCE] == str(pool.gpus_per_node)
        assert node.status.allocatable["pods"] == "110"
        ready = {c.type: c.status for c in node.status.conditions}.get("Ready")
        assert ready == "True", node.metadata.name
    assert seen == {shape: pool.count for shape, pool in by_shape.items()}


def test_spot_l4_deployment_is_scheduled_onto_spot_l4_nodes(
    cluster: Cluster, namespace: str
) -> None:
    selector = {CAPACITY_TYPE: "spot", GPU_NAME: "l4"}
    create_deployment(cluster, gpu_deployment("chat", namespace, 3, nodeSelector=selector))

    pods = wait_for(
        all_running_on(cluster, namespace, "chat", 3, selector),
        "3 chat pods Running and Ready on spot l4 nodes",
    )
    assert all(p.spec.scheduler_name == "default-scheduler" for p in pods)
    # One GPU per node and per pod: the scheduler had to spread them.
    assert len({p.spec.node_name for p in pods}) == 3


def test_reclaimed_spot_pods_are_recreated_on_on_demand(
    fleet: Fleet, cluster: Cluster, namespace: str
) -> None:
    spot_or_on_demand = {"key": CAPACITY_TYPE, "operator": "In", "values": ["spot", "on-demand"]}
    spot = {"key": CAPACITY_TYPE, "operator": "In", "values": ["spot"]}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [spot_or_on_demand]}]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "preference": {"matchExpressions": [spot]}}
            ],
        }
    }
    manifest = gpu_deployment(
        "summarize", namespace, 2, nodeSelector={GPU_NAME: "l40s"}, affinity=affinity
    )
    create_deployment(cluster, manifest)
    before = wait_for(
        all_running_on(cluster, namespace, "summarize", 2, {CAPACITY_TYPE: "spot"}),
        "2 summarize pods Running and Ready on spot l40s nodes",
    )

    try:
        reclaimed = fleet.delete_pool("spot")
        assert {p.spec.node_name for p in before} <= set(reclaimed)
        after = wait_for(
            all_running_on(cluster, namespace, "summarize", 2, {CAPACITY_TYPE: "on-demand"}),
            "2 summarize pods Running and Ready on on-demand l40s nodes",
        )
        assert {p.metadata.name for p in after}.isdisjoint(p.metadata.name for p in before)
        assert not cluster.core.list_node(label_selector=f"{POOL_LABEL}=spot").items
    finally:
        for pool in POOLS:
            if pool.name == "spot":
                fleet.add_nodes(pool)


def test_pod_wanting_more_gpus_than_any_node_stays_pending(
    cluster: Cluster, namespace: str
) -> None:
    too_many = str(max(p.gpus_per_node for p in POOLS) + 1)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "giant", "namespace": namespace},
        "spec": {
            "tolerations": [GPU_TOLERATION],
            "containers": [
                {"name": "vllm", "image": "vllm", "resources": {"limits": {GPU_RESOURCE: too_many}}}
            ],
        },
    }
    cluster.core.create_namespaced_pod(namespace, pod)

    def failed_scheduling() -> Any:
        events = cluster.core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=giant,reason=FailedScheduling"
        ).items
        return events[0] if events else None

    def unschedulable() -> Any:
        # The scheduler records the event before it writes the pod's condition.
        status = cluster.core.read_namespaced_pod("giant", namespace).status
        scheduled = {c.type: c for c in status.conditions or []}.get("PodScheduled")
        return status if scheduled and scheduled.status == "False" else None

    event = wait_for(failed_scheduling, "a FailedScheduling event for the giant pod")
    assert f"Insufficient {GPU_RESOURCE}" in event.message
    status = wait_for(unschedulable, "the giant pod's PodScheduled condition to turn False")
    assert status.phase == "Pending"
    assert {c.type: c.reason for c in status.conditions}["PodScheduled"] == "Unschedulable"
