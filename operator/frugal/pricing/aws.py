"""AWS prices and capacity reservations through boto3 (shell).

Three reads, each a thin wrapper that returns plain data:

- spot prices: ``ec2.describe_spot_price_history``, the latest price per instance type and zone,
  reduced to the lowest zone (see :func:`spot_prices` for why);
- on-demand list prices: the Pricing API's ``get_products``, whose PriceList entries are JSON
  *strings* to be parsed;
- capacity reservations (ODCRs and capacity blocks): ``ec2.describe_capacity_reservations``.

:class:`PriceRefresher` turns instance prices into $/GPU-hour per catalog GPU, refreshes on an
interval the caller drives by passing ``now`` (nothing here sleeps or reads the clock) and keeps
the last good prices when AWS fails. Clients are passed in, so tests stub real clients with
botocore's Stubber and production passes ``boto3.client("ec2", region_name=...)`` and
``boto3.client("pricing", region_name="us-east-1")``.

Reserved $/GPU-hour is not read here: capacity reservations bill at the on-demand rate and
discounts come from savings plans the account buys, so the amortised reserved price stays a
catalog/settings figure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from frugal.api.base import CapacityType
from frugal.catalog.gpus import GpuType

log = logging.getLogger("frugal.pricing")

Client = Any
"""A boto3 client (boto3 ships no static types for them)."""

PRICING_API_REGION = "us-east-1"
"""The Pricing API is served from a few regions only; its data covers all regions."""
SPOT_PRODUCT = "Linux/UNIX"

GPUS_PER_INSTANCE: Mapping[str, int] = {
    # g4dn: NVIDIA T4
    **dict.fromkeys(
        ("g4dn.xlarge", "g4dn.2xlarge", "g4dn.4xlarge", "g4dn.8xlarge", "g4dn.16xlarge"), 1
    ),
    "g4dn.12xlarge": 4,
    "g4dn.metal": 8,
    # g5: NVIDIA A10G
    **dict.fromkeys(("g5.xlarge", "g5.2xlarge", "g5.4xlarge", "g5.8xlarge", "g5.16xlarge"), 1),
    "g5.12xlarge": 4,
    "g5.24xlarge": 4,
    "g5.48xlarge": 8,
    # g6: NVIDIA L4
    **dict.fromkeys(("g6.xlarge", "g6.2xlarge", "g6.4xlarge", "g6.8xlarge", "g6.16xlarge"), 1),
    "g6.12xlarge": 4,
    "g6.24xlarge": 4,
    "g6.48xlarge": 8,
    # g6e: NVIDIA L40S
    **dict.fromkeys(("g6e.xlarge", "g6e.2xlarge", "g6e.4xlarge", "g6e.8xlarge", "g6e.16xlarge"), 1),
    "g6e.12xlarge": 4,
    "g6e.24xlarge": 4,
    "g6e.48xlarge": 8,
    # p4d: A100 40 GB; p4de: A100 80 GB; p5: H100
    "p4d.24xlarge": 8,
    "p4de.24xlarge": 8,
    "p5.48xlarge": 8,
}
"""GPUs in each instance type, to turn $/instance-hour into $/GPU-hour."""

AWS_ERRORS = (BotoCoreError, ClientError, KeyError, TypeError, ValueError)
"""What a failed read raises: the API's errors, and parse errors from an unexpected answer."""


def gpus_per_instance(instance_type: str) -> int | None:
    """GPUs in an instance type; None when frugal does not know the type."""
    return GPUS_PER_INSTANCE.get(instance_type)


def per_gpu_hour(instance_usd: float, instance_type: str) -> float | None:
    """$/GPU-hour from $/instance-hour; None for an unknown instance type (never a guess)."""
    gpus = gpus_per_instance(instance_type)
    return instance_usd / gpus if gpus else None


# --- spot -------------------------------------------------------------------------------------


def spot_prices(
    ec2: Client,
    instance_types: Sequence[str],
    now: datetime,
    *,
    zones: Collection[str] | None = None,
) -> dict[str, float]:
    """Current Linux spot price per instance type, $ per instance-hour, lowest over zones.

    With ``StartTime=now`` the history holds the price in effect at ``now`` for every zone and
    type (and any change since); the latest record per (type, zone) is the current price.

    The lowest zone is taken because a spot node pool spanning zones (Karpenter's
    price-capacity-optimized strategy, an EKS node group over several subnets) launches where
    capacity is cheapest and available, so that is the price a flexible fleet tends to pay; the
    figure ranks capacity types, it is not an invoice. The cheapest zone may lack capacity, so
    pass ``zones`` to count only the zones the cluster's nodes can use. Types without a record
    are left out, never priced at zero.
    """
    if not instance_types:
        return {}
    latest: dict[tuple[str, str], tuple[datetime, float]] = {}
    pages = ec2.get_paginator("describe_spot_price_history").paginate(
        InstanceTypes=list(instance_types),
        ProductDescriptions=[SPOT_PRODUCT],
        StartTime=now,
    )
    for page in pages:
        for item in page.get("SpotPriceHistory", []):
            zone = item["AvailabilityZone"]
            if zones is not None and zone not in zones:
                continue
            if item.get("ProductDescription", SPOT_PRODUCT) != SPOT_PRODUCT:
                continue
            key = (item["InstanceType"], zone)
            record = (item["Timestamp"], float(item["SpotPrice"]))
            if key not in latest or record[0] > latest[key][0]:
                latest[key] = record
    out: dict[str, float] = {}
    for (instance_type, _zone), (_when, price) in latest.items():
        out[instance_type] = min(price, out.get(instance_type, price))
    return out


# --- on-demand --------------------------------------------------------------------------------


def on_demand_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    """Pricing API filters that pin one SKU: shared-tenancy Linux, no pre-installed software,
    the price of a running instance (``capacitystatus=Used``, not unused reservations)."""
    terms = {
        "instanceType": instance_type,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
    }
    return [{"Type": "TERM_MATCH", "Field": name, "Value": value} for name, value in terms.items()]


@dataclass(frozen=True)
class OnDemandOffer:
    """One parsed PriceList entry."""

    instance_type: str
    usd_per_hour: float
    usage_type: str = ""
    market_option: str | None = None


def parse_price_list_item(text: str) -> OnDemandOffer | None:
    """The hourly on-demand USD price of one PriceList entry (a JSON string).

    The price sits at ``terms.OnDemand.<offer>.priceDimensions.<rate>.pricePerUnit.USD``.
    None when the entry has no hourly on-demand USD price (e.g. a reserved-only product).
    """
    item = json.loads(text)
    attributes = item["product"]["attributes"]
    prices = [
        float(dimension["pricePerUnit"]["USD"])
        for term in item.get("terms", {}).get("OnDemand", {}).values()
        for dimension in term.get("priceDimensions", {}).values()
        if dimension.get("unit") == "Hrs" and "USD" in dimension.get("pricePerUnit", {})
    ]
    if not prices:
        return None
    return OnDemandOffer(
        instance_type=attributes["instanceType"],
        usd_per_hour=max(prices),
        usage_type=attributes.get("usagetype", ""),
        market_option=attributes.get("marketoption"),
    )


def _pick_offer(instance_type: str, offers: list[OnDemandOffer]) -> float | None:
    """The on-demand price among the offers the filters returned for one instance type."""
    usable = [
        o
        for o in offers
        if o.instance_type == instance_type
        and o.usd_per_hour > 0
        and o.market_option in {None, "OnDemand"}
        and (not o.usage_type or "BoxUsage" in o.usage_type)
    ]
    if not usable:
        return None
    prices = sorted({o.usd_per_hour for o in usable})
    if len(prices) > 1:
        # The filters should pin one SKU; if not, the highest does not under-state the fallback.
        log.warning("several on-demand prices for %s: %s; using the highest", instance_type, prices)
    return prices[-1]


def on_demand_prices(
    pricing: Client, instance_types: Sequence[str], region: str
) -> dict[str, float]:
    """On-demand Linux list price per instance type in ``region``, $ per instance-hour.

    One ``get_products`` query per instance type (every page read); types the Pricing API does
    not list in the region are left out.
    """
    out: dict[str, float] = {}
    paginator = pricing.get_paginator("get_products")
    for instance_type in instance_types:
        pages = paginator.paginate(
            ServiceCode="AmazonEC2", Filters=on_demand_filters(instance_type, region)
        )
        offers = [
            offer
            for page in pages
            for text in page.get("PriceList", [])
            if (offer := parse_price_list_item(text)) is not None
        ]
        price = _pick_offer(instance_type, offers)
        if price is None:
            log.info("no on-demand price for %s in %s", instance_type, region)
        else:
            out[instance_type] = price
    return out


# --- capacity reservations --------------------------------------------------------------------


@dataclass(frozen=True)
class CapacityReservation:
    """An active EC2 capacity reservation (ODCR or capacity block)."""

    id: str
    instance_type: str
    availability_zone: str
    total_instances: int
    available_instances: int
    tags: Mapping[str, str] = field(default_factory=dict)
    instance_match_criteria: str = "open"
    """open: any matching instance uses it; targeted: only instances that name it."""
    reservation_type: str = "default"
    """default (ODCR) or capacity-block."""
    end_date: datetime | None = None

    @property
    def gpus(self) -> int | None:
        """GPUs the reservation holds; None for an instance type frugal does not know."""
        per_instance = gpus_per_instance(self.instance_type)
        return self.total_instances * per_instance if per_instance else None


def capacity_reservations(
    ec2: Client, *, instance_types: Collection[str] | None = None
) -> list[CapacityReservation]:
    """Active capacity reservations of the account in the client's region, by id."""
    filters = [{"Name": "state", "Values": ["active"]}]
    if instance_types:
        filters.append({"Name": "instance-type", "Values": sorted(instance_types)})
    out = [
        CapacityReservation(
            id=item["CapacityReservationId"],
            instance_type=item["InstanceType"],
            availability_zone=item["AvailabilityZone"],
            total_instances=item["TotalInstanceCount"],
            available_instances=item["AvailableInstanceCount"],
            tags={tag["Key"]: tag["Value"] for tag in item.get("Tags", [])},
            instance_match_criteria=item.get("InstanceMatchCriteria", "open"),
            reservation_type=item.get("ReservationType", "default"),
            end_date=item.get("EndDate"),
        )
        for page in ec2.get_paginator("describe_capacity_reservations").paginate(Filters=filters)
        for item in page.get("CapacityReservations", [])
    ]
    return sorted(out, key=lambda r: r.id)


# --- prices per GPU and the refresher ---------------------------------------------------------


@dataclass(frozen=True)
class PriceSnapshot:
    """Instance prices from AWS ($ per instance-hour) and when each kind was last fetched."""

    on_demand: Mapping[str, float] = field(default_factory=dict)
    spot: Mapping[str, float] = field(default_factory=dict)
    on_demand_as_of: datetime | None = None
    spot_as_of: datetime | None = None

    def instance_price(self, instance_type: str, capacity: CapacityType) -> float | None:
        """$ per instance-hour; None for reserved (a catalog figure) or an unknown price."""
        if capacity is CapacityType.ON_DEMAND:
            return self.on_demand.get(instance_type)
        if capacity is CapacityType.SPOT:
            return self.spot.get(instance_type)
        return None

    def gpu_hour(self, instance_type: str, capacity: CapacityType) -> float | None:
        """$/GPU-hour of one instance type on one capacity type."""
        price = self.instance_price(instance_type, capacity)
        return None if price is None else per_gpu_hour(price, instance_type)

    def gpu_prices(self, gpus: Iterable[GpuType]) -> dict[str, dict[CapacityType, float]]:
        """Cheapest $/GPU-hour per catalog GPU and capacity type, over its instance types.

        The cheapest size matches how the catalog states prices (per GPU, from the cheapest
        way to buy one). GPUs or capacity types without a known price are left out.
        """
        out: dict[str, dict[CapacityType, float]] = {}
        for gpu in gpus:
            for capacity in (CapacityType.ON_DEMAND, CapacityType.SPOT):
                prices = [
                    p for it in gpu.instance_types if (p := self.gpu_hour(it, capacity)) is not None
                ]
                if prices:
                    out.setdefault(gpu.name, {})[capacity] = min(prices)
        return out

    def gpu_overrides(self, gpus: Iterable[GpuType]) -> dict[str, dict[str, float]]:
        """The same prices as ``Settings.gpu_overrides`` patches (``{l4: {spot: 0.31}}``)."""
        keys = {CapacityType.ON_DEMAND: "on_demand", CapacityType.SPOT: "spot"}
        return {
            name: {keys[capacity]: price for capacity, price in prices.items()}
            for name, prices in self.gpu_prices(gpus).items()
        }


def catalog_instance_types(gpus: Iterable[GpuType]) -> list[str]:
    """The catalog's instance types whose GPU count frugal knows, sorted."""
    return sorted({it for gpu in gpus for it in gpu.instance_types if gpus_per_instance(it)})


class PriceRefresher:
    """Keeps AWS spot and on-demand prices fresh, and the last good ones when AWS fails.

    The caller drives it (``refresh(now)`` from a timer handler); it refreshes when ``interval``
    has passed since the last attempt, or ``retry_interval`` after a failed one. Spot and
    on-demand are fetched independently, so a missing Pricing API permission does not freeze
    spot prices. A failure is logged and kept in ``last_error``; it never raises.
    """

    def __init__(
        self,
        ec2: Client,
        pricing: Client,
        region: str,
        instance_types: Sequence[str],
        *,
        interval: timedelta = timedelta(hours=1),
        retry_interval: timedelta = timedelta(minutes=5),
        zones: Collection[str] | None = None,
    ) -> None:
        self._ec2 = ec2
        self._pricing = pricing
        self.region = region
        self.instance_types = tuple(instance_types)
        self.interval = interval
        self.retry_interval = retry_interval
        self.zones = zones
        self.snapshot = PriceSnapshot()
        self.last_error: str | None = None
        self.last_attempt: datetime | None = None

    @classmethod
    def for_catalog(
        cls, ec2: Client, pricing: Client, region: str, gpus: Iterable[GpuType], **kwargs: Any
    ) -> PriceRefresher:
        """A refresher for every catalog instance type whose GPU count is known."""
        return cls(ec2, pricing, region, catalog_instance_types(gpus), **kwargs)

    @property
    def as_of(self) -> datetime | None:
        """When the oldest of the prices held was fetched; None before any success."""
        stamps = [t for t in (self.snapshot.on_demand_as_of, self.snapshot.spot_as_of) if t]
        return min(stamps) if stamps else None

    def due(self, now: datetime) -> bool:
        """Whether :meth:`refresh` would call AWS at ``now``."""
        if self.last_attempt is None:
            return True
        wait = self.retry_interval if self.last_error else self.interval
        return now - self.last_attempt >= wait

    def refresh(self, now: datetime, *, force: bool = False) -> bool:
        """Fetch prices if due (or ``force``); True when AWS was called (see ``last_error``)."""
        if not (force or self.due(now)):
            return False
        self.last_attempt = now
        errors: list[str] = []
        snapshot = self.snapshot
        try:
            spot = spot_prices(self._ec2, self.instance_types, now, zones=self.zones)
            snapshot = replace(snapshot, spot=spot, spot_as_of=now)
        except AWS_ERRORS as exc:
            errors.append(f"spot prices: {exc}")
        try:
            on_demand = on_demand_prices(self._pricing, self.instance_types, self.region)
            snapshot = replace(snapshot, on_demand=on_demand, on_demand_as_of=now)
        except AWS_ERRORS as exc:
            errors.append(f"on-demand prices: {exc}")
        self.snapshot = snapshot
        self.last_error = "; ".join(errors) or None
        if self.last_error:
            log.warning(
                "AWS price refresh failed, keeping prices as of %s: %s", self.as_of, self.last_error
            )
        return True

    def gpu_prices(self, gpus: Iterable[GpuType]) -> dict[str, dict[CapacityType, float]]:
        """Cheapest $/GPU-hour per catalog GPU and capacity type, from the last good prices."""
        return self.snapshot.gpu_prices(gpus)
