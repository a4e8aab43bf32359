"""Rendered NodePools and EC2NodeClasses pass Karpenter's own CRDs, CEL rules included.

Karpenter's CRDs come from its Go modules at the pinned release (e2e/testbed/karpenter-crds.sh,
cached outside the repository) and are installed on the testbed API server. Every object is
really applied (server-side apply, strict field validation), so a wrong field name, a value the
schema refuses or a CEL rule the object breaks fails here. No Karpenter controller runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiException

from frugal import kube
from frugal.api.base import CapacityType
from frugal.api.endpoint import InferenceEndpointSpec
from frugal.controller.nodepools import desired_uses, release_loading_pod, sync_node_pools
from frugal.placement.plan import EndpointWish, plan_fleet
from frugal.render.nodepools import (
    DO_NOT_DISRUPT,
    LOADING_ANNOTATION,
    NodePoolSettings,
    PoolUse,
    endpoint_pool_uses,
    loading_annotations,
    render_node_pools,
)
from frugal.settings import ReservationPool, Settings

pytestmark = pytest.mark.cluster
C = CapacityType
MANAGER = "frugal-karpenter-tests"
NODE_CLASS = {
    "clusterName": "frugal-test",
}


@pytest.fixture(scope="module")
def karpenter(cluster) -> str:
    """Karpenter's CRDs on the test API server; the pinned version."""
    from testbed import karpenter

    if os.environ.get("FRUGAL_TEST_KUBECONFIG"):
        # Another cluster: use its Karpenter CRDs as they are, never overwrite them.
        have = cluster.kubectl("get", "crd", "-o", "name")
        if any(
            f"customresourcedefinition.apiextensions.k8s.io/{n}" not in have
            for n in karpenter.REQUIRED
        ):
            pytest.skip("the cluster has no Karpenter CRDs")
        return "installed"
    karpenter.install_crds(cluster)
    return karpenter.version()


@pytest.fixture
def cleanup(cluster) -> Iterator[list[dict[str, Any]]]:
    """Objects to delete after the test (cluster-scoped: tests share the API server)."""
    created: list[dict[str, Any]] = []
    yield created
    for obj in reversed(created):
        _delete(cluster, obj["apiVersion"], obj["kind"], obj["metadata"]["name"])
    for api_version, kind in (
        ("karpenter.sh/v1", "NodePool"),
        ("karpenter.k8s.aws/v1", "EC2NodeClass"),
    ):
        path = kube.resource_path(api_version, kind)
        items = kube.request(
            cluster.api, "GET", path, query=[("labelSelector", "frugal.dev/test=karpenter")]
        )["items"]
        for item in items:
            _delete(cluster, api_version, kind, item["metadata"]["name"])


def _delete(cluster, api_version: str, kind: str, name: str) -> None:
    try:
        kube.request(cluster.api, "DELETE", kube.resource_path(api_version, kind, None, name))
    except ApiException as err:
        if err.status != 404:
            raise


def spec(**kw: Any) -> InferenceEndpointSpec:
    base = {"model": {"uri": "hf://org/m", "servedName": "m", "parameters": 8e9}}
    return InferenceEndpointSpec.model_validate({**base, **kw})


def fleet_uses(specs: dict[str, InferenceEndpointSpec], settings: Settings) -> set[PoolUse]:
    plans = plan_fleet([EndpointWish(k, s, 2) for k, s in specs.items()], settings)
    uses: set[PoolUse] = set()
    for key, s in specs.items():
        uses |= endpoint_pool_uses(s, plans[key], settings)
    return uses


TEST_LABELS = {"frugal.dev/test": "karpenter"}

FLEETS: dict[str, tuple[Settings, NodePoolSettings, dict[str, InferenceEndpointSpec], dict]] = {
    # reserved + spot + on-demand on two GPU types, reservations by id, per-type limits
    "reserved-spot-on-demand-two-gpus": (
        Settings(
            profile="karpenter",
            reservations=(
                ReservationPool(
                    name="support-l4",
                    gpu_type="l4",
                    gpus=4,
                    capacity_reservation_ids=("cr-0a1b2c3d4e5f67890", "cr-0123456789abcdef0"),
                ),
                ReservationPool(
                    name="search-l40s",
                    gpu_type="l40s",
                    gpus=8,
                    capacity_reservation_ids=("cr-00000000000000001",),
                ),
            ),
        ),
        NodePoolSettings(
            manage=True,
            node_class=NODE_CLASS,
            labels={**TEST_LABELS, "cost-center": "ml-platform"},
            gpu_limits={"l4": 32, "l40s/spot": 16},
        ),
        {
            "a/chat": spec(
                resources={"gpu": {"type": "l4"}},
                capacity={
                    "preference": ["reserved", "spot", "on-demand"],
                    "reservation": "support-l4",
                },
            ),
            "b/search": spec(
                resources={"gpu": {"type": "l40s"}},
                capacity={
                    "preference": ["reserved", "on-demand", "spot"],
                    "reservation": "search-l40s",
                },
            ),
        },
        {"NodePool": 6, "EC2NodeClass": 3},
    ),
    # no reservations at all; no limits; exact instance types
    "spot-and-on-demand-no-reservations": (
        Settings(profile="karpenter"),
        NodePoolSettings(
            manage=True,
            node_class={
                "role": "GpuNodeRole",
                "subnetIds": ["subnet-0abc"],
                "securityGroupIds": ["sg-0abc", "sg-0def"],
            },
            labels=TEST_LABELS,
            max_gpus=None,
            instance_selection="instance-types",
        ),
        {
            "a/chat": spec(
                resources={"gpu": {"type": "l4"}}, capacity={"preference": ["spot", "on-demand"]}
            ),
            "a/big": spec(
                resources={"gpu": {"type": "h100"}}, capacity={"preference": ["on-demand"]}
            ),
        },
        {"NodePool": 3, "EC2NodeClass": 1},
    ),
    # reservations without ids: one discovered, one selected by tag; Bottlerocket; instance
    # profile; a scheduled budget and a drain bound
    "reservations-by-tag-and-discovery": (
        Settings(
            profile="karpenter",
            reservations=(
                ReservationPool(name="batch-a10g", gpu_type="a10g", gpus=4),
                ReservationPool(name="eval-h100", gpu_type="h100", gpus=8),
            ),
        ),
        NodePoolSettings(
            manage=True,
            node_class={
                "instanceProfile": "KarpenterGpuProfile",
                "amiAlias": "bottlerocket@v1.40.0",
                "subnetSelectorTags": {"tier": "private", "karpenter.sh/discovery": "c1"},
                "securityGroupSelectorTags": {"karpenter.sh/discovery": "c1"},
                "volumeSize": "500Gi",
                "tags": {"team": "ml", "CostCenter": "1234"},
            },
            labels=TEST_LABELS,
            instance_selection="gpu-name",
            disruption={
                "consolidateAfter": "15m",
                "budgets": [
                    {"nodes": "20%", "reasons": ["Empty"]},
                    {
                        "nodes": "0",
                        "reasons": ["Drifted"],
                        "schedule": "0 9 * * mon-fri",
                        "duration": "8h",
                    },
                ],
                "expireAfter": "Never",
                "terminationGracePeriod": "2h",
            },
        ),
        {
            "a/batch": spec(
                resources={"gpu": {"type": "a10g"}},
                capacity={"preference": ["reserved", "spot"], "reservation": "batch-a10g"},
            ),
            "b/eval": spec(
                resources={"gpu": {"type": "h100"}},
                capacity={"preference": ["reserved", "on-demand"], "reservation": "eval-h100"},
            ),
        },
        {"NodePool": 4, "EC2NodeClass": 3},
    ),
}


def test_the_installed_crds_support_reserved_capacity(cluster, karpenter) -> None:
    def crd(name: str) -> dict[str, Any]:
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        return kube.request(cluster.api, "GET", path)

    node_class = crd("ec2nodeclasses.karpenter.k8s.aws")
    node_pool = crd("nodepools.karpenter.sh")
    assert [v["name"] for v in node_class["spec"]["versions"]] == ["v1"]
    assert [v["name"] for v in node_pool["spec"]["versions"]] == ["v1"]
    spec = node_class["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "capacityReservationSelectorTerms" in spec["properties"]
    if karpenter != "installed":
        assert karpenter == "v1.14.1"


@pytest.mark.parametrize("fleet", list(FLEETS))
def test_rendered_pools_pass_karpenter_crds(cluster, karpenter, cleanup, fleet) -> None:
    settings, pools, specs, expected = FLEETS[fleet]
    uses = fleet_uses(specs, settings)
    docs = render_node_pools(
        uses, settings, pools=pools, reservation_ids={"batch-a10g": ["cr-0feedfacecafe0001"]}
    )
    kinds = [d["kind"] for d in docs]
    assert {k: kinds.count(k) for k in set(kinds)} == expected
    for doc in docs:
        cleanup.append(doc)
        stored = kube.apply(cluster.api, doc, MANAGER)
        assert stored["metadata"]["name"] == doc["metadata"]["name"]
        # What we sent is what is stored (no field was pruned as unknown).
        for key, value in doc["spec"].items():
            assert stored["spec"][key] == value, (doc["kind"], key)
    # A second apply of the same objects changes nothing.
    for doc in docs:
        before = kube.get(
            cluster.api, doc["apiVersion"], doc["kind"], None, doc["metadata"]["name"]
        )
        after = kube.apply(cluster.api, doc, MANAGER)
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_every_catalog_gpu_and_capacity_type_passes(cluster, karpenter, cleanup) -> None:
    settings = Settings(
        profile="karpenter",
        reservations=tuple(
            ReservationPool(name=f"r-{g.name}", gpu_type=g.name, gpus=8) for g in Settings().gpus
        ),
    )
    pools = NodePoolSettings(manage=True, node_class=NODE_CLASS, labels=TEST_LABELS)
    uses = {PoolUse(g.name, c) for g in settings.gpus for c in (C.SPOT, C.ON_DEMAND)}
    uses |= {PoolUse(g.name, C.RESERVED, f"r-{g.name}") for g in settings.gpus}
    docs = render_node_pools(uses, settings, pools=pools)
    assert len([d for d in docs if d["kind"] == "NodePool"]) == 3 * len(settings.gpus)
    for doc in docs:
        cleanup.append(doc)
        kube.apply(cluster.api, doc, MANAGER)


def test_the_crds_enforce_their_cel_rules(cluster, karpenter, cleanup) -> None:
    """The installed schemas are the real ones: objects that break a CEL rule are refused."""
    settings = Settings(
        profile="karpenter",
        reservations=(ReservationPool(name="cel-l4", gpu_type="l4", gpus=4),),
    )
    pools = NodePoolSettings(manage=True, node_class=NODE_CLASS, labels=TEST_LABELS)
    docs = render_node_pools([PoolUse("l4", C.RESERVED, "cel-l4")], settings, pools=pools)
    node_class = next(d for d in docs if d["kind"] == "EC2NodeClass")
    node_pool = next(d for d in docs if d["kind"] == "NodePool")

    bad_pool = {**node_pool, "spec": {**node_pool["spec"]}}
    bad_pool["spec"]["template"] = {
        **node_pool["spec"]["template"],
        "metadata": {"labels": {"karpenter.sh/nodepool": "cel-l4"}},
    }
    with pytest.raises(ApiException) as err:
        kube.apply(cluster.api, bad_pool, MANAGER)
    assert err.value.status == 422
    assert "karpenter.sh/nodepool" in err.value.body

    bad_class = {**node_class, "spec": {**node_class["spec"]}}
    bad_class["spec"]["capacityReservationSelectorTerms"] = [
        {"id": "cr-0123456789abcdef0", "tags": {"a": "b"}}
    ]
    with pytest.raises(ApiException) as err:
        kube.apply(cluster.api, bad_class, MANAGER)
    assert err.value.status == 422
    assert "mutually exclusive" in err.value.body

    both = {**node_class, "spec": {**node_class["spec"], "instanceProfile": "p"}}
    with pytest.raises(ApiException) as err:
        kube.apply(cluster.api, both, MANAGER)
    assert "exactly one of ['role', 'instanceProfile']" in err.value.body


def _names(cluster, api_version: str, kind: str) -> set[str]:
    path = kube.resource_path(api_version, kind)
    items = kube.request(
        cluster.api, "GET", path, query=[("labelSelector", "frugal.dev/test=karpenter")]
    )
    return {i["metadata"]["name"] for i in items["items"]}


def test_sync_creates_needed_pools_and_prunes_only_frugal_ones(cluster, karpenter, cleanup) -> None:
    settings = Settings(
        profile="karpenter",
        reservations=(
            ReservationPool(
                name="sync-l4", gpu_type="l4", gpus=4, capacity_reservation_ids=("cr-0abc",)
            ),
        ),
    )
    pools = NodePoolSettings(manage=True, prefix="synct", node_class=NODE_CLASS, labels=TEST_LABELS)
    # A NodePool someone else owns, on frugal's node class: never touched, and it keeps the class.
    foreign = {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": "team-own-pool", "labels": TEST_LABELS},
        "spec": {
            "template": {
                "spec": {
                    "nodeClassRef": {
                        "group": "karpenter.k8s.aws",
                        "kind": "EC2NodeClass",
                        "name": "synct",
                    },
                    "requirements": [
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}
                    ],
                }
            }
        },
    }
    cleanup.append(foreign)
    kube.apply(cluster.api, foreign, "someone-else")

    endpoints = {
        "a/chat": {
            "spec": spec(
                resources={"gpu": {"type": "l4"}},
                capacity={
                    "preference": ["reserved", "spot", "on-demand"],
                    "reservation": "sync-l4",
                },
            ).wire(),
            "status": {},
        },
        "b/big": {
            "spec": spec(
                resources={"gpu": {"type": "l40s"}}, capacity={"preference": ["on-demand"]}
            ).wire(),
            "status": {},
        },
    }

    def sync(eps, pods=()):
        uses = desired_uses(eps, pods, settings)
        return sync_node_pools(cluster.api, render_node_pools(uses, settings, pools=pools), MANAGER)

    first = sync(endpoints)
    assert _names(cluster, "karpenter.sh/v1", "NodePool") == {
        "sync-l4",
        "synct-l4-spot",
        "synct-l4-on-demand",
        "synct-l40s-on-demand",
        "team-own-pool",
    }
    assert _names(cluster, "karpenter.k8s.aws/v1", "EC2NodeClass") == {"synct", "sync-l4"}
    assert len(first.applied) == 6
    assert not first.deleted

    # Converged: nothing is written again.
    assert sync(endpoints).writes == 0

    # The l40s endpoint goes, but one of its pods is still running: its pool stays.
    still_running = [
        {
            "karpenter.sh/capacity-type": "on-demand",
            "karpenter.k8s.aws/instance-gpu-name": "l40s",
        }
    ]
    assert sync({"a/chat": endpoints["a/chat"]}, still_running).deleted == []
    # ...and goes with the last pod.
    gone = sync({"a/chat": endpoints["a/chat"]})
    assert gone.deleted == ["NodePool/synct-l40s-on-demand"]

    # The last endpoint goes: every frugal pool and class goes, the foreign pool stays.
    last = sync({})
    assert set(last.deleted) == {
        "NodePool/sync-l4",
        "NodePool/synct-l4-spot",
        "NodePool/synct-l4-on-demand",
        "EC2NodeClass/sync-l4",
    }
    assert last.kept == ["EC2NodeClass/synct"], "the foreign pool still uses it"
    assert _names(cluster, "karpenter.sh/v1", "NodePool") == {"team-own-pool"}
    assert _names(cluster, "karpenter.k8s.aws/v1", "EC2NodeClass") == {"synct"}


def test_loading_protection_is_released_once_the_pod_is_ready(
    cluster, karpenter, namespace
) -> None:
    settings = Settings(profile="karpenter")
    s = spec(scaling={"coldStartBudget": "15m"})
    annotations = loading_annotations(s, settings)
    assert annotations[DO_NOT_DISRUPT] == f"{15 * 60 + 600}s"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "engine-0",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "frugal", "frugal.dev/endpoint": "chat"},
            "annotations": {**annotations, "keep": "me"},
        },
        "spec": {"containers": [{"name": "vllm", "image": "registry.k8s.io/pause:3.10"}]},
    }
    created = kube.apply(cluster.api, pod, MANAGER)
    assert release_loading_pod(cluster.api, created) is False, "not Ready yet"

    status_path = kube.resource_path("v1", "Pod", namespace, "engine-0") + "/status"
    ready = kube.request(
        cluster.api,
        "PATCH",
        status_path,
        body={"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        content_type="application/merge-patch+json",
    )
    assert release_loading_pod(cluster.api, ready) is True
    after = kube.get(cluster.api, "v1", "Pod", namespace, "engine-0")
    left = after["metadata"].get("annotations") or {}
    assert DO_NOT_DISRUPT not in left
    assert LOADING_ANNOTATION not in left
    assert left["keep"] == "me"
    assert release_loading_pod(cluster.api, after) is False, "nothing left to release"


def test_a_hand_made_pool_of_the_same_name_is_left_alone(cluster, karpenter, cleanup) -> None:
    """Before frugal managed pools, a reserved pool had to be made by hand (named after the
    reservation); frugal never takes one over unless it is labelled frugal-managed."""
    settings = Settings(
        profile="karpenter",
        reservations=(ReservationPool(name="hand-l4", gpu_type="l4", gpus=4),),
    )
    pools = NodePoolSettings(manage=True, prefix="handt", node_class=NODE_CLASS, labels=TEST_LABELS)
    hand = {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": "hand-l4", "labels": TEST_LABELS},
        "spec": {
            "template": {
                "spec": {
                    "nodeClassRef": {
                        "group": "karpenter.k8s.aws",
                        "kind": "EC2NodeClass",
                        "name": "default",
                    },
                    "requirements": [
                        {
                            "key": "karpenter.sh/capacity-type",
                            "operator": "In",
                            "values": ["reserved"],
                        }
                    ],
                }
            }
        },
    }
    cleanup.append(hand)
    before = kube.apply(cluster.api, hand, "platform-team")
    rendered = render_node_pools([PoolUse("l4", C.RESERVED, "hand-l4")], settings, pools=pools)
    result = sync_node_pools(cluster.api, rendered, MANAGER)
    assert result.foreign == ["NodePool/hand-l4"]
    assert result.applied == ["EC2NodeClass/hand-l4"]
    live = kube.get(cluster.api, "karpenter.sh/v1", "NodePool", None, "hand-l4")
    assert live["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    # Handed over: labelled frugal-managed, the next sync makes it frugal's pool.
    kube.request(
        cluster.api,
        "PATCH",
        kube.resource_path("karpenter.sh/v1", "NodePool", None, "hand-l4"),
        body={
            "metadata": {
                "labels": {
                    "app.kubernetes.io/managed-by": "frugal",
                    "app.kubernetes.io/component": "node-pool",
                }
            }
        },
        content_type="application/merge-patch+json",
    )
    adopted = sync_node_pools(cluster.api, rendered, MANAGER)
    assert adopted.applied == ["NodePool/hand-l4"]
    live = kube.get(cluster.api, "karpenter.sh/v1", "NodePool", None, "hand-l4")
    assert live["spec"]["template"]["spec"]["nodeClassRef"]["name"] == "hand-l4"
