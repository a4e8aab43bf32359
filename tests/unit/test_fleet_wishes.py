"""A reconcile plans an endpoint with only the endpoints that share its reservation pool.

That is what keeps a reconcile from re-planning the whole fleet (quadratic convergence at a
thousand endpoints); it is only right while ``plan_fleet`` couples endpoints through
reservation pools alone, which these properties check against planning everything at once.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frugal.api.endpoint import InferenceEndpointSpec
from frugal.controller.endpoints import (
    IndexedEndpoint,
    PlanCache,
    fleet_wishes,
    generations,
)
from frugal.controller.statuswrites import Snapshot
from frugal.placement.plan import EndpointWish, plan_fleet
from frugal.settings import ReservationPool, Settings
from support.strategies import endpoint_spec

SETTINGS = Settings(
    reservations=(
        ReservationPool(name="pool-a", gpu_type="l4", gpus=6),
        ReservationPool(name="pool-b", gpu_type="l40s", gpus=3),
    )
)


@st.composite
def fleet(draw: st.DrawFn) -> list[EndpointWish]:
    """Endpoints competing for two small pools (and one that is not configured)."""
    wishes = []
    for i in range(draw(st.integers(1, 12))):
        raw = draw(endpoint_spec())
        capacity = raw.setdefault("capacity", {})
        if "reserved" in capacity.get("preference", ["reserved"]):
            capacity["reservation"] = draw(st.sampled_from(["pool-a", "pool-b", "nowhere"]))
        spec = InferenceEndpointSpec.model_validate(raw)
        replicas = draw(st.integers(spec.scaling.min_replicas, spec.scaling.max_replicas))
        wishes.append(EndpointWish(f"ns/e{i}", spec, replicas))
    return wishes


def index_of(wishes: list[EndpointWish]) -> dict[str, list[IndexedEndpoint]]:
    def snapshot(key: str) -> Snapshot:
        namespace, name = key.split("/")
        return Snapshot(name, namespace, "uid", "1", 1, {})

    return {
        w.key: [IndexedEndpoint(w.spec, w.replicas, w.spot_share_limit, snapshot(w.key))]
        for w in wishes
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet())
def test_planning_with_pool_peers_equals_planning_the_fleet(wishes: list[EndpointWish]) -> None:
    whole = plan_fleet(wishes, SETTINGS)
    index = index_of(wishes)
    for w in wishes:
        peers = fleet_wishes(index, w.key, w)
        assert plan_fleet(peers, SETTINGS)[w.key] == whole[w.key]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet())
def test_the_plan_cache_returns_what_planning_returns(wishes: list[EndpointWish]) -> None:
    cache = PlanCache(size=4)
    index = index_of(wishes)
    whole = plan_fleet(wishes, SETTINGS)
    for _ in range(2):  # the second round is served from the cache
        for w in wishes:
            peers = fleet_wishes(index, w.key, w)
            plans = cache.plan(peers, generations(index, peers, w.key, 1), SETTINGS, "")
            assert plans[w.key] == whole[w.key]


def test_a_changed_wish_is_planned_again() -> None:
    spec = InferenceEndpointSpec.model_validate(
        {
            "model": {"uri": "hf://o/m", "servedName": "m", "parameters": 1e9},
            "capacity": {"preference": ["reserved", "on-demand"], "reservation": "pool-a"},
            "scaling": {"maxReplicas": 10},
        }
    )
    cache = PlanCache()
    one = [EndpointWish("ns/a", spec, 2)]
    two = [EndpointWish("ns/a", spec, 9)]
    first = cache.plan(one, {"ns/a": 1}, SETTINGS, "")["ns/a"]
    second = cache.plan(two, {"ns/a": 1}, SETTINGS, "")["ns/a"]
    assert (first.split.reserved, second.split.reserved) == (2, 6)
