"""(RoutingPolicies, CachePolicies, InferenceEndpoints of a namespace) → the gateway's config.

The gateway reads one YAML file (frugal.gateway.config.GatewayConfig). In a cluster the
operator renders it into the ConfigMap ``frugal-gateway`` of each namespace that has a
RoutingPolicy; the gateway re-reads it when it changes, without a restart. Upstream URLs come
from a resolver so that the same function serves the cluster (Service URLs from the endpoints'
status) and the local demo (engine simulators on loopback).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

GATEWAY_CONFIGMAP = "frugal-gateway"
CONFIG_KEY = "config.yaml"

UrlResolver = Callable[[dict[str, Any]], str | None]


def service_url(endpoint: Mapping[str, Any]) -> str | None:
    """The endpoint's in-cluster URL, as its status reports it (without the /v1 suffix)."""
    url = (endpoint.get("status") or {}).get("url")
    return url.removesuffix("/v1") if url else None


def _policy_doc(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Only what the gateway reads: identity, spec, and (for policies) effective weights."""
    meta = obj["metadata"]
    doc: dict[str, Any] = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": meta["name"], "namespace": meta.get("namespace")},
        "spec": obj["spec"],
    }
    weights = (obj.get("status") or {}).get("weights")
    if obj["kind"] == "RoutingPolicy" and weights:
        doc["status"] = {"weights": weights}
    return doc


def render_gateway_config(
    namespace: str,
    routing: list[Mapping[str, Any]],
    caching: list[Mapping[str, Any]],
    endpoints: list[Mapping[str, Any]],
    *,
    resolve: UrlResolver = service_url,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The gateway configuration for one namespace (a dict ready for YAML)."""
    upstreams: dict[str, Any] = {}
    for ie in endpoints:
        url = resolve(dict(ie))
        if not url:
            continue
        spec, status = ie["spec"], ie.get("status") or {}
        cost = status.get("cost") or {}
        upstream: dict[str, Any] = {
            "url": url,
            "servedName": spec["model"]["servedName"],
            "namespace": namespace,
            "scaledToZero": status.get("phase") == "ScaledToZero",
            "coldStartBudget": (spec.get("scaling") or {}).get("coldStartBudget", "5m"),
        }
        if cost.get("hourlyUSD") is not None and cost.get("tokensPerSecond"):
            upstream["pricePerHour"] = cost["hourlyUSD"]
            upstream["tokensPerSecond"] = cost["tokensPerSecond"]
        upstreams[ie["metadata"]["name"]] = upstream
    # A policy whose endpoint has no URL yet is left out rather than failing the whole file.
    ready = [
        rp
        for rp in routing
        if all(
            t["endpointRef"]["name"] in upstreams
            for t in rp["spec"]["tiers"]
            if t.get("endpointRef")
        )
    ]
    config: dict[str, Any] = {
        "namespace": namespace,
        "policies": [_policy_doc(o) for o in (*ready, *caching)],
        "upstreams": upstreams,
        "wake": {"kubernetes": True},
    }
    if extra:
        config.update(extra)
    return config
