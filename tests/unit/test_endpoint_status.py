"""Phase and conditions of an endpoint from its placement and its Deployments."""

from __future__ import annotations

from frugal.api.base import CapacityType
from frugal.controller.status import Observed, changes, endpoint_status

PLACED = {
    "desired": {"total": 3, "reserved": 1, "spot": 1, "onDemand": 1},
    "placed": {"code": "Placed", "message": "l4×1"},
    "gpu": {"type": "l4", "count": 1, "reason": "cheapest"},
    "cost": {"hourlyUSD": 1.7, "source": "static"},
}


def status(placement=PLACED, observed=(), previous=None, now="2026-01-01T00:00:00Z"):
    return endpoint_status(
        name="e",
        namespace="n",
        generation=4,
        placement=placement,
        observed=list(observed),
        previous=previous or {},
        url="http://e",
        now=now,
    )


def conditions(s):
    return {c["type"]: c for c in s["conditions"]}


def test_pending_until_a_replica_is_ready() -> None:
    s = status()
    assert s["phase"] == "Pending"
    assert conditions(s)["Ready"]["status"] == "False"
    assert conditions(s)["Placed"]["status"] == "True"
    assert s["replicas"]["summary"] == "0/3"


def test_serving_when_all_ready_and_degraded_in_between() -> None:
    all_ready = [
        Observed(CapacityType.RESERVED, 1, 1),
        Observed(CapacityType.SPOT, 1, 1),
        Observed(CapacityType.ON_DEMAND, 1, 1),
    ]
    assert status(observed=all_ready)["phase"] == "Serving"
    s = status(observed=all_ready[:2])
    assert s["phase"] == "Degraded"
    assert conditions(s)["Degraded"]["status"] == "True"
    assert s["replicas"] == {
        "desired": 3,
        "ready": 2,
        "reserved": 1,
        "spot": 1,
        "onDemand": 1,
        "summary": "2/3",
    }


def test_scaled_to_zero() -> None:
    zero = {**PLACED, "desired": {"total": 0, "reserved": 0, "spot": 0, "onDemand": 0}}
    s = status(zero)
    assert s["phase"] == "ScaledToZero"
    assert conditions(s)["ScaledToZero"]["status"] == "True"


def test_unplaceable_endpoint_is_pending_with_the_reason() -> None:
    s = status(
        {
            "placed": {"code": "NoGpuFits", "message": "no GPU fits: 900 GiB needed"},
            "desired": {"total": 1},
        }
    )
    assert s["phase"] == "Pending"
    placed = conditions(s)["Placed"]
    assert (placed["status"], placed["reason"]) == ("False", "NoGpuFits")
    assert "900 GiB" in placed["message"]


def test_recomputing_changes_nothing_and_keeps_transition_times() -> None:
    first = status(now="2026-01-01T00:00:00Z")
    again = status(previous=first, now="2026-01-01T01:00:00Z")
    assert changes(first, again) == {}
    moved = status(
        observed=[Observed(CapacityType.SPOT, 3, 3)], previous=first, now="2026-01-01T02:00:00Z"
    )
    assert conditions(moved)["Ready"]["lastTransitionTime"] == "2026-01-01T02:00:00Z"
    assert conditions(moved)["Placed"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    # The patch carries only what moved, not the unchanged GPU, cost, URL or placement.
    assert set(changes(first, moved)) == {"phase", "conditions", "replicas"}


def test_conditions_of_other_loops_are_kept() -> None:
    previous = {
        "conditions": [
            {
                "type": "BudgetExceeded",
                "status": "True",
                "reason": "Over",
                "message": "",
                "lastTransitionTime": "t",
            }
        ]
    }
    assert "BudgetExceeded" in conditions(status(previous=previous))


def test_live_cost_is_not_overwritten_by_the_static_estimate() -> None:
    previous = {"cost": {"hourlyUSD": 2.5, "source": "live", "tokensPerSecond": 900}}
    cost = status(previous=previous)["cost"]
    assert cost == {"hourlyUSD": 1.7, "source": "live", "tokensPerSecond": 900}
    assert status()["cost"] == {"hourlyUSD": 1.7, "source": "static"}
