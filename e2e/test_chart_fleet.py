"""`helm install`, `upgrade` and `uninstall` on the simulated fleet: pods really get scheduled."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from frugal import kube
from support.wait import wait_for
from testbed.client import Cluster
from testbed.controlplane import REPO, bin_dir, ensure_built
from testbed.fleet import Fleet, NodePool, fleet_for, karpenter_pools

pytestmark = pytest.mark.fleet
NS = "frugal-system"

# Operator and gateway pods need untainted CPU nodes, like a cluster's system node group.
SYSTEM = NodePool(
    name="system",
    capacity_type="on-demand",
    gpu_type="none",
    gpus_per_node=0,
    count=2,
    labels={"karpenter.sh/capacity-type": "on-demand", "node-role": "system"},
)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Fleet]]:
    ensure_built("helm")
    fleet = fleet_for(tmp_path_factory.mktemp("chart-fleet"))
    fleet.up([SYSTEM, *karpenter_pools(spot_l40s=0, on_demand_l40s=0)])
    try:
        yield Cluster(Path(fleet.kubeconfig), str(bin_dir("kubernetes") / "kubectl")), fleet
    finally:
        fleet.down()


def helm(fleet: Fleet, *args: str) -> str:
    cmd = [str(bin_dir("helm") / "helm"), "--kubeconfig", str(fleet.kubeconfig), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def running_pods(cluster: Cluster, component: str) -> list[dict]:
    pods = kube.request(
        cluster.api,
        "GET",
        f"/api/v1/namespaces/{NS}/pods",
        query=[("labelSelector", f"app.kubernetes.io/component={component}")],
    )["items"]
    return [
        p
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def test_install_upgrade_uninstall_schedules_the_operator_and_the_gateway(fleet) -> None:
    cluster, f = fleet
    chart = str(REPO / "charts" / "frugal")
    helm(
        f,
        "install",
        "frugal",
        chart,
        "-n",
        NS,
        "--create-namespace",
        "--set",
        "gateway.enabled=true",
    )
    op = wait_for(lambda: running_pods(cluster, "operator"), what="operator pod Running")
    assert op[0]["spec"]["nodeName"].startswith("system-")
    wait_for(lambda: len(running_pods(cluster, "gateway")) >= 1, what="gateway pods Running")

    helm(
        f,
        "upgrade",
        "frugal",
        chart,
        "-n",
        NS,
        "--set",
        "gateway.enabled=true",
        "--set",
        "ha.enabled=true",
    )
    wait_for(lambda: len(running_pods(cluster, "operator")) == 2, what="two operator replicas")

    helm(f, "uninstall", "frugal", "-n", NS, "--wait")
    wait_for(lambda: not running_pods(cluster, "operator"), what="operator gone")
    crds = kube.request(
        cluster.api, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    )["items"]
    names = {c["metadata"]["name"] for c in crds}
    assert "inferenceendpoints.frugal.dev" in names, "Helm keeps CRDs on uninstall"
