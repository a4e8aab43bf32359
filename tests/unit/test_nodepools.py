"""Karpenter node pools: which pools a fleet needs, and how each is rendered (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError

from frugal.api.base import CapacityType
from frugal.api.endpoint import InferenceEndpointSpec
from frugal.catalog.profiles import GPU_TOLERATION
from frugal.controller.nodepools import ReservationDiscovery, desired_uses
from frugal.placement.plan import EndpointWish, plan_fleet
from frugal.render.endpoint import HASH_ANNOTATION, Owner, render_endpoint
from frugal.render.nodepools import (
    DO_NOT_DISRUPT,
    LOADING_ANNOTATION,
    NodePoolSettings,
    PoolUse,
    endpoint_pool_uses,
    loading_annotations,
    loading_release_patch,
    loading_window_seconds,
    match_capacity_reservations,
    name_conflicts,
    render_node_pools,
    selector_pool_use,
)
from frugal.settings import ReservationPool, Settings

C = CapacityType
NODE_CLASS = {"clusterName": "prod"}
POOLS = NodePoolSettings(manage=True, node_class=NODE_CLASS)
SETTINGS = Settings(
    profile="karpenter",
    reservations=(
        ReservationPool(
            name="support-l4", gpu_type="l4", gpus=4, capacity_reservation_ids=("cr-0aaa",)
        ),
        ReservationPool(name="search-l40s", gpu_type="l40s", gpus=8),
    ),
)


def spec(gpu: str = "l4", **capacity: Any) -> InferenceEndpointSpec:
    return InferenceEndpointSpec.model_validate(
        {
            "model": {"uri": "hf://org/m", "servedName": "m", "parameters": 8e9},
            "resources": {"gpu": {"type": gpu}},
            "capacity": capacity or {"preference": ["spot", "on-demand"]},
        }
    )


def entry(s: InferenceEndpointSpec) -> dict[str, Any]:
    return {"spec": s.wire(), "status": {}}


def render(uses, settings: Settings = SETTINGS, pools: NodePoolSettings = POOLS, **kw):
    return {
        f"{d['kind']}/{d['metadata']['name']}": d
        for d in render_node_pools(uses, settings, pools=pools, **kw)
    }


def node_pools(endpoints: dict[str, InferenceEndpointSpec], pods=()) -> set[str]:
    uses = desired_uses({k: entry(s) for k, s in endpoints.items()}, pods, SETTINGS)
    return {n.split("/", 1)[1] for n in render(uses) if n.startswith("NodePool/")}


# --- the pool set as endpoints come and go ----------------------------------------------------


def test_pools_appear_when_needed_and_go_with_their_last_user() -> None:
    chat = spec("l4", preference=["reserved", "spot", "on-demand"], reservation="support-l4")
    batch = spec("l4", preference=["spot", "on-demand"])
    big = spec("l40s", preference=["on-demand"])

    assert node_pools({}) == set()
    assert node_pools({"a/batch": batch}) == {"frugal-l4-spot", "frugal-l4-on-demand"}
    both = {"a/batch": batch, "a/chat": chat}
    assert node_pools(both) == {"frugal-l4-spot", "frugal-l4-on-demand", "support-l4"}
    assert node_pools({**both, "b/big": big}) == {
        "frugal-l4-spot",
        "frugal-l4-on-demand",
        "support-l4",
        "frugal-l40s-on-demand",
    }
    # batch goes: chat still needs the shared l4 spot and on-demand pools
    assert node_pools({"a/chat": chat, "b/big": big}) == {
        "frugal-l4-spot",
        "frugal-l4-on-demand",
        "support-l4",
        "frugal-l40s-on-demand",
    }
    # chat goes too: only big's pool is left
    assert node_pools({"b/big": big}) == {"frugal-l40s-on-demand"}
    assert node_pools({}) == set()


def test_live_pods_keep_their_pool_after_the_endpoint_moved_on() -> None:
    """A rollout to another GPU (or an endpoint whose new spec fits nowhere) still has pods on
    the old pool: deleting it would make Karpenter drain them."""
    old_pod = {"karpenter.sh/capacity-type": "spot", "karpenter.k8s.aws/instance-gpu-name": "a10g"}
    reserved_pod = {
        "karpenter.sh/capacity-type": "reserved",
        "karpenter.k8s.aws/instance-gpu-name": "l40s",
        "karpenter.sh/nodepool": "search-l40s",
    }
    assert node_pools({}, [old_pod, reserved_pod]) == {"frugal-a10g-spot", "search-l40s"}
    # pods of other schedulers or unknown GPUs are ignored
    assert node_pools({}, [{"kubernetes.io/os": "linux"}]) == set()
    unknown = {"karpenter.sh/capacity-type": "spot", "karpenter.k8s.aws/instance-gpu-name": "x"}
    assert node_pools({}, [unknown]) == set()


def test_uses_follow_the_preference_not_the_current_replica_count() -> None:
    s = spec("l4", preference=["reserved", "spot", "on-demand"], reservation="support-l4")
    plan = plan_fleet([EndpointWish("a/x", s, 0)], SETTINGS)["a/x"]
    assert endpoint_pool_uses(s, plan, SETTINGS) == {
        PoolUse("l4", C.RESERVED, "support-l4"),
        PoolUse("l4", C.SPOT),
        PoolUse("l4", C.ON_DEMAND),
    }


def test_spot_with_zero_share_and_reserved_without_a_pool_need_nothing() -> None:
    s = spec("l4", preference=["reserved", "spot", "on-demand"], spot={"maxShare": 0})
    plan = plan_fleet([EndpointWish("a/x", s, 2)], SETTINGS)["a/x"]
    assert endpoint_pool_uses(s, plan, SETTINGS) == {PoolUse("l4", C.ON_DEMAND)}


def test_an_endpoint_that_fits_nowhere_needs_no_pool() -> None:
    s = InferenceEndpointSpec.model_validate(
        {
            "model": {"uri": "hf://org/m", "servedName": "m", "parameters": 4e12},
            "resources": {"gpu": {"type": "auto"}},
        }
    )
    plan = plan_fleet([EndpointWish("a/x", s, 1)], SETTINGS)["a/x"]
    assert not plan.fit.fits
    assert endpoint_pool_uses(s, plan, SETTINGS) == set()


def test_a_reservation_for_another_gpu_gets_no_reserved_pool() -> None:
    s = spec("h100", preference=["reserved", "on-demand"], reservation="support-l4")
    plan = plan_fleet([EndpointWish("a/x", s, 1)], SETTINGS)["a/x"]
    assert {u.capacity for u in endpoint_pool_uses(s, plan, SETTINGS)} <= {C.ON_DEMAND}


# --- rendering --------------------------------------------------------------------------------

ALL = {
    PoolUse("l4", C.RESERVED, "support-l4"),
    PoolUse("l4", C.SPOT),
    PoolUse("l4", C.ON_DEMAND),
    PoolUse("l40s", C.RESERVED, "search-l40s"),
    PoolUse("l40s", C.SPOT),
}


def test_reserved_pool_is_named_after_the_reservation_and_selects_it() -> None:
    out = render(ALL, reservation_ids={"search-l40s": ["cr-0bbb", "cr-0ccc"]})
    pool = out["NodePool/support-l4"]
    assert pool["spec"]["template"]["spec"]["nodeClassRef"] == {
        "group": "karpenter.k8s.aws",
        "kind": "EC2NodeClass",
        "name": "support-l4",
    }
    reqs = {r["key"]: r["values"] for r in pool["spec"]["template"]["spec"]["requirements"]}
    assert reqs["karpenter.sh/capacity-type"] == ["reserved"]
    # ids from settings, discovered ids where settings have none
    assert out["EC2NodeClass/support-l4"]["spec"]["capacityReservationSelectorTerms"] == [
        {"id": "cr-0aaa"}
    ]
    assert out["EC2NodeClass/search-l40s"]["spec"]["capacityReservationSelectorTerms"] == [
        {"id": "cr-0bbb"},
        {"id": "cr-0ccc"},
    ]
    # spot and on-demand pools share one class, which selects no reservation
    assert "capacityReservationSelectorTerms" not in out["EC2NodeClass/frugal"]["spec"]
    assert sorted(k for k in out if k.startswith("EC2NodeClass/")) == [
        "EC2NodeClass/frugal",
        "EC2NodeClass/search-l40s",
        "EC2NodeClass/support-l4",
    ]


def test_settings_ids_win_and_a_pool_without_ids_selects_by_tag() -> None:
    out = render(ALL, reservation_ids={"support-l4": ["cr-0zzz"]})
    assert out["EC2NodeClass/support-l4"]["spec"]["capacityReservationSelectorTerms"] == [
        {"id": "cr-0aaa"}
    ]
    assert out["EC2NodeClass/search-l40s"]["spec"]["capacityReservationSelectorTerms"] == [
        {"tags": {"frugal.dev/reservation": "search-l40s"}}
    ]


def test_weights_make_reserved_win_over_spot_over_on_demand() -> None:
    out = render(ALL)
    weight = {n: p["spec"]["weight"] for n, p in out.items() if n.startswith("NodePool/")}
    assert weight["NodePool/support-l4"] > weight["NodePool/frugal-l4-spot"]
    assert weight["NodePool/frugal-l4-spot"] > weight["NodePool/frugal-l4-on-demand"]
    assert all(1 <= w <= 100 for w in weight.values())
    with pytest.raises(ValidationError, match="reserved > spot > on-demand"):
        NodePoolSettings(weights={"reserved": 10, "spot": 50, "onDemand": 5})


def test_every_pool_is_gpu_tainted_and_the_engine_tolerates_it() -> None:
    for name, pool in render(ALL).items():
        if not name.startswith("NodePool/"):
            continue
        taints = pool["spec"]["template"]["spec"]["taints"]
        assert taints == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
        assert GPU_TOLERATION["key"] == taints[0]["key"]
        assert GPU_TOLERATION["operator"] == "Exists"
        assert GPU_TOLERATION["effect"] == taints[0]["effect"]


def test_labels_mark_pools_as_frugal_managed_for_cost_allocation_and_not_owned() -> None:
    pools = NodePoolSettings(manage=True, node_class=NODE_CLASS, labels={"cost-center": "ml"})
    for name, obj in render(ALL, pools=pools).items():
        meta = obj["metadata"]
        assert "ownerReferences" not in meta, "shared by endpoints: no single owner"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "frugal"
        assert meta["labels"]["cost-center"] == "ml"
        assert HASH_ANNOTATION in meta["annotations"]
        if name.startswith("NodePool/"):
            assert meta["labels"]["app.kubernetes.io/component"] == "node-pool"
            nodes = obj["spec"]["template"]["metadata"]["labels"]
            assert nodes["cost-center"] == "ml"
            assert nodes["frugal.dev/gpu-type"] in {"l4", "l40s"}
            assert nodes["frugal.dev/capacity-type"] in {"reserved", "spot", "on-demand"}
            assert "karpenter.sh/nodepool" not in nodes, "Karpenter sets it; the CRD forbids it"
    reserved = render(ALL)["NodePool/support-l4"]["spec"]["template"]["metadata"]["labels"]
    assert reserved["frugal.dev/reservation"] == "support-l4"


def test_disruption_suits_model_servers() -> None:
    out = render(ALL)
    spot = out["NodePool/frugal-l4-spot"]["spec"]["disruption"]
    assert spot == {
        "consolidationPolicy": "WhenEmpty",
        "consolidateAfter": "5m",
        "budgets": [{"nodes": "1"}],
    }
    reserved = out["NodePool/support-l4"]["spec"]["disruption"]
    assert reserved["consolidationPolicy"] == "WhenEmpty"
    assert reserved["consolidateAfter"] == "Never", "prepaid: an empty reserved node costs nothing"
    template = out["NodePool/frugal-l4-spot"]["spec"]["template"]["spec"]
    assert template["expireAfter"] == "720h"
    assert "terminationGracePeriod" not in template, "it would let drift ignore do-not-disrupt"


def test_budgets_and_drain_bound_from_settings() -> None:
    pools = NodePoolSettings(
        manage=True,
        node_class=NODE_CLASS,
        disruption={
            "budgets": [
                {"nodes": "10%"},
                {"nodes": "0", "reasons": ["Drifted"], "schedule": "0 9 * * 1-5", "duration": "8h"},
            ],
            "terminationGracePeriod": "2h",
        },
    )
    pool = render({PoolUse("l4", C.SPOT)}, pools=pools)["NodePool/frugal-l4-spot"]["spec"]
    assert pool["disruption"]["budgets"] == [
        {"nodes": "10%"},
        {"nodes": "0", "reasons": ["Drifted"], "schedule": "0 9 * * 1-5", "duration": "8h"},
    ]
    assert pool["template"]["spec"]["terminationGracePeriod"] == "2h"
    with pytest.raises(ValidationError, match="schedule and duration"):
        NodePoolSettings(disruption={"budgets": [{"nodes": "0", "schedule": "@daily"}]})


def test_gpu_limits_per_pool() -> None:
    pools = NodePoolSettings(
        manage=True, node_class=NODE_CLASS, max_gpus=64, gpu_limits={"l4": 32, "l4/spot": 16}
    )
    out = render(ALL, pools=pools)

    def limit(name: str) -> Any:
        return out[f"NodePool/{name}"]["spec"].get("limits")

    assert limit("frugal-l4-spot") == {"nvidia.com/gpu": 16}  # most specific
    assert limit("frugal-l4-on-demand") == {"nvidia.com/gpu": 32}
    assert limit("frugal-l40s-spot") == {"nvidia.com/gpu": 64}  # default
    assert limit("support-l4") == {"nvidia.com/gpu": 4}  # the reservation's size
    assert limit("search-l40s") == {"nvidia.com/gpu": 8}
    unlimited = NodePoolSettings(manage=True, node_class=NODE_CLASS, max_gpus=None)
    assert "limits" not in render(ALL, pools=unlimited)["NodePool/frugal-l4-spot"]["spec"]
    with pytest.raises(ValidationError, match="bad key"):
        NodePoolSettings(gpu_limits={"l4/preemptible": 3})


@pytest.mark.parametrize(
    ("selection", "key", "values"),
    [
        ("families", "karpenter.k8s.aws/instance-family", ["g6"]),
        (
            "instance-types",
            "node.kubernetes.io/instance-type",
            ["g6.12xlarge", "g6.48xlarge", "g6.xlarge"],
        ),
        ("gpu-name", None, None),
    ],
)
def test_instance_selection(selection: str, key: str | None, values: list[str] | None) -> None:
    pools = NodePoolSettings(manage=True, node_class=NODE_CLASS, instance_selection=selection)
    reqs = render({PoolUse("l4", C.SPOT)}, pools=pools)["NodePool/frugal-l4-spot"]["spec"][
        "template"
    ]["spec"]["requirements"]
    by_key = {r["key"]: r["values"] for r in reqs}
    assert by_key["karpenter.k8s.aws/instance-gpu-name"] == ["l4"]
    assert by_key["kubernetes.io/arch"] == ["amd64"]
    if key:
        assert by_key[key] == values
    else:
        assert set(by_key) == {
            "karpenter.sh/capacity-type",
            "karpenter.k8s.aws/instance-gpu-name",
            "kubernetes.io/arch",
            "kubernetes.io/os",
        }


def test_a100_80gb_pools_stay_on_p4de() -> None:
    """Karpenter names both A100 sizes "a100"; the family keeps 40 GB p4d out."""
    pool = render({PoolUse("a100-80gb", C.ON_DEMAND)})["NodePool/frugal-a100-80gb-on-demand"]
    reqs = {r["key"]: r["values"] for r in pool["spec"]["template"]["spec"]["requirements"]}
    assert reqs["karpenter.k8s.aws/instance-gpu-name"] == ["a100"]
    assert reqs["karpenter.k8s.aws/instance-family"] == ["p4de"]


def test_every_engine_pod_has_exactly_one_pool_that_can_take_it() -> None:
    """The pools and the Deployments' node selectors/tolerations agree (Karpenter profile)."""
    endpoints = {
        "a/chat": spec(
            "l4", preference=["reserved", "spot", "on-demand"], reservation="support-l4"
        ),
        "a/big": spec("l40s", preference=["reserved", "on-demand"], reservation="search-l40s"),
        "a/cheap": spec("t4", preference=["spot"]),
    }
    plans = plan_fleet([EndpointWish(k, s, 3) for k, s in endpoints.items()], SETTINGS)
    uses = set().union(*(endpoint_pool_uses(s, plans[k], SETTINGS) for k, s in endpoints.items()))
    pools = [p for n, p in render(uses).items() if n.startswith("NodePool/")]
    for key, s in endpoints.items():
        ns, name = key.split("/")
        for child in render_endpoint(Owner(name, ns, "u"), s, plans[key], SETTINGS):
            if child["kind"] != "Deployment":
                continue
            pod = child["spec"]["template"]["spec"]
            takers = [p["metadata"]["name"] for p in pools if _can_take(p, pod)]
            assert len(takers) == 1, (child["metadata"]["name"], takers)


def _can_take(pool: dict[str, Any], pod: dict[str, Any]) -> bool:
    template = pool["spec"]["template"]
    reqs = {r["key"]: set(r["values"]) for r in template["spec"]["requirements"]}
    for key, value in pod["nodeSelector"].items():
        if key == "karpenter.sh/nodepool":
            if value != pool["metadata"]["name"]:
                return False
        elif key in reqs:
            if value not in reqs[key]:
                return False
        elif template["metadata"]["labels"].get(key) != value:
            return False
    tolerated = {(t["key"], t.get("effect")) for t in pod["tolerations"]}
    return all((t["key"], t["effect"]) in tolerated for t in template["spec"]["taints"])


def test_nothing_is_rendered_unless_managed_on_karpenter() -> None:
    assert render(ALL, pools=NodePoolSettings()) == {}
    for profile in ("plain", "gke", "aks", "eks"):
        other = Settings(profile=profile, reservations=SETTINGS.reservations)
        assert render(ALL, settings=other) == {}


def test_rendering_is_deterministic() -> None:
    uses = list(ALL)
    first = render_node_pools(uses, SETTINGS, pools=POOLS)
    random.Random(7).shuffle(uses)
    assert render_node_pools(uses, SETTINGS, pools=POOLS) == first
    kinds = [d["kind"] for d in first]
    assert kinds == sorted(kinds, key=lambda k: k != "EC2NodeClass"), "classes before pools"


def test_unknown_and_conflicting_reservations_are_left_out() -> None:
    clash = Settings(
        profile="karpenter",
        reservations=(ReservationPool(name="frugal-l4-spot", gpu_type="l4", gpus=4),),
    )
    assert name_conflicts(clash, POOLS) == [
        "reservation pool 'frugal-l4-spot' has the name of a generated node pool or class"
    ]
    out = render({PoolUse("l4", C.RESERVED, "frugal-l4-spot")}, settings=clash)
    assert out == {}
    assert render({PoolUse("l4", C.RESERVED, "nope")}) == {}
    assert render({PoolUse("tpu", C.SPOT)}) == {}


def test_node_class_parameters() -> None:
    out = render({PoolUse("l4", C.SPOT)})["EC2NodeClass/frugal"]["spec"]
    assert out["role"] == "KarpenterNodeRole-prod"
    assert out["amiSelectorTerms"] == [{"alias": "al2023@latest"}]
    assert out["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "prod"}}]
    assert out["securityGroupSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "prod"}}]
    assert out["blockDeviceMappings"][0]["deviceName"] == "/dev/xvda"
    assert out["blockDeviceMappings"][0]["rootVolume"] is True
    assert out["tags"]["app.kubernetes.io/managed-by"] == "frugal"
    br = NodePoolSettings(
        manage=True,
        node_class={
            "instanceProfile": "GpuProfile",
            "amiAlias": "bottlerocket@v1.40.0",
            "subnetIds": ["subnet-0a"],
            "securityGroupIds": ["sg-0a"],
        },
    )
    spec_br = render({PoolUse("l4", C.SPOT)}, pools=br)["EC2NodeClass/frugal"]["spec"]
    assert spec_br["instanceProfile"] == "GpuProfile"
    assert "role" not in spec_br
    assert spec_br["subnetSelectorTerms"] == [{"id": "subnet-0a"}]
    assert spec_br["blockDeviceMappings"][0]["deviceName"] == "/dev/xvdb"  # the data volume


def test_settings_validation() -> None:
    with pytest.raises(ValidationError, match=r"nodePools\.manage needs"):
        NodePoolSettings(manage=True)
    with pytest.raises(ValidationError, match="set by Karpenter or frugal"):
        NodePoolSettings(labels={"karpenter.sh/capacity-type": "spot"})
    with pytest.raises(ValidationError, match="Karpenter's own tags"):
        NodePoolSettings(node_class={"tags": {"karpenter.sh/nodepool": "x"}})
    with pytest.raises(ValidationError, match="not both"):
        NodePoolSettings(node_class={"role": "r", "instanceProfile": "p"})
    parsed = NodePoolSettings.model_validate(
        {"manage": True, "nodeClass": {"clusterName": "c"}, "gpuLimits": {"h100": 8}}
    )
    assert parsed.gpu_limits == {"h100": 8}


def test_selector_round_trip() -> None:
    for use in ALL:
        gpu_value = "l40s" if use.gpu_type == "l40s" else "l4"
        selector = {
            "karpenter.sh/capacity-type": use.capacity.value,
            "karpenter.k8s.aws/instance-gpu-name": gpu_value,
        }
        if use.reservation:
            selector["karpenter.sh/nodepool"] = use.reservation
        assert selector_pool_use(selector, SETTINGS) == use


# --- capacity reservation discovery -----------------------------------------------------------


@dataclass(frozen=True)
class Found:
    id: str
    instance_type: str
    tags: dict[str, str] = field(default_factory=dict)


def test_discovered_reservations_match_by_tag_then_by_family() -> None:
    pool = SETTINGS.reservation("search-l40s")
    gpu = SETTINGS.catalog()["l40s"]
    found = [
        Found("cr-1", "g6e.12xlarge", {"frugal.dev/reservation": "search-l40s"}),
        Found("cr-2", "g6e.12xlarge"),
        Found("cr-3", "g6e.2xlarge", {"frugal.dev/reservation": "other"}),
    ]
    assert match_capacity_reservations(pool, gpu, found) == ("cr-1",)
    untagged = [Found("cr-2", "g6e.24xlarge"), Found("cr-4", "g6.xlarge"), found[2]]
    assert match_capacity_reservations(pool, gpu, untagged) == ("cr-2",)


def _cr(rid: str, instance_type: str, **tags: str) -> dict[str, Any]:
    return {
        "CapacityReservationId": rid,
        "InstanceType": instance_type,
        "AvailabilityZone": "us-east-1a",
        "TotalInstanceCount": 1,
        "AvailableInstanceCount": 1,
        "InstanceMatchCriteria": "targeted",
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }


def test_reservation_discovery_refreshes_and_keeps_the_last_good_answer() -> None:
    import boto3
    from botocore.stub import Stubber

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    ec2 = session.client("ec2", region_name="us-east-1")
    active = {"Filters": [{"Name": "state", "Values": ["active"]}]}
    with Stubber(ec2) as stubber:
        stubber.add_response(
            "describe_capacity_reservations",
            {"CapacityReservations": [_cr("cr-0l40s", "g6e.12xlarge")]},
            active,
        )
        stubber.add_client_error("describe_capacity_reservations", "UnauthorizedOperation")
        discovery = ReservationDiscovery(lambda: ec2, interval=60)
        pools = NodePoolSettings(manage=True, node_class=NODE_CLASS, discover_reservations=True)
        # only pools without ids in settings are discovered
        assert discovery.ids(SETTINGS, pools, now=0) == {"search-l40s": ("cr-0l40s",)}
        # not due: no call (the Stubber would fail on an unexpected one)
        assert discovery.ids(SETTINGS, pools, now=30) == {"search-l40s": ("cr-0l40s",)}
        assert discovery.ids(SETTINGS, pools, now=61) == {"search-l40s": ("cr-0l40s",)}
        assert "UnauthorizedOperation" in (discovery.last_error or "")
        stubber.assert_no_pending_responses()
    off = NodePoolSettings(manage=True, node_class=NODE_CLASS)
    assert discovery.ids(SETTINGS, off, now=1000) == {}


# --- do-not-disrupt while loading -------------------------------------------------------------


def test_loading_annotations_cover_the_startup_window() -> None:
    s = spec("l4")
    annotations = loading_annotations(s, SETTINGS)
    assert annotations[LOADING_ANNOTATION] == "true"
    plan = plan_fleet([EndpointWish("a/x", s, 1)], SETTINGS)["a/x"]
    deployment = next(
        c
        for c in render_endpoint(Owner("x", "a", "u"), s, plan, SETTINGS)
        if c["kind"] == "Deployment"
    )
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    window = probe["periodSeconds"] * probe["failureThreshold"]
    assert annotations[DO_NOT_DISRUPT] == f"{window + 600}s"
    assert loading_window_seconds(s, NodePoolSettings()) == window + 600
    assert loading_annotations(s, Settings()) == {}, "only with the Karpenter profile"


def test_release_patch_only_for_ready_pods_frugal_marked() -> None:
    marked = {"metadata": {"annotations": {DO_NOT_DISRUPT: "900s", LOADING_ANNOTATION: "true"}}}
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert loading_release_patch(marked) is None
    assert loading_release_patch({**marked, **ready}) == {
        "metadata": {"annotations": {DO_NOT_DISRUPT: None, LOADING_ANNOTATION: None}}
    }
    theirs = {"metadata": {"annotations": {DO_NOT_DISRUPT: "true"}}, **ready}
    assert loading_release_patch(theirs) is None
