"""The cost model: Eq. (1), endpoint $/h and $/1M tokens, budgets, workload months (pure)."""

from __future__ import annotations

import calendar
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from frugal.api.base import CapacityType
from frugal.api.endpoint import Budget
from frugal.api.routing import ExternalTier
from frugal.catalog.gpus import DEFAULT_GPUS
from frugal.cost.model import (
    RequestCost,
    budget_status,
    cost_per_million_tokens,
    endpoint_hourly_usd,
    endpoint_hourly_usd_at,
    external_cost,
    external_tier_cost,
    hours_left_in_month,
    monthly_cost,
    request_cost,
    saving,
)

CT = CapacityType
GPUS = {g.name: g for g in DEFAULT_GPUS}
L4 = GPUS["l4"]  # catalog: on-demand 0.805, spot 0.36, reserved 0.51 $/GPU-h
H100 = GPUS["h100"]  # catalog: on-demand 6.88 $/GPU-h

prices = st.floats(min_value=0, max_value=1_000, allow_nan=False)
tokens = st.floats(min_value=0, max_value=1e7, allow_nan=False)
counts = st.integers(min_value=0, max_value=64)
replica_maps = st.fixed_dictionaries({CT.RESERVED: counts, CT.SPOT: counts, CT.ON_DEMAND: counts})
capacities = st.sampled_from(list(CapacityType))
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


# --- Eq. (1) per request ----------------------------------------------------------------------


def test_request_cost_by_hand() -> None:
    cost = request_cost(1000, 500, 3.0, 15.0, retrieval_usd=0.0002, infra_usd=0.001)
    assert cost.input_usd == pytest.approx(0.003)  # 1000 × $3 / 1e6
    assert cost.output_usd == pytest.approx(0.0075)  # 500 × $15 / 1e6
    # 0.003 + 0.0075 + 0.0002 + 0.001 = 0.0117
    assert cost.total == pytest.approx(0.0117)


def test_request_cost_defaults_to_token_terms_only() -> None:
    assert request_cost(0, 0, 5, 5) == RequestCost(0.0, 0.0, 0.0, 0.0)
    assert request_cost(2_000_000, 0, 2.5, 10).total == pytest.approx(5.0)  # 2M × $2.5 / 1e6


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tokens_in": -1},
        {"price_out_per_1m": -0.1},
        {"tokens_out": math.nan},
        {"retrieval_usd": -1},
    ],
)
def test_request_cost_refuses_negative_or_nan(kwargs: dict[str, float]) -> None:
    base = {"tokens_in": 1, "tokens_out": 1, "price_in_per_1m": 1, "price_out_per_1m": 1}
    with pytest.raises(ValueError, match="non-negative"):
        request_cost(**{**base, **kwargs})


@given(t_in=tokens, t_out=tokens, p_in=prices, p_out=prices, d_in=prices, d_out=prices)
def test_request_cost_is_monotonic_in_prices_and_tokens(
    *, t_in: float, t_out: float, p_in: float, p_out: float, d_in: float, d_out: float
) -> None:
    base = request_cost(t_in, t_out, p_in, p_out).total
    assert request_cost(t_in, t_out, p_in + d_in, p_out + d_out).total >= base
    assert request_cost(t_in + 1, t_out + 1, p_in, p_out).total >= base
    assert base == pytest.approx((t_in * p_in + t_out * p_out) / 1e6)


# --- external tiers ---------------------------------------------------------------------------


def test_external_cost_per_request_and_per_1k() -> None:
    cost = external_cost(800, 200, 0.15, 0.60)
    # 800 × 0.15/1e6 = 0.00012; 200 × 0.60/1e6 = 0.00012; together 0.00024 per request
    assert cost.per_request_usd == pytest.approx(0.00024)
    assert cost.per_1k_requests_usd == pytest.approx(0.24)  # × 1000


def test_external_tier_uses_its_declared_prices() -> None:
    tier = ExternalTier.model_validate(
        {
            "url": "https://api.example.com/v1",
            "model": "big",
            "inputPricePer1M": 2.5,
            "outputPricePer1M": 10.0,
        }
    )
    # 1000 × 2.5/1e6 = 0.0025; 500 × 10/1e6 = 0.005; 0.0075 per request, $7.50 per 1k
    assert external_tier_cost(tier, 1000, 500).per_1k_requests_usd == pytest.approx(7.5)


# --- self-hosted endpoints --------------------------------------------------------------------


def test_endpoint_hourly_mixes_capacity_prices() -> None:
    replicas = {CT.RESERVED: 1, CT.SPOT: 2, CT.ON_DEMAND: 1}
    # reserved 1 × 2 GPUs × 0.51 = 1.02; spot 2 × 2 × 0.36 = 1.44; on-demand 1 × 2 × 0.805 = 1.61
    assert endpoint_hourly_usd(replicas, 2, L4) == pytest.approx(4.07)


def test_endpoint_hourly_of_a_full_h100_node() -> None:
    # 1 replica × 8 GPUs × $6.88 = $55.04/h (the p5.48xlarge on-demand price)
    assert endpoint_hourly_usd({CT.ON_DEMAND: 1}, 8, H100) == pytest.approx(55.04)


def test_endpoint_hourly_at_live_prices() -> None:
    live = {CT.ON_DEMAND: 1.006, CT.SPOT: 0.3974}
    # 2 × 1 × 1.006 + 3 × 1 × 0.3974 = 2.012 + 1.1922 = 3.2042
    assert endpoint_hourly_usd_at({CT.ON_DEMAND: 2, CT.SPOT: 3}, 1, live) == pytest.approx(3.2042)


def test_a_capacity_without_replicas_needs_no_price() -> None:
    assert endpoint_hourly_usd_at({CT.ON_DEMAND: 1, CT.SPOT: 0}, 4, {CT.ON_DEMAND: 1.0}) == 4.0
    with pytest.raises(ValueError, match="no \\$/GPU-hour for spot"):
        endpoint_hourly_usd_at({CT.SPOT: 1}, 1, {CT.ON_DEMAND: 1.0})


def test_scaled_to_zero_costs_nothing() -> None:
    assert endpoint_hourly_usd({}, 1, L4) == 0.0
    assert endpoint_hourly_usd({CT.SPOT: 0, CT.ON_DEMAND: 0}, 8, H100) == 0.0


@given(replica_maps, st.integers(min_value=1, max_value=8), capacities)
def test_hourly_cost_grows_with_replicas(
    replicas: dict[CapacityType, int], gpus: int, capacity: CapacityType
) -> None:
    more = {**replicas, capacity: replicas[capacity] + 1}
    assert endpoint_hourly_usd(more, gpus, L4) > endpoint_hourly_usd(replicas, gpus, L4)
    assert endpoint_hourly_usd(more, gpus, L4) == pytest.approx(
        endpoint_hourly_usd(replicas, gpus, L4) + gpus * L4.price(capacity)
    )


@given(
    replica_maps,
    st.integers(min_value=0, max_value=8),
    st.fixed_dictionaries({c: prices for c in CapacityType}),
    capacities,
    prices,
)
def test_hourly_cost_is_monotonic_in_prices(
    replicas: dict[CapacityType, int],
    gpus: int,
    price: dict[CapacityType, float],
    capacity: CapacityType,
    rise: float,
) -> None:
    higher = {**price, capacity: price[capacity] + rise}
    assert endpoint_hourly_usd_at(replicas, gpus, higher) >= endpoint_hourly_usd_at(
        replicas, gpus, price
    )


# --- $/1M tokens ------------------------------------------------------------------------------


def test_cost_per_million_tokens_by_hand() -> None:
    # 1000 tok/s × 3600 s = 3.6M tok/h; $3.60/h ÷ 3.6M tok × 1M = $1.00 per 1M tokens
    assert cost_per_million_tokens(3.60, 1000) == pytest.approx(1.00)
    # one H100 node: $55.04/h at 2500 tok/s = 9M tok/h; 55.04 / 9 = $6.1156 per 1M tokens
    assert cost_per_million_tokens(55.04, 2500) == pytest.approx(6.115555, rel=1e-6)


def test_idle_time_is_included() -> None:
    # the same $/h at a tenth of the throughput costs ten times as much per token
    busy = cost_per_million_tokens(4.07, 2000)
    idle = cost_per_million_tokens(4.07, 200)
    assert busy is not None
    assert idle == pytest.approx(busy * 10)


@pytest.mark.parametrize("tps", [None, 0, 0.0, -5, math.nan, math.inf])
def test_no_tokens_means_absent_not_zero_or_infinite(tps: float | None) -> None:
    assert cost_per_million_tokens(4.07, tps) is None


def test_a_rate_too_small_to_divide_by_is_absent_not_infinite() -> None:
    assert cost_per_million_tokens(1.0, 5e-324) is None  # $/h ÷ a subnormal rate overflows


throughputs = st.one_of(
    st.none(),
    st.floats(max_value=0),  # zero, negative and -inf
    st.sampled_from([math.nan, math.inf]),
    st.floats(min_value=1e-6, max_value=1e9),  # one token a week to a very large fleet
)


@given(prices, throughputs)
def test_cost_per_million_is_none_iff_no_tokens(hourly: float, tps: float | None) -> None:
    result = cost_per_million_tokens(hourly, tps)
    no_tokens = tps is None or not math.isfinite(tps) or tps <= 0
    assert (result is None) == no_tokens
    if result is not None:
        assert math.isfinite(result)
        assert result >= 0
        # round trip: $/1M × tokens per hour / 1M = $/h
        assert result * tps * 3600 / 1e6 == pytest.approx(hourly, rel=1e-9, abs=1e-12)


# --- budgets ----------------------------------------------------------------------------------


def test_hours_left_in_month() -> None:
    assert hours_left_in_month(datetime(2025, 7, 31, 22, tzinfo=UTC)) == pytest.approx(2)
    assert hours_left_in_month(datetime(2024, 2, 1, tzinfo=UTC)) == pytest.approx(29 * 24)  # leap
    assert hours_left_in_month(datetime(2025, 12, 31, 12, tzinfo=UTC)) == pytest.approx(12)
    # 23:00 at UTC-2 is 01:00 on 1 August in UTC: 31 × 24 - 1 = 743 h left of August
    minus_two = timezone(timedelta(hours=-2))
    assert hours_left_in_month(datetime(2025, 7, 31, 23, tzinfo=minus_two)) == pytest.approx(743)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        hours_left_in_month(datetime(2025, 7, 1))


def test_monthly_budget_overrun_is_projected() -> None:
    now = datetime(2025, 7, 31, 22, tzinfo=UTC)  # 2 h left in July
    status = budget_status(10.0, Budget(hourly_usd=12, monthly_usd=5000), 4990.0, now)
    assert status.projected_month_usd == pytest.approx(5010)  # 4990 + 10 $/h × 2 h
    assert status.hourly_burn == pytest.approx(10 / 12)  # 0.833
    assert status.monthly_burn == pytest.approx(5010 / 5000)  # 1.002
    assert status.burn == pytest.approx(1.002)
    assert status.exceeded
    assert status.code == "OverMonthlyBudget"
    assert "$5,010.00 projected" in status.reason
    assert "$5,000.00" in status.reason


def test_hourly_budget_overrun() -> None:
    now = datetime(2025, 7, 1, tzinfo=UTC)
    status = budget_status(55.04, Budget(hourly_usd=50), 0.0, now)
    assert status.exceeded
    assert status.code == "OverHourlyBudget"
    assert status.hourly_burn == pytest.approx(1.1008)  # 55.04 / 50
    assert status.monthly_burn is None
    assert "$55.04/h" in status.reason


def test_both_budgets_overrun() -> None:
    now = datetime(2025, 7, 1, tzinfo=UTC)  # 31 × 24 = 744 h left
    status = budget_status(20.0, Budget(hourly_usd=10, monthly_usd=1000), 0.0, now)
    assert status.projected_month_usd == pytest.approx(14_880)  # 20 × 744
    assert (status.exceeded, status.code) == (True, "OverBudget")


def test_exactly_on_budget_is_not_over() -> None:
    now = datetime(2025, 7, 31, 14, tzinfo=UTC)  # 10 h left
    status = budget_status(10.0, Budget(hourly_usd=10, monthly_usd=1100), 1000.0, now)
    assert status.projected_month_usd == pytest.approx(1100)  # 1000 + 10 × 10
    assert status.burn == pytest.approx(1.0)
    assert (status.exceeded, status.code) == (False, "WithinBudget")


def test_no_budget() -> None:
    status = budget_status(4.07, None, 100.0, datetime(2025, 7, 1, tzinfo=UTC))
    assert (status.exceeded, status.code, status.burn) == (False, "NoBudget", None)
    assert status.projected_month_usd == pytest.approx(100 + 4.07 * 744)


def _month_end(now: datetime) -> datetime:
    """An independent way to the end of the month: the last day, plus one day."""
    last_day = calendar.monthrange(now.year, now.month)[1]
    return datetime(now.year, now.month, last_day, tzinfo=UTC) + timedelta(days=1)


@given(
    prices,
    st.one_of(st.none(), st.floats(min_value=0.01, max_value=1_000)),
    st.one_of(st.none(), st.floats(min_value=1, max_value=1e6)),
    st.floats(min_value=0, max_value=1e6),
    moments,
)
def test_exceeded_iff_over(
    hourly: float,
    hourly_limit: float | None,
    monthly_limit: float | None,
    month_to_date: float,
    now: datetime,
) -> None:
    budget = Budget(hourly_usd=hourly_limit, monthly_usd=monthly_limit)
    status = budget_status(hourly, budget, month_to_date, now)
    hours_left = (_month_end(now) - now).total_seconds() / 3600
    projected = month_to_date + hourly * hours_left
    over_hourly = hourly_limit is not None and hourly > hourly_limit
    over_monthly = monthly_limit is not None and projected > monthly_limit
    assert status.exceeded == (over_hourly or over_monthly)
    assert status.projected_month_usd == pytest.approx(projected)
    if status.burn is not None and status.burn > 1:
        assert status.exceeded


# --- workload months --------------------------------------------------------------------------


def test_monthly_cost_by_hand() -> None:
    # per request: 1000 × 2.5/1e6 + 500 × 10/1e6 = 0.0025 + 0.005 = 0.0075
    # 50,000/day × 30 days = 1.5M requests; 1.5M × 0.0075 = $11,250
    assert monthly_cost(50_000, 1000, 500, 2.5, 10.0) == pytest.approx(11_250)
    # 40% answered from cache: 0.6 × 11,250 = $6,750
    assert monthly_cost(50_000, 1000, 500, 2.5, 10.0, cache_hit_rate=0.4) == pytest.approx(6_750)
    # + $0.001 retrieval per miss (0.6 × 1.5M × 0.001 = 900) + $500 fixed = 6,750 + 900 + 500
    assert monthly_cost(
        50_000, 1000, 500, 2.5, 10.0, cache_hit_rate=0.4, retrieval_usd=0.001, fixed_usd=500
    ) == pytest.approx(8_150)


def test_monthly_cost_refuses_a_hit_rate_outside_0_1() -> None:
    with pytest.raises(ValueError, match="cache_hit_rate"):
        monthly_cost(1, 1, 1, 1, 1, cache_hit_rate=1.5)


@given(
    per_day=st.floats(min_value=0, max_value=1e6),
    t_in=tokens,
    t_out=tokens,
    p_in=prices,
    p_out=prices,
    a=st.floats(min_value=0, max_value=1),
    b=st.floats(min_value=0, max_value=1),
)
def test_monthly_cost_falls_as_the_cache_hit_rate_rises(
    *, per_day: float, t_in: float, t_out: float, p_in: float, p_out: float, a: float, b: float
) -> None:
    low, high = sorted((a, b))
    at_low = monthly_cost(per_day, t_in, t_out, p_in, p_out, cache_hit_rate=low)
    at_high = monthly_cost(per_day, t_in, t_out, p_in, p_out, cache_hit_rate=high)
    assert at_high <= at_low * (1 + 1e-12)


# --- the paper's case study -------------------------------------------------------------------
# Singu et al. report 50,000 queries/day, US$18,420/month before and US$3,980/month after
# (78.4% saved). Table I's per-component inputs were not available to us, so these checks are
# the figures derivable from the headline numbers, not a reproduction of Table I.

PAPER_QUERIES_PER_DAY = 50_000
PAPER_BASELINE_USD = 18_420
PAPER_OPTIMISED_USD = 3_980


def test_the_papers_saving_is_78_4_percent() -> None:
    # 1 - 3,980 / 18,420 = 14,440 / 18,420 = 0.78393 → 78.4%
    assert saving(PAPER_BASELINE_USD, PAPER_OPTIMISED_USD) == pytest.approx(0.784, abs=5e-4)


def test_the_papers_baseline_per_query() -> None:
    # 50,000 × 30 = 1.5M queries/month; 18,420 / 1.5M = $0.01228 per query (exact: the paper's
    # month is 30 days); optimised 3,980 / 1.5M = $0.0026533 per query
    queries = PAPER_QUERIES_PER_DAY * 30
    assert PAPER_BASELINE_USD / queries == pytest.approx(0.01228)
    assert PAPER_OPTIMISED_USD / queries == pytest.approx(0.0026533, rel=1e-4)
    # Eq. (1) at any token mix costing $0.01228 gives the baseline month back, e.g. 1,228 input
    # tokens at $10/1M (an equivalent input, not Table I's): 1.5M × 1228 × 10 / 1e6 = 18,420
    assert monthly_cost(PAPER_QUERIES_PER_DAY, 1228, 0, 10.0, 0.0) == pytest.approx(18_420)
