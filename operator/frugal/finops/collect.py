"""Shell: read spend from the cluster (InferenceEndpoints, RoutingPolicies) and Prometheus.

Reads only: the operator owns ``status.cost``; this module never writes. Objects come through
``frugal.kube.request`` on the official client's transport, like everything else in frugal.
Prometheus figures are the gateway's counters, summed by the grouping labels; a label the
gateway does not attach simply groups as empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from kubernetes.client import ApiClient

from frugal import kube
from frugal.api.base import API_VERSION, parse_duration

COST_METRIC = "frugal_gateway_cost_usd_total"
SAVED_METRIC = "frugal_gateway_cache_saved_usd_total"


def _list(api: ApiClient, kind: str, namespace: str | None) -> list[dict[str, Any]]:
    if namespace:
        path = kube.resource_path(API_VERSION, kind, namespace)
    else:
        plural = kube.RESOURCES[API_VERSION, kind].plural
        path = f"/apis/{API_VERSION}/{plural}"
    return kube.request(api, "GET", path).get("items", [])


def read_endpoints(api: ApiClient, namespace: str | None = None) -> list[dict[str, Any]]:
    """InferenceEndpoints in one namespace, or in all."""
    return _list(api, "InferenceEndpoint", namespace)


def read_routing_policies(api: ApiClient, namespace: str | None = None) -> list[dict[str, Any]]:
    return _list(api, "RoutingPolicy", namespace)


def gateway_per_day(
    url: str,
    metric: str,
    by: Sequence[str],
    *,
    window: str = "1d",
    namespace: str | None = None,
    timeout: float = 10.0,
) -> dict[tuple[str, ...], float]:
    """``increase(metric[window])`` summed by the grouping labels, scaled to US$ per day."""
    from prometheus_api_client import PrometheusConnect

    span = parse_duration(window)
    selector = f'{{namespace="{namespace}"}}' if namespace else ""
    promql = f"sum by ({', '.join(by)}) (increase({metric}{selector}[{window}]))"
    client = PrometheusConnect(url=url, disable_ssl=True, timeout=timeout)
    result = client.custom_query(promql)
    scale = timedelta(days=1) / span
    out: dict[tuple[str, ...], float] = {}
    for sample in result:
        labels = sample.get("metric", {})
        key = tuple(labels.get(k, "") for k in by)
        out[key] = out.get(key, 0.0) + float(sample["value"][1]) * scale
    return out
