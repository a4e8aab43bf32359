"""Right-sizing, reservation assignment and the capacity split (pure placement)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frugal.api.base import CapacityType
from frugal.api.endpoint import Capacity, InferenceEndpointSpec
from frugal.placement.plan import EndpointWish, initial_replicas, plan_fleet
from frugal.placement.reservations import ReservationDemand, assign_reservations
from frugal.placement.sizing import estimate_memory, fit_gpu
from frugal.placement.split import split_replicas, spot_share
from frugal.settings import ReservationPool, Settings

CATALOG = Settings().catalog()
CT = CapacityType


def spec(**kw) -> InferenceEndpointSpec:
    base = {"model": {"uri": "hf://org/m", "servedName": "m", "parameters": 8e9}}
    return InferenceEndpointSpec.model_validate({**base, **kw})


# --- sizing ---------------------------------------------------------------------------------


def test_memory_estimate_of_an_8b_model() -> None:
    est = estimate_memory(spec(), 8192)
    assert est.weights_gib == pytest.approx(8e9 * 2 / 1024**3)
    assert est.kv_cache_gib == pytest.approx(128 * 1024 * 8192 / 1024**3)
    assert est.total_gib == pytest.approx(est.weights_gib * 1.1 + est.kv_cache_gib)


def test_auto_picks_the_cheapest_gpu_that_fits() -> None:
    fit = fit_gpu(spec(), CATALOG, 8192)
    assert (fit.gpu.name, fit.count) == ("l4", 1)  # 17 GiB: an L4 beats two T4s on price
    assert "cheapest that fits" in fit.reason


def test_quantization_shrinks_the_gpu() -> None:
    big = spec(model={"uri": "hf://a/b", "servedName": "b", "parameters": 70e9})
    assert fit_gpu(big, CATALOG, 8192).count * fit_gpu(big, CATALOG, 8192).gpu.memory_gib >= 140
    awq = spec(
        model={"uri": "hf://a/b", "servedName": "b", "parameters": 70e9},
        engine={"quantization": "awq"},
    )
    fit = fit_gpu(awq, CATALOG, 8192)
    assert fit.gpu.memory_gib * fit.count < 140


def test_marlin_and_fp8_never_land_on_turing() -> None:
    for q in ("awq_marlin", "fp8", "fp8_per_tensor"):
        fit = fit_gpu(spec(engine={"quantization": q}), CATALOG, 4096)
        assert fit.gpu.compute_capability >= 8.0, q
    explicit = fit_gpu(
        spec(engine={"quantization": "fp8"}, resources={"gpu": {"type": "t4"}}), CATALOG, 4096
    )
    assert explicit.code == "NoGpuFits"
    assert "compute capability" in explicit.reason


def test_explicit_type_and_count_are_checked_not_trusted() -> None:
    fit = fit_gpu(spec(resources={"gpu": {"type": "t4", "count": 1}}), CATALOG, 8192)
    assert fit.code == "NoGpuFits"
    assert "GiB needed" in fit.reason
    unknown = fit_gpu(spec(resources={"gpu": {"type": "b200"}}), CATALOG, 8192)
    assert unknown.code == "UnknownGpuType"
    assert "b200" in unknown.reason


def test_a_model_too_big_for_any_node_fits_nowhere() -> None:
    huge = spec(model={"uri": "hf://a/b", "servedName": "b", "parameters": 2e12})
    fit = fit_gpu(huge, CATALOG, 8192)
    assert not fit.fits
    assert fit.code == "NoGpuFits"


def test_reservation_gpu_type_is_preferred_when_it_fits() -> None:
    fit = fit_gpu(spec(), CATALOG, 8192, prefer="l40s")
    assert fit.gpu.name == "l40s"
    assert "reservation pool" in fit.reason


# --- split ------------------------------------------------------------------------------------


def capacity(**kw) -> Capacity:
    return Capacity.model_validate(kw)


def test_split_fills_reserved_then_spot_then_on_demand() -> None:
    cap = capacity(spot={"maxShare": 0.5}, onDemandFloor=1)
    s = split_replicas(10, cap, reserved_granted=3)
    assert (s.reserved, s.spot, s.on_demand, s.unplaced) == (3, 5, 2, 0)


def test_default_spot_share() -> None:
    assert spot_share(capacity()) == 0.5
    assert spot_share(capacity(preference=["spot"])) == 1.0
    assert spot_share(capacity(preference=["reserved", "on-demand"])) == 0.0


def test_unplaceable_replicas_are_reported() -> None:
    s = split_replicas(4, capacity(preference=["reserved"]), reserved_granted=1)
    assert (s.reserved, s.unplaced) == (1, 3)


preferences = st.permutations(["reserved", "spot", "on-demand"]).flatmap(
    lambda p: st.integers(1, 3).map(lambda n: list(p[:n]))
)


@settings(max_examples=500)
@given(
    replicas=st.integers(0, 200),
    preference=preferences,
    share=st.none() | st.floats(0, 1),
    floor=st.integers(0, 50),
    granted=st.integers(0, 300),
    limit=st.none() | st.floats(0, 1),
)
def test_split_invariants(  # noqa: PLR0917 - hypothesis passes the drawn values by name
    replicas, preference, share, floor, granted, limit
) -> None:
    kw: dict = {"preference": preference}
    if "spot" in preference and share is not None:
        kw["spot"] = {"maxShare": share}
    if "on-demand" in preference:
        kw["onDemandFloor"] = floor
    cap = capacity(**kw)
    s = split_replicas(replicas, cap, granted, limit)
    assert s.placed + s.unplaced == replicas
    assert min(s.reserved, s.spot, s.on_demand, s.unplaced) >= 0
    assert s.reserved <= granted
    effective = spot_share(cap) if limit is None else min(spot_share(cap), limit)
    assert s.spot <= math.floor(effective * replicas + 1e-9)
    for ctype in CT:
        if ctype.value not in preference:
            assert s.count(ctype) == 0
    if "on-demand" in preference:
        assert s.on_demand >= min(floor, replicas), "on-demand floor not met"
        assert s.unplaced == 0


# --- reservations ---------------------------------------------------------------------------


demands = st.lists(
    st.builds(
        ReservationDemand,
        key=st.uuids().map(str),
        pool=st.sampled_from(["a", "b", "missing"]),
        gpu_type=st.sampled_from(["l4", "l40s"]),
        gpus_per_replica=st.sampled_from([1, 2, 4]),
        replicas=st.integers(0, 10),
        priority=st.integers(0, 3),
        min_replicas=st.integers(0, 5),
    ),
    max_size=30,
    unique_by=lambda d: d.key,
)
POOLS = (
    ReservationPool(name="a", gpu_type="l4", gpus=7),
    ReservationPool(name="b", gpu_type="l40s", gpus=16),
)


@settings(max_examples=500)
@given(demands, st.randoms())
def test_reservations_are_never_over_committed(ds, rnd) -> None:
    grants = assign_reservations(ds, POOLS)
    for pool in POOLS:
        used = sum(grants[d.key].replicas * d.gpus_per_replica for d in ds if d.pool == pool.name)
        assert used <= pool.gpus
    for d in ds:
        assert 0 <= grants[d.key].replicas <= d.replicas
        if d.pool == "missing":
            assert grants[d.key].code == "UnknownReservation"
    shuffled = list(ds)
    rnd.shuffle(shuffled)
    assert assign_reservations(shuffled, POOLS) == grants, "order of arrival changed the answer"


def test_priority_then_steadiness_wins_a_short_pool() -> None:
    pool = (ReservationPool(name="a", gpu_type="l4", gpus=2),)
    ds = [
        ReservationDemand("low", "a", "l4", 1, 2, priority=0, min_replicas=5),
        ReservationDemand("high", "a", "l4", 1, 2, priority=9, min_replicas=0),
    ]
    grants = assign_reservations(ds, pool)
    assert grants["high"].replicas == 2
    assert grants["low"].replicas == 0
    assert grants["low"].code == "ReservationFull"


def test_fleet_plan_shares_a_pool_and_reports_problems() -> None:
    settings_ = Settings(reservations=(ReservationPool(name="pool", gpu_type="l4", gpus=3),))
    a = spec(scaling={"minReplicas": 2, "maxReplicas": 4}, capacity={"reservation": "pool"})
    b = spec(scaling={"minReplicas": 2, "maxReplicas": 4}, capacity={"reservation": "pool"})
    c = spec(capacity={"reservation": "nope"})
    plans = plan_fleet(
        [EndpointWish("ns/a", a, 2), EndpointWish("ns/b", b, 2), EndpointWish("ns/c", c, 1)],
        settings_,
    )
    assert plans["ns/a"].split.reserved + plans["ns/b"].split.reserved == 3
    assert plans["ns/c"].code == "UnknownReservation"
    assert not plans["ns/c"].placed
    assert plans["ns/c"].split.placed == 1, "still served without the reservation"


def test_initial_replicas() -> None:
    assert initial_replicas(spec(scaling={"minReplicas": 0, "maxReplicas": 3})) == 1
    assert initial_replicas(spec(scaling={"minReplicas": 2, "maxReplicas": 3})) == 2
