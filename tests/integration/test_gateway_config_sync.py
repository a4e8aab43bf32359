"""The operator keeps the shared gateway's ConfigMap in step with policies and endpoints."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from frugal import kube
from frugal.settings import Settings
from support.operator import running_operator
from support.wait import wait_for

pytestmark = pytest.mark.cluster
EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "customer-support.yaml"


def test_policies_endpoints_and_weights_reach_the_gateway_config(cluster, namespace) -> None:
    settings = Settings.model_validate(
        {
            "reconcileIntervalSeconds": 1,
            "gateway": {"configNamespace": namespace},
            "reservations": [{"name": "support-l4", "gpuType": "l4", "gpus": 4}],
        }
    )
    base = {"tenants": [{"name": "support", "apiKeys": [{"env": "SUPPORT_KEY"}]}]}
    kube.apply(
        cluster.api,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "frugal-gateway-base", "namespace": namespace},
            "data": {"config.yaml": yaml.safe_dump(base)},
        },
        "helm",
    )

    def config() -> dict:
        cm = kube.get(cluster.api, "v1", "ConfigMap", namespace, "frugal-gateway") or {}
        return yaml.safe_load((cm.get("data") or {}).get("config.yaml", "") or "") or {}

    with running_operator(str(cluster.kubeconfig), [namespace], settings):
        # Rendered at start-up, before any policy exists, so that a gateway can start.
        empty = wait_for(lambda: (c := config()) and "policies" in c and c, what="first render")
        assert empty["tenants"] == base["tenants"]
        for doc in yaml.safe_load_all(EXAMPLE.read_text()):
            doc = copy.deepcopy(doc)  # noqa: PLW2901
            doc["metadata"]["namespace"] = namespace
            cluster.apply(doc)
        got = wait_for(
            lambda: (c := config()).get("policies") and len(c["policies"]) == 2 and c,
            what="gateway config with the policy and the cache policy",
        )
        assert got["tenants"] == base["tenants"], "the chart's static part is kept"
        assert set(got["upstreams"]) == {"support-small", "support-medium", "support-large"}
        assert got["upstreams"]["support-small"]["url"] == (
            f"http://support-small.{namespace}.svc:8000"
        )
        rp = next(p for p in got["policies"] if p["kind"] == "RoutingPolicy")
        assert rp["status"]["weights"] == {"small": 70, "medium": 25, "large": 5}
        version = kube.get(cluster.api, "v1", "ConfigMap", namespace, "frugal-gateway")["metadata"][
            "resourceVersion"
        ]

        # A weight change by the reroute loop reaches the gateway.
        path = kube.resource_path("frugal.dev/v1alpha1", "RoutingPolicy", namespace, "support")
        kube.request(
            cluster.api,
            "PATCH",
            path + "/status",
            body={"status": {"weights": {"small": 60, "medium": 35, "large": 5}}},
            content_type="application/merge-patch+json",
        )
        wait_for(
            lambda: (
                next(p for p in config()["policies"] if p["kind"] == "RoutingPolicy")["status"][
                    "weights"
                ]["small"]
                == 60
            ),
            what="new weights in the gateway config",
        )
        assert (
            kube.get(cluster.api, "v1", "ConfigMap", namespace, "frugal-gateway")["metadata"][
                "resourceVersion"
            ]
            != version
        )
