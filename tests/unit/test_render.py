"""Rendering children: vLLM arguments, labels for cost allocation, placement on nodes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml

from frugal.api.base import CapacityType
from frugal.api.endpoint import InferenceEndpointSpec
from frugal.catalog.profiles import PROFILES, ProfileName
from frugal.placement.plan import EndpointWish, plan_fleet
from frugal.render.endpoint import HASH_ANNOTATION, Owner, render_endpoint
from frugal.render.engine import model_argument, vllm_args
from frugal.render.scheduler import gpu_bin_packing_profile, scheduler_configuration
from frugal.settings import ReservationPool, Settings

OWNER = Owner("chat", "team-a", "1234")


def spec(**kw) -> InferenceEndpointSpec:
    base = {"model": {"uri": "hf://org/m", "servedName": "chat", "parameters": 8e9}}
    return InferenceEndpointSpec.model_validate({**base, **kw})


def render(s: InferenceEndpointSpec, settings: Settings | None = None, replicas: int = 3):
    settings = settings or Settings()
    plan = plan_fleet([EndpointWish("team-a/chat", s, replicas)], settings)["team-a/chat"]
    return {
        f"{c['kind']}/{c['metadata']['name']}": c for c in render_endpoint(OWNER, s, plan, settings)
    }


def test_vllm_arguments_follow_the_spec() -> None:
    s = spec(
        model={"uri": "hf://org/m", "servedName": "chat", "parameters": 8e9, "revision": "v2"},
        engine={
            "quantization": "awq",
            "kvCacheDtype": "fp8",
            "maxModelLen": 16384,
            "maxNumSeqs": 64,
            "gpuMemoryUtilization": 0.85,
            "prefixCaching": False,
            "speculative": {
                "method": "eagle3",
                "draftModel": "hf://org/eagle",
                "numSpeculativeTokens": 4,
            },
            "extraArgs": ["--enforce-eager"],
        },
    )
    args = vllm_args(s, tensor_parallel=2, port=8000)
    assert args[0] == "org/m", "model is positional: --model is deprecated in vllm serve"
    pairs = dict(zip(args[1::2], args[2::2], strict=False))
    assert pairs["--served-model-name"] == "chat"
    assert "--quantization" in args
    assert args[args.index("--quantization") + 1] == "awq"
    assert args[args.index("--kv-cache-dtype") + 1] == "fp8"
    assert args[args.index("--max-model-len") + 1] == "16384"
    assert args[args.index("--max-num-seqs") + 1] == "64"
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.85"
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--revision") + 1] == "v2"
    assert "--no-enable-prefix-caching" in args
    spec_config = json.loads(args[args.index("--speculative-config") + 1])
    assert spec_config == {"method": "eagle3", "num_speculative_tokens": 4, "model": "org/eagle"}
    assert args[-1] == "--enforce-eager"


def test_unquantized_models_pass_no_quantization_flag() -> None:
    assert "--quantization" not in vllm_args(spec(), 1, 8000)


@pytest.mark.parametrize(
    ("uri", "arg"),
    [
        ("hf://meta/llama", "meta/llama"),
        ("s3://b/k/m", "s3://b/k/m"),
        ("pvc://weights/llama-8b", "/models/weights/llama-8b"),
    ],
)
def test_model_sources(uri: str, arg: str) -> None:
    assert model_argument(uri) == arg


def test_s3_uses_the_streamer_and_pvc_is_mounted() -> None:
    s3 = spec(model={"uri": "s3://b/m", "servedName": "m", "parameters": 1e9})
    assert "runai_streamer" in vllm_args(s3, 1, 8000)
    pvc = spec(model={"uri": "pvc://weights/m", "servedName": "m", "parameters": 1e9})
    dep = render(pvc)["Deployment/chat-on-demand"]
    pod = dep["spec"]["template"]["spec"]
    assert {
        "name": "weights",
        "persistentVolumeClaim": {"claimName": "weights", "readOnly": True},
    } in pod["volumes"]


def test_cost_labels_reach_every_child_and_the_pods() -> None:
    s = spec(
        costAllocation={
            "team": "search",
            "project": "rank",
            "environment": "prod",
            "costCenter": "cc-1",
            "labels": {"example.com/tier": "gold"},
        }
    )
    children = render(s)
    expected = {
        "team": "search",
        "frugal.dev/team": "search",
        "product": "rank",
        "env": "prod",
        "department": "cc-1",
        "frugal.dev/cost-center": "cc-1",
        "example.com/tier": "gold",
        "frugal.dev/endpoint": "chat",
    }
    for key, child in children.items():
        assert expected.items() <= child["metadata"]["labels"].items(), key
        assert child["metadata"]["ownerReferences"][0]["uid"] == "1234"
        assert child["metadata"]["ownerReferences"][0]["controller"] is True
        if child["kind"] == "Deployment":
            assert expected.items() <= child["spec"]["template"]["metadata"]["labels"].items()


def deployment_replicas(children: dict[str, dict]) -> dict[str, int]:
    return {k: c["spec"]["replicas"] for k, c in children.items() if c["kind"] == "Deployment"}


def test_one_deployment_per_capacity_type_with_the_split() -> None:
    s = spec(
        scaling={"minReplicas": 4, "maxReplicas": 4},
        capacity={
            "preference": ["reserved", "spot", "on-demand"],
            "reservation": "pool",
            "spot": {"maxShare": 0.5},
            "onDemandFloor": 1,
        },
    )
    settings = Settings(reservations=(ReservationPool(name="pool", gpu_type="l4", gpus=1),))
    children = render(s, settings, replicas=4)
    assert deployment_replicas(children) == {
        "Deployment/chat-reserved": 1,
        "Deployment/chat-spot": 2,
        "Deployment/chat-on-demand": 1,
    }
    assert {"Service/chat", "PodDisruptionBudget/chat"} <= children.keys()


def test_a_capacity_type_without_replicas_gets_no_deployment() -> None:
    s = spec(capacity={"preference": ["reserved", "spot", "on-demand"], "reservation": "pool"})
    full = Settings(reservations=(ReservationPool(name="pool", gpu_type="l4", gpus=0),))
    # Reservation empty, spot at the default half beside on-demand: 1 on spot, 1 on-demand.
    assert deployment_replicas(render(s, full, replicas=2)) == {
        "Deployment/chat-spot": 1,
        "Deployment/chat-on-demand": 1,
    }
    # One replica: half of it on spot rounds down to none.
    assert deployment_replicas(render(s, full, replicas=1)) == {"Deployment/chat-on-demand": 1}


def test_a_disruption_budget_only_once_two_replicas_are_placed() -> None:
    s = spec(capacity={"preference": ["reserved", "on-demand"], "reservation": "pool"})
    settings = Settings(reservations=(ReservationPool(name="pool", gpu_type="l4", gpus=1),))
    assert "PodDisruptionBudget/chat" not in render(s, settings, replicas=1)
    # Two replicas in two Deployments: one budget over both.
    pdb = render(s, settings, replicas=2)["PodDisruptionBudget/chat"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == {"matchLabels": {"frugal.dev/endpoint": "chat"}}
    # Two wanted but one placed (the reservation holds one, nothing else allowed): no budget.
    only = spec(capacity={"preference": ["reserved"], "reservation": "pool"})
    assert "PodDisruptionBudget/chat" not in render(only, settings, replicas=2)


def test_an_endpoint_at_zero_keeps_its_service_but_no_deployment() -> None:
    s = spec(capacity={"preference": ["spot", "on-demand"]})
    children = render(s, replicas=0)
    assert children.keys() == {"Service/chat"}
    s = spec(capacity={"preference": ["reserved"], "reservation": "pool"})
    full = Settings(reservations=(ReservationPool(name="pool", gpu_type="l4", gpus=0),))
    assert not deployment_replicas(render(s, full, replicas=2)), "unplaced replicas"


@pytest.mark.parametrize("profile", list(ProfileName))
def test_each_profile_pins_pods_to_their_capacity_type(profile: ProfileName) -> None:
    settings = Settings(profile=profile)
    children = render(spec(capacity={"preference": ["spot", "on-demand"]}), settings)
    for ctype in (CapacityType.SPOT, CapacityType.ON_DEMAND):
        pod = children[f"Deployment/chat-{ctype.value}"]["spec"]["template"]["spec"]
        expected = PROFILES[profile].capacity_labels[ctype]
        assert expected.items() <= pod["nodeSelector"].items()
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
            "tolerations"
        ]


def test_engine_pod_is_hardened_and_probed() -> None:
    dep = render(spec(scaling={"coldStartBudget": "20m"}))["Deployment/chat-on-demand"]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 1200
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["enableServiceLinks"] is False
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


def test_hash_is_stable_and_tracks_content() -> None:
    a = render(spec())
    b = render(spec())
    c = render(spec(engine={"maxNumSeqs": 8}))
    key = "Deployment/chat-on-demand"
    h = lambda x: x[key]["metadata"]["annotations"][HASH_ANNOTATION]  # noqa: E731
    assert h(a) == h(b)
    assert h(a) != h(c)


def test_nothing_is_rendered_when_no_gpu_fits() -> None:
    s = spec(model={"uri": "hf://a/b", "servedName": "b", "parameters": 5e12})
    assert render(s) == {}


# --- GPU-count-aware placement (render/affinity.py) -------------------------------------------

GPU_COUNT_LABELS = {
    ProfileName.KARPENTER: "karpenter.k8s.aws/instance-gpu-count",
    ProfileName.EKS: "nvidia.com/gpu.count",
    ProfileName.GKE: "cloud.google.com/gke-accelerator-count",
    ProfileName.AKS: "nvidia.com/gpu.count",
    ProfileName.PLAIN: "nvidia.com/gpu.count",
}


def matches(term: dict, labels: dict[str, str]) -> bool:
    """A nodeSelectorTerm's matchExpressions (ANDed) against a node's labels."""
    for e in term["matchExpressions"]:
        value = labels.get(e["key"])
        if e["operator"] == "DoesNotExist":
            ok = value is None
        elif e["operator"] in ("Gt", "Lt"):
            bound = int(e["values"][0])
            ok = value is not None and (
                int(value) > bound if e["operator"] == "Gt" else int(value) < bound
            )
        else:
            raise AssertionError(f"unexpected operator {e['operator']}")
        if not ok:
            return False
    return True


def node_affinity(profile: ProfileName, gpus: int) -> dict:
    s = spec(resources={"gpu": {"type": "l4", "count": gpus}})
    pod = render(s, Settings(profile=profile))["Deployment/chat-on-demand"]["spec"]["template"]
    return pod["spec"]["affinity"]["nodeAffinity"]


def preference(affinity: dict, label: str, count: int | None) -> int:
    """What NodeAffinity adds up for a node: the weights of the preferred terms it matches."""
    labels = {} if count is None else {label: str(count)}
    return sum(
        t["weight"]
        for t in affinity["preferredDuringSchedulingIgnoredDuringExecution"]
        if matches(t["preference"], labels)
    )


def allowed(affinity: dict, label: str, count: int | None) -> bool:
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    labels = {} if count is None else {label: str(count)}
    return required is None or any(matches(t, labels) for t in required["nodeSelectorTerms"])


@pytest.mark.parametrize("profile", list(ProfileName))
@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_engine_pods_prefer_the_smallest_node_that_holds_the_replica(
    profile: ProfileName, gpus: int
) -> None:
    label = GPU_COUNT_LABELS[profile]
    assert PROFILES[profile].gpu_count_label == label
    affinity = node_affinity(profile, gpus)
    counts = {1, max(gpus - 1, 1), gpus, gpus + 1, *(gpus * k for k in (2, 3, 4, 6, 8, 16))}
    score = {count: preference(affinity, label, count) for count in sorted(counts)}
    # Size classes [n, 2n), [2n, 4n), [4n, 8n): each a quarter of the one below, none above.
    assert score[gpus] == 100
    assert score[2 * gpus] == 25
    assert score[4 * gpus] == 6
    assert score[8 * gpus] == 0
    sufficient = sorted(c for c in score if c >= gpus)
    assert all(score[a] >= score[b] for a, b in itertools.pairwise(sufficient))
    assert all(score[c] == 0 for c in score if c < gpus), "too small: not preferred at all"
    assert preference(affinity, label, None) == 0, "an unlabelled node is merely not preferred"
    # Karpenter takes the heaviest preferred term as a requirement first: the smallest class.
    terms = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    heaviest = max(terms, key=lambda t: t["weight"])
    assert [c for c in score if matches(heaviest["preference"], {label: str(c)})] == [
        c for c in score if gpus <= c < 2 * gpus
    ]


@pytest.mark.parametrize("profile", list(ProfileName))
@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_multi_gpu_replicas_require_enough_gpus_where_nodes_say_how_many(
    profile: ProfileName, gpus: int
) -> None:
    label = GPU_COUNT_LABELS[profile]
    affinity = node_affinity(profile, gpus)
    if gpus == 1:
        assert "requiredDuringSchedulingIgnoredDuringExecution" not in affinity
    for count in (1, 2, 4, 8, 16):
        assert allowed(affinity, label, count) == (count >= gpus)
    assert allowed(affinity, label, None), "clusters without the label still schedule"


def test_the_best_open_size_class_outscores_least_allocated() -> None:
    """NodeAffinity as the scheduler scores it: normalised to 0-100 over feasible nodes, x2.

    Whichever classes still have room, the smallest beats every larger one by at least 150
    points, more than the stock NodeResourcesFit (LeastAllocated, at most 100) can give back.
    """
    label = GPU_COUNT_LABELS[ProfileName.KARPENTER]
    for gpus in (1, 2, 4):
        affinity = node_affinity(ProfileName.KARPENTER, gpus)
        counts = [gpus * 2**k for k in range(5)]  # one node per class, and one above them all
        for smallest_open in range(3):
            feasible = counts[smallest_open:]
            raw = {c: preference(affinity, label, c) for c in feasible}
            scored = {c: 2 * 100 * raw[c] // max(raw.values()) for c in feasible}
            assert scored[feasible[0]] == 200
            assert all(scored[feasible[0]] - scored[c] >= 150 for c in feasible[1:])


def test_the_documented_scheduler_profile_is_the_rendered_one() -> None:
    """docs/node-pools.md shows the bin-packing profile the e2e runs kube-scheduler with."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "node-pools.md").read_text()
    blocks = [yaml.safe_load(b.split("```")[0]) for b in doc.split("```yaml\n")[1:]]
    documented = [b for b in blocks if b.get("kind") == "KubeSchedulerConfiguration"]
    assert documented == [scheduler_configuration(gpu_bin_packing_profile())]


def test_engine_pods_name_the_configured_scheduler() -> None:
    """Managed control planes run the GPU bin-packing profile as a second scheduler."""
    default = render(spec())
    assert all(
        "schedulerName" not in pod_of(c) for c in default.values() if c["kind"] == "Deployment"
    )
    settings = Settings.model_validate({"engine": {"schedulerName": "frugal-gpu-binpack"}})
    named = render(spec(), settings)
    deployments = [c for c in named.values() if c["kind"] == "Deployment"]
    assert deployments
    assert {pod_of(d)["schedulerName"] for d in deployments} == {"frugal-gpu-binpack"}
    with pytest.raises(ValueError, match=r"schedulerName"):
        Settings.model_validate({"engine": {"schedulerName": "Not A Name"}})


def pod_of(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]
