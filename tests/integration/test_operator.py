"""The operator, running in-process, against the real API server and controller-manager."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from frugal import kube
from frugal.controller.metrics import API_REQUESTS, RECONCILES, WRITES
from frugal.render.fleet import render_documents
from frugal.settings import ReservationPool, Settings
from support.operator import counter_total, running_operator
from support.wait import wait_for

pytestmark = pytest.mark.cluster

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
SETTINGS = Settings(
    reconcile_interval_seconds=1,
    loops={"scaleIntervalSeconds": 1},
    profile="karpenter",
    reservations=(
        ReservationPool(name="support-l4", gpu_type="l4", gpus=4),
        ReservationPool(name="search-l40s", gpu_type="l40s", gpus=4),
    ),
)


def endpoints_in(namespace: str) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "InferenceEndpoint":
                endpoint = copy.deepcopy(doc)
                endpoint["metadata"]["namespace"] = namespace
                docs.append(endpoint)
    return docs


def children(cluster, namespace: str, endpoint: str | None = None) -> dict[str, dict]:
    selector = f"frugal.dev/endpoint={endpoint}" if endpoint else "frugal.dev/endpoint"
    out = {}
    for api_version, kind in (
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("policy/v1", "PodDisruptionBudget"),
    ):
        path = kube.resource_path(api_version, kind, namespace)
        for item in kube.request(cluster.api, "GET", path, query=[("labelSelector", selector)])[
            "items"
        ]:
            item.setdefault("kind", kind)
            out[f"{kind}/{item['metadata']['name']}"] = item
    return out


def expected_children(docs: list[dict]) -> set[str]:
    """Kind/name of every child, as `frugal render` places these endpoints together."""
    namespace = docs[0]["metadata"]["namespace"]
    rendered, _ = render_documents([("test", d) for d in docs], SETTINGS, namespace)
    return {f"{c['kind']}/{c['metadata']['name']}" for c in rendered}


def ie(cluster, namespace: str, name: str) -> dict:
    return cluster.get("InferenceEndpoint", namespace, name)


def condition(obj: dict, ctype: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == ctype), {})


def events_for(cluster, namespace: str, name: str) -> list[dict]:
    items = kube.request(cluster.api, "GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


def test_endpoints_become_deployments_with_owner_labels_and_args(cluster, namespace) -> None:
    docs = endpoints_in(namespace)
    with running_operator(str(cluster.kubeconfig), [namespace], SETTINGS):
        for doc in docs:
            cluster.apply(doc)
        want = expected_children(docs)
        live = wait_for(
            lambda: (c := children(cluster, namespace)).keys() >= want and c, what="all children"
        )
        assert live.keys() == want
        for doc in docs:
            name = doc["metadata"]["name"]
            uid = ie(cluster, namespace, name)["metadata"]["uid"]
            for key, child in children(cluster, namespace, name).items():
                refs = child["metadata"]["ownerReferences"]
                assert [(r["kind"], r["uid"], r["controller"]) for r in refs] == [
                    ("InferenceEndpoint", uid, True)
                ], key
                team = doc["spec"]["costAllocation"]["team"]
                assert child["metadata"]["labels"]["team"] == team
                if child["kind"] == "Deployment":
                    pod = child["spec"]["template"]
                    assert pod["metadata"]["labels"]["frugal.dev/team"] == team
                    args = pod["spec"]["containers"][0]["args"]
                    served = doc["spec"]["model"]["servedName"]
                    assert args[args.index("--served-model-name") + 1] == served
        # Status reports placement; no node exists here, so nothing becomes ready.
        small = wait_for(
            lambda: (
                (o := ie(cluster, namespace, "support-small")).get("status", {}).get("placement")
                and o
            ),
            what="status",
        )
        assert small["status"]["gpu"]["type"] == "l4"
        assert small["status"]["replicas"]["reserved"] == 2
        assert small["status"]["phase"] == "Pending"
        assert condition(small, "Placed")["status"] == "True"
        assert small["status"]["url"] == f"http://support-small.{namespace}.svc:8000/v1"


def test_update_prune_and_garbage_collection(cluster, namespace) -> None:
    doc = next(d for d in endpoints_in(namespace) if d["metadata"]["name"] == "search-rerank")
    # Spot before the reservation, so that spot holds a replica and has a Deployment to prune.
    doc["spec"]["capacity"]["preference"] = ["spot", "reserved", "on-demand"]
    with running_operator(str(cluster.kubeconfig), [namespace], SETTINGS):
        cluster.apply(doc)
        want = expected_children([doc])
        assert "Deployment/search-rerank-spot" in want
        wait_for(lambda: children(cluster, namespace).keys() == want)

        doc["spec"]["engine"]["maxNumSeqs"] = 32
        doc["spec"]["capacity"]["preference"] = ["reserved", "on-demand"]
        doc["spec"]["capacity"].pop("spot")
        cluster.apply(doc)

        def updated() -> bool:
            live = children(cluster, namespace)
            dep = live.get("Deployment/search-rerank-on-demand")
            args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
            return (
                args[args.index("--max-num-seqs") + 1] == "32"
                and "Deployment/search-rerank-spot" not in live
            )

        wait_for(updated, what="args updated and the spot Deployment pruned")

        cluster.delete("InferenceEndpoint", namespace, "search-rerank")
        wait_for(lambda: not children(cluster, namespace), what="garbage collection")


def test_endpoints_carry_no_finalizer_and_delete_without_the_operator(cluster, namespace) -> None:
    """The periodic loops are not kopf timers, so nothing needs a finalizer: the one an earlier
    version put on its endpoints is released, and deleting never waits for the operator."""
    fresh, legacy = (small_endpoint(namespace, i) for i in (0, 1))
    legacy["metadata"]["finalizers"] = ["frugal.dev/finalizer"]
    names = [d["metadata"]["name"] for d in (fresh, legacy)]
    with running_operator(str(cluster.kubeconfig), [namespace], SETTINGS):
        cluster.apply(fresh)
        cluster.apply(legacy)
        wait_for(
            lambda: all(
                ie(cluster, namespace, n).get("status", {}).get("placement")
                and not ie(cluster, namespace, n)["metadata"].get("finalizers")
                for n in names
            ),
            what="both placed, the earlier version's finalizer released",
        )
    for name in names:
        cluster.delete("InferenceEndpoint", namespace, name)
    wait_for(
        lambda: (
            not any(
                kube.get(cluster.api, "frugal.dev/v1alpha1", "InferenceEndpoint", namespace, n)
                for n in names
            )
        ),
        what="deleted with the operator stopped",
    )


def test_restart_mid_rollout_converges_without_duplicates(cluster, namespace) -> None:
    docs = endpoints_in(namespace)
    with running_operator(str(cluster.kubeconfig), [namespace], SETTINGS):
        for doc in docs[:2]:
            cluster.apply(doc)
        wait_for(lambda: children(cluster, namespace), what="first children")
    # Operator stopped with work left; more endpoints arrive while it is down.
    for doc in docs[2:]:
        cluster.apply(doc)
    with running_operator(str(cluster.kubeconfig), [namespace], SETTINGS):
        want = expected_children(docs)
        wait_for(lambda: children(cluster, namespace).keys() == want, what="convergence")
        for child in children(cluster, namespace).values():
            assert len(child["metadata"]["ownerReferences"]) == 1


def test_a_converged_fleet_is_not_written_again(cluster, namespace) -> None:
    docs = endpoints_in(namespace)[:3]

    def versions() -> dict[str, str]:
        # Children: their generation (the controller-manager updates their status on its own
        # schedule, which moves resourceVersion but is not a write of ours). Endpoints: every
        # write, since only the operator writes them once applied.
        out = {
            k: c["metadata"].get("generation", c["metadata"]["resourceVersion"])
            for k, c in children(cluster, namespace).items()
        }
        for d in docs:
            out[d["metadata"]["name"]] = ie(cluster, namespace, d["metadata"]["name"])["metadata"][
                "resourceVersion"
            ]
        return out

    with running_operator(str(cluster.kubeconfig), [namespace], SETTINGS):
        for doc in docs:
            cluster.apply(doc)
        want = expected_children(docs)
        wait_for(lambda: children(cluster, namespace).keys() == want)
        # Placed, and the scale loop has recorded that no Prometheus is configured.
        wait_for(
            lambda: all(
                ie(cluster, namespace, d["metadata"]["name"]).get("status", {}).get("placement")
                and condition(ie(cluster, namespace, d["metadata"]["name"]), "SignalsAvailable")
                for d in docs
            )
        )
        before = versions()
        writes_before = counter_total(WRITES)
        done = RECONCILES.labels("InferenceEndpoint", "ok")._value.get()
        # Every endpoint's timer reconciles it again several times.
        wait_for(
            lambda: (
                RECONCILES.labels("InferenceEndpoint", "ok")._value.get() >= done + 3 * len(docs)
            ),
            what="more reconciles",
        )
        assert versions() == before, "a reconcile that changed nothing wrote to the API server"
        # kopf's record of what it handled is kept in the process: it wrote nothing for it.
        for d in docs:
            assert "kopf" not in ie(cluster, namespace, d["metadata"]["name"])["status"]
        assert counter_total(WRITES) == writes_before, (
            "the operator counted writes while nothing changed"
        )


def test_unsatisfiable_endpoints_get_a_condition_and_an_event(cluster, namespace) -> None:
    good = next(d for d in endpoints_in(namespace) if d["metadata"]["name"] == "support-medium")
    bad = {
        "unknown-gpu": {"resources": {"gpu": {"type": "b300"}}},
        "too-big": {"model": {"uri": "hf://x/y", "servedName": "y", "parameters": 5e12}},
        "no-pool": {
            "capacity": {"preference": ["reserved", "on-demand"], "reservation": "nowhere"}
        },
    }
    with running_operator(str(cluster.kubeconfig), [namespace], SETTINGS):
        for name, patch in bad.items():
            spec = {"model": {"uri": "hf://x/y", "servedName": name, "parameters": 8e9}, **patch}
            cluster.apply(
                {
                    "apiVersion": "frugal.dev/v1alpha1",
                    "kind": "InferenceEndpoint",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": spec,
                }
            )
        cluster.apply(good)
        expected = {
            "unknown-gpu": "UnknownGpuType",
            "too-big": "NoGpuFits",
            "no-pool": "UnknownReservation",
        }
        for name, reason in expected.items():
            obj = wait_for(
                lambda n=name, r=reason: (
                    condition(ie(cluster, namespace, n), "Placed").get("reason") == r
                    and ie(cluster, namespace, n)
                ),
                what=f"{name}: Placed reason {reason}",
            )
            assert condition(obj, "Placed")["status"] == "False", name
            wait_for(
                lambda n=name, r=reason: any(
                    e["reason"] == r and e["type"] == "Warning"
                    for e in events_for(cluster, namespace, n)
                ),
                what=f"{reason} event",
            )
        assert "b300" in condition(ie(cluster, namespace, "unknown-gpu"), "Placed")["message"]
        # Nothing is rendered for endpoints that fit nowhere; the good one is served anyway.
        assert not children(cluster, namespace, "unknown-gpu")
        assert not children(cluster, namespace, "too-big")
        assert "Deployment/no-pool-on-demand" in children(cluster, namespace, "no-pool")
        wait_for(
            lambda: (
                children(cluster, namespace, "support-medium").keys() == expected_children([good])
            )
        )


def small_endpoint(namespace: str, i: int) -> dict:
    prefs = (["reserved", "on-demand"], ["spot", "on-demand"], ["on-demand"])[i % 3]
    capacity: dict[str, Any] = {"preference": prefs}
    if "reserved" in prefs:
        capacity["reservation"] = "support-l4"
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": f"e{i:02d}", "namespace": namespace},
        "spec": {
            "model": {"uri": "hf://o/m", "servedName": f"e{i:02d}", "parameters": 1e9},
            "capacity": capacity,
        },
    }


def test_thirty_endpoints_converge_with_bounded_api_traffic(cluster, namespace) -> None:
    """Counting, not timing: each child is written about once, each endpoint's status about
    twice (placement, then the scale loop's first pass), and a converged reconcile sends no
    request at all (children and status come from watches)."""
    docs = [small_endpoint(namespace, i) for i in range(30)]
    want = expected_children(docs)
    with running_operator(str(cluster.kubeconfig), [namespace], SETTINGS):
        writes_before = counter_total(WRITES)
        status_before = counter_total(WRITES, verb="patch-status", kind="InferenceEndpoint")
        for doc in docs:
            cluster.apply(doc)
        wait_for(lambda: children(cluster, namespace).keys() == want, what="all children")
        wait_for(
            lambda: all(
                ie(cluster, namespace, d["metadata"]["name"]).get("status", {}).get("placement")
                and condition(ie(cluster, namespace, d["metadata"]["name"]), "SignalsAvailable")
                for d in docs
            ),
            what="every endpoint placed",
        )
        # A child re-applied because the watch had not yet shown the first apply is harmless
        # (server-side apply of the same content), but must stay rare.
        applies = counter_total(WRITES) - writes_before
        assert applies <= 2 * len(want) + 4 * len(docs), applies
        status_writes = counter_total(WRITES, verb="patch-status", kind="InferenceEndpoint")
        # Before, a Deployment event that beat its reconcile's status write wrote a
        # placement-less Pending first: 3 per endpoint.
        assert status_writes - status_before <= 2.2 * len(docs), status_writes - status_before

        # Converged: reconciles on their timers. Nothing here sends requests meanwhile.
        requests = counter_total(API_REQUESTS)
        done = counter_total(RECONCILES, kind="InferenceEndpoint")
        wait_for(
            lambda: counter_total(RECONCILES, kind="InferenceEndpoint") >= done + 2 * len(docs),
            what="two more passes",
        )
        reconciles = counter_total(RECONCILES, kind="InferenceEndpoint") - done
        per_reconcile = (counter_total(API_REQUESTS) - requests) / reconciles
        # Before: one GET of the endpoint per reconcile, and earlier three LISTs of children.
        assert per_reconcile <= 0.1, per_reconcile


def test_gateway_config_is_not_emptied_at_start_nor_rendered_twice(cluster, namespace) -> None:
    """At start-up kopf's indexes are not yet known: the live ConfigMap is left alone. An
    unchanged configuration is not rendered again, not even read back."""
    from frugal.controller.endpoints import Context
    from frugal.controller.gateways import GatewaySync

    ctx = Context(settings=Settings(), api=cluster.api)
    sync = GatewaySync(ctx, namespace, "frugal-gateway", "frugal-gateway-base")
    empty = {"routing_index": {}, "caching_index": {}, "endpoint_objects_index": {}}
    # No ConfigMap yet: the gateway needs a file to start with, even an empty one.
    assert sync.sync(empty, startup=True)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "frugal-gateway", "namespace": namespace},
            "data": {"config.yaml": "policies: [kept]\n"},
        },
        manager="frugal",
    )
    restarted = GatewaySync(ctx, namespace, "frugal-gateway", "frugal-gateway-base")
    assert not restarted.sync(empty, startup=True)
    live = kube.get(cluster.api, "v1", "ConfigMap", namespace, "frugal-gateway")
    assert live["data"]["config.yaml"] == "policies: [kept]\n"

    policy = {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "RoutingPolicy",
        "metadata": {"name": "p", "namespace": namespace},
        "spec": {
            "modelName": "p",
            "tiers": [
                {
                    "name": "t",
                    "weight": 100,
                    "external": {
                        "url": "http://x",
                        "model": "m",
                        "inputPricePer1M": 1,
                        "outputPricePer1M": 2,
                    },
                }
            ],
        },
        "status": {},
    }
    indexes = {**empty, "routing_index": {namespace: [policy]}}
    restarted.seen_indexes = True  # as schedule() sets it when a handler passes the indexes
    assert restarted.sync(indexes, resync=False)
    before = counter_total(API_REQUESTS)
    assert not restarted.sync(indexes, resync=False)
    assert counter_total(API_REQUESTS) == before, "an unchanged configuration was read or written"
