"""The scale loop's status patch, rebased on a fresh read before it is sent.

Under load kopf delivers an endpoint's status seconds late; a patch computed from it must not
undo what the reconciler wrote meanwhile, and must vanish when it changes nothing.
"""

from __future__ import annotations

from frugal.controller.loops import rebase_patch


def cond(ctype: str, status: str = "True", reason: str = "R") -> dict:
    return {"type": ctype, "status": status, "reason": reason}


def test_a_stale_conditions_list_keeps_the_conditions_written_since() -> None:
    seen = {"conditions": [cond("SignalsAvailable", "False")]}
    patch = {"conditions": [cond("SignalsAvailable")]}
    live = {"conditions": [cond("Ready"), cond("Placed"), cond("SignalsAvailable", "False")]}
    assert rebase_patch(seen, patch, live) == {
        "conditions": [cond("Ready"), cond("Placed"), cond("SignalsAvailable")]
    }


def test_a_condition_already_live_is_not_sent_again() -> None:
    seen: dict = {}
    patch = {"conditions": [cond("SignalsAvailable", "False")]}
    live = {"conditions": [cond("Ready"), cond("SignalsAvailable", "False")]}
    assert rebase_patch(seen, patch, live) == {}


def test_unchanged_conditions_of_the_stale_view_do_not_overwrite_live_ones() -> None:
    seen = {"conditions": [cond("BudgetExceeded", "False"), cond("SignalsAvailable", "False")]}
    patch = {"conditions": [cond("BudgetExceeded", "False"), cond("SignalsAvailable")]}
    live = {"conditions": [cond("BudgetExceeded", "True"), cond("SignalsAvailable", "False")]}
    assert rebase_patch(seen, patch, live) == {
        "conditions": [cond("BudgetExceeded", "True"), cond("SignalsAvailable")]
    }


def test_objects_send_only_their_changed_keys() -> None:
    seen = {"cost": {"hourlyUSD": 1.0, "source": "static"}}
    patch = {"cost": {"hourlyUSD": 1.0, "source": "live", "tokensPerSecond": 5.0}}
    live = {"cost": {"hourlyUSD": 2.0, "source": "static"}}  # the reconciler moved $/h
    assert rebase_patch(seen, patch, live) == {"cost": {"source": "live", "tokensPerSecond": 5.0}}


def test_none_deletes_and_absent_equals_none() -> None:
    seen = {"autoscaler": {"replicas": 2, "zeroSince": "t0"}}
    patch = {"autoscaler": {"replicas": 1, "awakeSince": None, "zeroSince": None}}
    live = {"autoscaler": {"replicas": 2, "zeroSince": "t0"}}
    assert rebase_patch(seen, patch, live) == {"autoscaler": {"replicas": 1, "zeroSince": None}}
    assert rebase_patch(live, {"autoscaler": {"replicas": 2, "awakeSince": None}}, live) == {}


def test_live_cost_jitter_is_not_a_change() -> None:
    import datetime as dt

    from frugal.api.endpoint import InferenceEndpointSpec
    from frugal.controller.loops import _live_cost

    spec = InferenceEndpointSpec.model_validate(
        {"model": {"uri": "hf://o/m", "servedName": "m", "parameters": 1e9}}
    )
    now = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)
    first, _ = _live_cost(spec, {"cost": {"hourlyUSD": 1.0}}, 600.0, now, 1)
    later = now + dt.timedelta(seconds=61)
    same, _ = _live_cost(spec, {"cost": first}, 601.0, later, 1)
    assert same == first  # 0.2% of scrape jitter: nothing to write
    moved, _ = _live_cost(spec, {"cost": first}, 700.0, later, 1)
    assert moved["tokensPerSecond"] == 700.0
    assert moved["asOf"] != first["asOf"]


def test_live_cost_is_refreshed_at_most_once_a_minute() -> None:
    """A move beyond the tolerance waits for the minute; the budget condition does not."""
    import datetime as dt

    from frugal.api.endpoint import InferenceEndpointSpec
    from frugal.controller.loops import LIVE_COST_REFRESH_SECONDS, _live_cost

    spec = InferenceEndpointSpec.model_validate(
        {
            "model": {"uri": "hf://o/m", "servedName": "m", "parameters": 1e9},
            "budget": {"hourlyUSD": 0.5},
        }
    )
    now = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)
    first, _ = _live_cost(spec, {"cost": {"hourlyUSD": 1.0}}, 600.0, now, 1)
    assert first["tokensPerSecond"] == 600.0
    soon = now + dt.timedelta(seconds=LIVE_COST_REFRESH_SECONDS - 1)
    held, budget = _live_cost(spec, {"cost": first}, 1200.0, soon, 1)
    assert held == first
    assert budget["type"] == "BudgetExceeded"
    assert budget["status"] == "True"  # $1/h against a $0.5/h budget, evaluated every tick
    due = now + dt.timedelta(seconds=LIVE_COST_REFRESH_SECONDS)
    refreshed, _ = _live_cost(spec, {"cost": first}, 1200.0, due, 1)
    assert refreshed["tokensPerSecond"] == 1200.0
    # A time stamp in the future (another replica's clock) or not a time: replaced at once.
    for as_of in ("2026-11-27T13:00:00Z", "yesterday"):
        skewed, _ = _live_cost(spec, {"cost": {**first, "asOf": as_of}}, 1200.0, soon, 1)
        assert skewed["tokensPerSecond"] == 1200.0
