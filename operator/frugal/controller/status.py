"""Pure: an InferenceEndpoint's status from its placement and what its Deployments report.

Kept free of I/O so the phase and condition rules are unit-tested without a cluster. Timestamps
come in as an argument; a condition keeps its lastTransitionTime while its status is unchanged,
so recomputing an unchanged status yields an identical object (and the shell writes nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from frugal.api.base import CapacityType
from frugal.api.endpoint import InferenceEndpointSpec
from frugal.placement.plan import EndpointPlan


@dataclass(frozen=True)
class Observed:
    """Replicas one Deployment of the endpoint has, as its status reports."""

    capacity: CapacityType
    replicas: int
    ready: int


def placement_status(
    plan: EndpointPlan, spec: InferenceEndpointSpec, catalog_price: Mapping[CapacityType, float]
) -> dict[str, Any]:
    """The status fields the reconciler owns: GPU choice, desired split, static cost."""
    out: dict[str, Any] = {
        "desired": {
            "total": plan.replicas,
            "reserved": plan.split.reserved,
            "spot": plan.split.spot,
            "onDemand": plan.split.on_demand,
        },
        "placed": {"code": plan.code, "message": plan.message},
    }
    if plan.fit.gpu:
        out["gpu"] = {"type": plan.fit.gpu.name, "count": plan.fit.count, "reason": plan.fit.reason}
        hourly = sum(
            plan.split.count(ct) * plan.fit.count * catalog_price[ct] for ct in CapacityType
        )
        out["cost"] = {"hourlyUSD": round(hourly, 4), "source": "static"}
    return out


def condition(
    ctype: str,
    ok: bool,
    reason: str,
    message: str,
    *,
    previous: list[dict[str, Any]],
    now: str,
    generation: int | None,
) -> dict[str, Any]:
    """A condition that keeps its transition time while its status stays the same."""
    status = "True" if ok else "False"
    before = next((c for c in previous if c.get("type") == ctype), None)
    since = before["lastTransitionTime"] if before and before.get("status") == status else now
    out = {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def endpoint_status(
    *,
    name: str,
    namespace: str,
    generation: int | None,
    placement: Mapping[str, Any],
    observed: list[Observed],
    previous: Mapping[str, Any],
    url: str,
    now: str,
) -> dict[str, Any]:
    """The whole operator-owned status of an endpoint."""
    split = placement.get("desired", {})
    desired = split.get("total", 0)
    ready = sum(o.ready for o in observed)
    placed = placement.get("placed", {"code": "Pending", "message": ""})
    placed_ok = placed["code"] in ("Placed", "ReservationFull")
    conditions_before = list(previous.get("conditions") or [])

    if "gpu" not in placement:
        phase, ready_reason, ready_msg = "Pending", placed["code"], placed["message"]
    elif desired == 0:
        phase, ready_reason, ready_msg = "ScaledToZero", "ScaledToZero", "no replicas wanted"
    elif ready >= desired:
        phase, ready_reason, ready_msg = "Serving", "AllReplicasReady", f"{ready}/{desired} ready"
    elif ready == 0:
        phase, ready_reason = "Pending", "NoReplicaReady"
        ready_msg = f"0/{desired} ready (pods are scheduling or loading the model)"
    else:
        phase, ready_reason = "Degraded", "SomeReplicasNotReady"
        ready_msg = f"{ready}/{desired} ready"

    def cond(ctype: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
        return condition(
            ctype, ok, reason, message, previous=conditions_before, now=now, generation=generation
        )

    conditions = [
        cond("Ready", phase == "Serving", ready_reason, ready_msg),
        cond("Placed", placed_ok, placed["code"], placed["message"]),
        cond(
            "ScaledToZero",
            phase == "ScaledToZero",
            "ScaledToZero" if phase == "ScaledToZero" else "HasReplicas",
            "scaled to zero" if phase == "ScaledToZero" else f"{desired} replicas wanted",
        ),
        cond(
            "Degraded",
            phase == "Degraded" or not placed_ok,
            placed["code"] if not placed_ok else ready_reason,
            placed["message"] if not placed_ok else ready_msg,
        ),
    ]
    # Conditions written by other loops (BudgetExceeded, SignalsAvailable, ...) are kept.
    ours = {c["type"] for c in conditions}
    conditions += [c for c in conditions_before if c.get("type") not in ours]

    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "replicas": {
            "desired": desired,
            "ready": ready,
            # Where frugal placed them; readiness per type is in the Deployments.
            "reserved": split.get("reserved", 0),
            "spot": split.get("spot", 0),
            "onDemand": split.get("onDemand", 0),
            "summary": f"{ready}/{desired}",
        },
        "url": url,
        "observedGeneration": generation,
    }
    if "gpu" in placement:
        status["gpu"] = placement["gpu"]
    cost = dict(previous.get("cost") or {})
    if "cost" in placement:
        # $/h follows the placement; live figures (tokens/s, $/1M) stay until the loop refreshes.
        cost["hourlyUSD"] = placement["cost"]["hourlyUSD"]
        cost.setdefault("source", "static")
    if cost:
        status["cost"] = cost
    status["placement"] = {k: placement[k] for k in ("desired", "placed") if k in placement}
    return status


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``new`` (only keys we own) whose values differ from ``old``: the merge patch
    to send, empty when writing would change nothing."""
    return {k: v for k, v in new.items() if old.get(k) != v}
