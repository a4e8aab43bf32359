"""Labels every child carries: Kubernetes recommended labels, frugal's own, and cost allocation.

Cost-allocation labels are written twice: under frugal.dev/* (unambiguous, for frugal's own
metrics and reports) and under the plain keys OpenCost and Kubecost aggregate by out of the box
(team, department, env, product), so spend shows up per team without extra configuration.
"""

from __future__ import annotations

from frugal.api.endpoint import CostAllocation

ENDPOINT_LABEL = "frugal.dev/endpoint"
CAPACITY_LABEL = "frugal.dev/capacity-type"
MANAGED_BY = {"app.kubernetes.io/managed-by": "frugal", "app.kubernetes.io/part-of": "frugal"}

# spec field → (frugal key, OpenCost/Kubecost key)
COST_KEYS = {
    "team": ("frugal.dev/team", "team"),
    "project": ("frugal.dev/project", "product"),
    "environment": ("frugal.dev/environment", "env"),
    "cost_center": ("frugal.dev/cost-center", "department"),
}


def cost_labels(cost: CostAllocation) -> dict[str, str]:
    labels: dict[str, str] = {}
    for field, keys in COST_KEYS.items():
        value = getattr(cost, field)
        if value:
            labels.update(dict.fromkeys(keys, value))
    labels.update(cost.labels)
    return labels


def endpoint_labels(name: str, cost: CostAllocation) -> dict[str, str]:
    """Labels of every child of an endpoint (not its selector: those must never change)."""
    return {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "inference-engine",
        **MANAGED_BY,
        ENDPOINT_LABEL: name,
        **cost_labels(cost),
    }
