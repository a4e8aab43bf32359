"""The cost model: the paper's Eq. (1) and the figures frugal derives from it.

    C(q) = C_in(q) + C_out(q) + C_retr(q) + C_infra(q)          (Singu et al., Eq. 1)

A request to an external API pays C_in and C_out per token. A request to a self-hosted endpoint
pays C_infra, which frugal measures per endpoint as $/h (GPUs × $/GPU-hour of each replica's
capacity type) and spreads over the tokens served as $/1M tokens. Budgets compare the $/h and
the projected month against the endpoint's limits.

Everything here is pure: prices, replicas, throughput and the time come in as arguments, so the
operator, the simulator and the tests compute the same figures from the same inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from frugal.api.base import CapacityType
from frugal.api.endpoint import Budget
from frugal.api.routing import ExternalTier
from frugal.catalog.gpus import GpuType

TOKENS_PER_PRICE_UNIT = 1_000_000
"""Token prices are quoted in US dollars per million tokens."""
SECONDS_PER_HOUR = 3600
DAYS_PER_MONTH = 30
"""Month length for workload estimates (calendar months are used only for budgets)."""


def _check_non_negative(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0:  # the negation also refuses NaN
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")


# --- Eq. (1) per request ----------------------------------------------------------------------


@dataclass(frozen=True)
class RequestCost:
    """One request's cost, term by term of Eq. (1), in US dollars."""

    input_usd: float
    output_usd: float
    retrieval_usd: float = 0.0
    infra_usd: float = 0.0

    @property
    def total(self) -> float:
        """C(q), the sum of the four terms."""
        return self.input_usd + self.output_usd + self.retrieval_usd + self.infra_usd


def request_cost(
    tokens_in: float,
    tokens_out: float,
    price_in_per_1m: float,
    price_out_per_1m: float,
    *,
    retrieval_usd: float = 0.0,
    infra_usd: float = 0.0,
) -> RequestCost:
    """Eq. (1) for one request; token counts may be averages, hence floats."""
    _check_non_negative(
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        price_in_per_1m=price_in_per_1m,
        price_out_per_1m=price_out_per_1m,
        retrieval_usd=retrieval_usd,
        infra_usd=infra_usd,
    )
    return RequestCost(
        input_usd=tokens_in * price_in_per_1m / TOKENS_PER_PRICE_UNIT,
        output_usd=tokens_out * price_out_per_1m / TOKENS_PER_PRICE_UNIT,
        retrieval_usd=retrieval_usd,
        infra_usd=infra_usd,
    )


# --- external tiers (priced per token) --------------------------------------------------------


@dataclass(frozen=True)
class TierCost:
    """What one average request costs on a per-token tier."""

    per_request_usd: float

    @property
    def per_1k_requests_usd(self) -> float:
        """The unit of RoutingPolicy's ``maxCostPer1kRequests`` objective."""
        return self.per_request_usd * 1000


def external_cost(
    tokens_in: float, tokens_out: float, price_in_per_1m: float, price_out_per_1m: float
) -> TierCost:
    """$ per request and per 1k requests on an API priced per token (C_in + C_out only)."""
    cost = request_cost(tokens_in, tokens_out, price_in_per_1m, price_out_per_1m)
    return TierCost(per_request_usd=cost.total)


def external_tier_cost(tier: ExternalTier, tokens_in: float, tokens_out: float) -> TierCost:
    """:func:`external_cost` at the prices declared on a RoutingPolicy's external tier."""
    return external_cost(tokens_in, tokens_out, tier.input_price_per_1m, tier.output_price_per_1m)


# --- self-hosted endpoints (C_infra) ----------------------------------------------------------


def endpoint_hourly_usd_at(
    replicas: Mapping[CapacityType, int],
    gpus_per_replica: int,
    prices: Mapping[CapacityType, float],
) -> float:
    """$/h of an endpoint: Σ replicas × GPUs per replica × $/GPU-hour of their capacity type.

    ``prices`` are explicit $/GPU-hour per capacity type, e.g. live spot and on-demand prices
    from the AWS adapter. A capacity type without replicas needs no price, so a missing live
    spot price does not block costing an endpoint that runs no spot replicas.
    """
    if gpus_per_replica < 0:
        raise ValueError(f"gpus_per_replica must be non-negative, got {gpus_per_replica}")
    total = 0.0
    for capacity, count in replicas.items():
        if count < 0:
            raise ValueError(f"replica count for {capacity} must be non-negative, got {count}")
        if count == 0:
            continue
        price = prices.get(capacity)
        if price is None:
            raise ValueError(f"no $/GPU-hour for {capacity} capacity, which has {count} replicas")
        _check_non_negative(**{f"price of {capacity}": price})
        total += count * gpus_per_replica * price
    return total


def endpoint_hourly_usd(
    replicas: Mapping[CapacityType, int], gpus_per_replica: int, gpu: GpuType
) -> float:
    """$/h of an endpoint at the catalog prices of its GPU type.

    Reserved replicas are charged at the amortised commitment price the catalog holds: the
    money is spent whether or not the GPUs are used, so counting them as free would make a
    reserved endpoint look cheaper than it is and hide idle reservations.
    """
    prices = {capacity: gpu.price(capacity) for capacity in CapacityType}
    return endpoint_hourly_usd_at(replicas, gpus_per_replica, prices)


def cost_per_million_tokens(hourly_usd: float, tokens_per_second: float | None) -> float | None:
    """US dollars per million tokens served: $/h ÷ tokens/h, idle time included.

    Idle time is included because GPUs are paid for whether they serve or not: an endpoint at
    10% load really costs ten times as much per token as at full load, and that is the figure
    that says "scale to zero" or "move this traffic to a cheaper tier".

    None - absent, not 0 and not infinity - when no tokens were served (tokens/s None, zero,
    negative, not finite, or so small that the quotient overflows). Zero would claim the tokens
    were free; infinity poisons averages and comparisons and cannot be written to a JSON status.
    Absent is what every policy reads as "no signal, decide nothing" (fail-static), and the
    status shows the field as unset.
    """
    _check_non_negative(hourly_usd=hourly_usd)
    if tokens_per_second is None or not math.isfinite(tokens_per_second):
        return None
    if tokens_per_second <= 0:
        return None
    per_million = hourly_usd / (tokens_per_second * SECONDS_PER_HOUR) * TOKENS_PER_PRICE_UNIT
    return per_million if math.isfinite(per_million) else None  # a subnormal rate overflows


# --- budgets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetStatus:
    """An endpoint's spend against its budget, for the BudgetExceeded condition and status."""

    hourly_usd: float
    """The current spend rate."""
    projected_month_usd: float
    """Month-to-date plus the current rate until the end of the calendar month (UTC)."""
    hourly_burn: float | None
    """Spend rate ÷ hourlyUSD; None without an hourly budget."""
    monthly_burn: float | None
    """Projected month ÷ monthlyUSD; None without a monthly budget."""
    exceeded: bool
    code: str
    """One CamelCase word for the condition reason: NoBudget, WithinBudget, OverHourlyBudget,
    OverMonthlyBudget or OverBudget (both)."""
    reason: str
    """A sentence for people."""

    @property
    def burn(self) -> float | None:
        """The worse of the two burn ratios (1 = exactly on budget), for ``status.cost``."""
        burns = [b for b in (self.hourly_burn, self.monthly_burn) if b is not None]
        return max(burns) if burns else None


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware; budgets run on UTC calendar months")
    return now.astimezone(UTC)


def hours_left_in_month(now: datetime) -> float:
    """Hours from ``now`` to the start of the next calendar month, in UTC."""
    now = _utc(now)
    if now.month == 12:
        next_month = datetime(now.year + 1, 1, 1, tzinfo=UTC)
    else:
        next_month = datetime(now.year, now.month + 1, 1, tzinfo=UTC)
    return (next_month - now).total_seconds() / SECONDS_PER_HOUR


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def budget_status(
    hourly_usd: float, budget: Budget | None, month_to_date_usd: float, now: datetime
) -> BudgetStatus:
    """Whether the endpoint is over its hourly budget or on course to overrun its month.

    The month is projected at the *current* rate rather than extrapolated from month-to-date,
    because the current rate is what the operator and the user can change: a scale-down made an
    hour ago should clear the condition now, not at the end of the month. Exactly on budget is
    not over it.
    """
    _check_non_negative(hourly_usd=hourly_usd, month_to_date_usd=month_to_date_usd)
    hours_left = hours_left_in_month(now)
    projected = month_to_date_usd + hourly_usd * hours_left
    hourly_limit = budget.hourly_usd if budget else None
    monthly_limit = budget.monthly_usd if budget else None
    hourly_burn = hourly_usd / hourly_limit if hourly_limit else None
    monthly_burn = projected / monthly_limit if monthly_limit else None
    over_hourly = hourly_limit is not None and hourly_usd > hourly_limit
    over_monthly = monthly_limit is not None and projected > monthly_limit

    hourly_text = (
        f"{_usd(hourly_usd)}/h against an hourly budget of {_usd(hourly_limit)}/h "
        f"({hourly_burn:.0%})"
        if hourly_limit and hourly_burn is not None
        else ""
    )
    monthly_text = (
        f"{_usd(projected)} projected this month ({_usd(month_to_date_usd)} so far + "
        f"{_usd(hourly_usd)}/h for {hours_left:.0f} h left) against a monthly budget of "
        f"{_usd(monthly_limit)} ({monthly_burn:.0%})"
        if monthly_limit and monthly_burn is not None
        else ""
    )
    parts = [text for text in (hourly_text, monthly_text) if text]
    if not parts:
        code, reason = "NoBudget", f"no budget set; spending {_usd(hourly_usd)}/h"
    elif over_hourly and over_monthly:
        code, reason = "OverBudget", "over budget: " + "; ".join(parts)
    elif over_hourly:
        code, reason = "OverHourlyBudget", "over the hourly budget: " + "; ".join(parts)
    elif over_monthly:
        code, reason = "OverMonthlyBudget", "on course to overrun the month: " + "; ".join(parts)
    else:
        code, reason = "WithinBudget", "within budget: " + "; ".join(parts)
    return BudgetStatus(
        hourly_usd=hourly_usd,
        projected_month_usd=projected,
        hourly_burn=hourly_burn,
        monthly_burn=monthly_burn,
        exceeded=over_hourly or over_monthly,
        code=code,
        reason=reason,
    )


# --- workloads (for the simulator) ------------------------------------------------------------


def monthly_cost(
    requests_per_day: float,
    avg_tokens_in: float,
    avg_tokens_out: float,
    price_in_per_1m: float,
    price_out_per_1m: float,
    *,
    cache_hit_rate: float = 0.0,
    days: float = DAYS_PER_MONTH,
    retrieval_usd: float = 0.0,
    fixed_usd: float = 0.0,
) -> float:
    """A workload's spend over ``days`` on a per-token tier: Eq. (1) × the requests that miss.

    Cache hits are counted as free, retrieval included, because frugal's gateway answers them
    before retrieval or a model call; what the cache itself costs belongs in ``fixed_usd``
    (infrastructure for the period, e.g. the cache and the gateway), as does any self-hosted
    C_infra. ``retrieval_usd`` is C_retr per request that misses the cache.
    """
    _check_non_negative(requests_per_day=requests_per_day, days=days, fixed_usd=fixed_usd)
    if not 0 <= cache_hit_rate <= 1:
        raise ValueError(f"cache_hit_rate must lie in [0, 1], got {cache_hit_rate!r}")
    per_request = request_cost(
        avg_tokens_in,
        avg_tokens_out,
        price_in_per_1m,
        price_out_per_1m,
        retrieval_usd=retrieval_usd,
    ).total
    model_calls = requests_per_day * days * (1 - cache_hit_rate)
    return model_calls * per_request + fixed_usd


def saving(baseline_usd: float, optimised_usd: float) -> float:
    """The fraction of the baseline saved (0.784 = 78.4%), the paper's headline figure."""
    if not baseline_usd > 0:
        raise ValueError(f"baseline_usd must be positive, got {baseline_usd!r}")
    _check_non_negative(optimised_usd=optimised_usd)
    return 1 - optimised_usd / baseline_usd
