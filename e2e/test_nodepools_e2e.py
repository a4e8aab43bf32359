"""End to end: the operator, running in-process, provisions Karpenter node pools as endpoints
come and go, and releases an engine pod's node once the model has loaded.

A real kube-apiserver, etcd and controller-manager (the testbed) with frugal's CRDs and
Karpenter's own CRDs (fetched from its Go modules at the pinned release). No Karpenter
controller runs: NodePools and EC2NodeClasses are validated and stored, never acted on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner

from frugal import kube
from frugal.controller import nodepools
from frugal.controller.metrics import WRITES
from frugal.controller.nodepools import SYNCS
from frugal.controller.operator import build_registry
from frugal.render.nodepools import (
    DO_NOT_DISRUPT,
    LOADING_ANNOTATION,
    MANAGED_SELECTOR,
    NodePoolSettings,
)
from frugal.settings import Settings
from support.operator import running_operator
from support.wait import wait_for
from testbed import ControlPlane, bin_dir, karpenter
from testbed.client import Cluster

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parent.parent
POOLS = NodePoolSettings(
    manage=True,
    prefix="e2e",
    node_class={"clusterName": "frugal-e2e"},
    labels={"frugal.dev/test": "nodepools-e2e"},
)
BASE = {
    "profile": "karpenter",
    "reconcileIntervalSeconds": 1,
    "reservations": [
        {
            "name": "e2e-support-l4",
            "gpuType": "l4",
            "gpus": 4,
            "capacityReservationIds": ["cr-0123456789abcdef0"],
        }
    ],
}
if "node_pools" in Settings.model_fields:  # once operator.py wires settings.nodePools
    BASE["nodePools"] = POOLS.model_dump(by_alias=True, exclude_defaults=True)
SETTINGS = Settings.model_validate(BASE)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    external = os.environ.get("FRUGAL_TEST_KUBECONFIG")
    if external:
        pytest.skip("starts its own testbed (it installs Karpenter's CRDs)")
    plane = ControlPlane(tmp_path_factory.mktemp("nodepools"))
    plane.up(crds=REPO / "crds")
    try:
        handle = Cluster(plane.kubeconfig, kubectl_path=str(bin_dir("kubernetes") / "kubectl"))
        karpenter.install_crds(handle)
        yield handle
    finally:
        plane.down()


@pytest.fixture
def operator(cluster: Cluster) -> Iterator[KopfRunner]:
    registry = build_registry(SETTINGS)
    nodepools.register(registry, SETTINGS, POOLS)  # a no-op once operator.py registers it
    with running_operator(str(cluster.kubeconfig), ["nodepools-e2e"], SETTINGS, registry) as r:
        yield r


def endpoint(name: str, gpu: str, capacity: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": name, "namespace": "nodepools-e2e"},
        "spec": {
            "model": {"uri": "hf://Qwen/Qwen3-4B-AWQ", "servedName": name, "parameters": 4e9},
            "engine": {"quantization": "awq", "maxModelLen": 8192},
            "resources": {"gpu": {"type": gpu, "count": 1}},
            "capacity": capacity,
        },
    }


def names(cluster: Cluster, api_version: str, kind: str) -> set[str]:
    path = kube.resource_path(api_version, kind)
    items = kube.request(cluster.api, "GET", path, query=[("labelSelector", MANAGED_SELECTOR)])
    return {i["metadata"]["name"] for i in items["items"]}


def versions(cluster: Cluster) -> dict[str, str]:
    out = {}
    for api_version, kind in (
        ("karpenter.sh/v1", "NodePool"),
        ("karpenter.k8s.aws/v1", "EC2NodeClass"),
    ):
        for item in kube.request(cluster.api, "GET", kube.resource_path(api_version, kind))[
            "items"
        ]:
            out[f"{kind}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
    return out


def pools(cluster: Cluster) -> set[str]:
    return names(cluster, "karpenter.sh/v1", "NodePool")


def test_pools_follow_the_fleet_and_loading_pods_are_released(cluster, operator) -> None:
    cluster.ensure_namespace("nodepools-e2e")
    foreign = {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": "platform-default"},
        "spec": {
            "template": {
                "spec": {
                    "nodeClassRef": {
                        "group": "karpenter.k8s.aws",
                        "kind": "EC2NodeClass",
                        "name": "default",
                    },
                    "requirements": [
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}
                    ],
                }
            }
        },
    }
    kube.apply(cluster.api, foreign, "platform-team")

    chat = endpoint(
        "chat",
        "l4",
        {"preference": ["reserved", "spot", "on-demand"], "reservation": "e2e-support-l4"},
    )
    big = endpoint("big", "l40s", {"preference": ["on-demand"]})
    applied = WRITES.labels("apply", "NodePool")._value.get()
    cluster.create(chat)
    want = {"e2e-support-l4", "e2e-l4-spot", "e2e-l4-on-demand"}
    wait_for(lambda: pools(cluster) == want, what=f"node pools {want}")
    assert names(cluster, "karpenter.k8s.aws/v1", "EC2NodeClass") == {"e2e", "e2e-support-l4"}
    reserved_class = kube.get(
        cluster.api, "karpenter.k8s.aws/v1", "EC2NodeClass", None, "e2e-support-l4"
    )
    assert reserved_class["spec"]["capacityReservationSelectorTerms"] == [
        {"id": "cr-0123456789abcdef0"}
    ]

    cluster.create(big)
    wait_for(lambda: pools(cluster) == want | {"e2e-l40s-on-demand"}, what="the l40s pool")
    assert WRITES.labels("apply", "NodePool")._value.get() - applied == 4, "each pool once"

    # Converged: more sync passes write nothing.
    before = versions(cluster)
    done = SYNCS.labels("ok")._value.get()
    wait_for(lambda: SYNCS.labels("ok")._value.get() >= done + 3, what="more sync passes")
    assert versions(cluster) == before, "a sync that changed nothing wrote to the API server"

    # The l40s endpoint goes: its Deployment and pods are garbage-collected, then its pool goes.
    cluster.delete("InferenceEndpoint", "nodepools-e2e", "big")
    wait_for(lambda: pools(cluster) == want, timeout=120, what="the l40s pool to go")

    # An engine pod that was loading its model: released once Ready.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "loading-engine",
            "namespace": "nodepools-e2e",
            "labels": {"app.kubernetes.io/managed-by": "frugal"},
            "annotations": {DO_NOT_DISRUPT: "1500s", LOADING_ANNOTATION: "true"},
        },
        "spec": {"containers": [{"name": "vllm", "image": "registry.k8s.io/pause:3.10"}]},
    }
    kube.apply(cluster.api, pod, "e2e")
    path = kube.resource_path("v1", "Pod", "nodepools-e2e", "loading-engine")
    kube.request(
        cluster.api,
        "PATCH",
        path + "/status",
        body={"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        content_type="application/merge-patch+json",
    )

    def released() -> bool:
        annotations = kube.request(cluster.api, "GET", path)["metadata"].get("annotations") or {}
        return DO_NOT_DISRUPT not in annotations and LOADING_ANNOTATION not in annotations

    wait_for(released, what="do-not-disrupt removed from the Ready pod")

    # The last endpoint goes: every frugal pool and class goes; the platform's pool stays.
    cluster.delete("InferenceEndpoint", "nodepools-e2e", "chat")
    wait_for(lambda: pools(cluster) == set(), timeout=120, what="all frugal pools to go")
    wait_for(lambda: names(cluster, "karpenter.k8s.aws/v1", "EC2NodeClass") == set())
    assert kube.get(cluster.api, "karpenter.sh/v1", "NodePool", None, "platform-default")
