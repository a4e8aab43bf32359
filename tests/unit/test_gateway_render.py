"""What the operator hands the gateway: policies with live weights, upstreams with prices."""

from __future__ import annotations

from frugal.controller.gateways import gateway_config
from frugal.render.gateway import render_gateway_config


def ie(name: str, ns: str = "support", **status) -> dict:
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"model": {"servedName": name}, "scaling": {"coldStartBudget": "2m"}},
        "status": {"url": f"http://{name}.{ns}.svc:8000/v1", **status},
    }


RP = {
    "apiVersion": "frugal.dev/v1alpha1",
    "kind": "RoutingPolicy",
    "metadata": {"name": "support", "namespace": "support"},
    "spec": {
        "modelName": "assistant",
        "tiers": [
            {"name": "small", "endpointRef": {"name": "small"}, "weight": 70},
            {"name": "large", "endpointRef": {"name": "large"}, "weight": 30},
        ],
    },
    "status": {"weights": {"small": 50, "large": 50}, "lastDecision": {"reason": "x"}},
}


def test_policies_carry_effective_weights_and_upstreams_their_state() -> None:
    config = render_gateway_config(
        "support",
        [RP],
        [],
        [
            ie("small", phase="Serving", cost={"hourlyUSD": 0.8, "tokensPerSecond": 400}),
            ie("large", phase="ScaledToZero"),
        ],
    )
    (policy,) = config["policies"]
    assert policy["status"] == {"weights": {"small": 50, "large": 50}}
    assert "lastDecision" not in str(policy)
    small, large = config["upstreams"]["small"], config["upstreams"]["large"]
    assert small["url"] == "http://small.support.svc:8000"
    assert (small["pricePerHour"], small["tokensPerSecond"]) == (0.8, 400)
    assert large["scaledToZero"] is True
    assert large["coldStartBudget"] == "2m"


def test_a_policy_whose_endpoint_has_no_url_yet_is_left_out() -> None:
    waiting = ie("large")
    del waiting["status"]["url"]
    config = render_gateway_config("support", [RP], [], [ie("small"), waiting])
    assert config["policies"] == []


def test_namespaces_merge_and_the_base_keeps_tenants() -> None:
    base = {"tenants": [{"name": "t", "apiKeys": ["k"]}], "limits": {"maxInFlight": 10}}
    merged = gateway_config({"support": [RP]}, {}, {"support": [ie("small"), ie("large")]}, base)
    assert merged["tenants"] == base["tenants"]
    assert merged["wake"]["kubernetes"] is True
    assert set(merged["upstreams"]) == {"small", "large"}
