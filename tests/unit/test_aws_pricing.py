"""AWS prices and capacity reservations: real boto3 clients under botocore's Stubber.

No network: the Stubber answers every call, checks each request against ``expected_params``
and both request and response against the service model, and fails on any unstubbed call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from frugal.api.base import CapacityType
from frugal.catalog.gpus import DEFAULT_GPUS
from frugal.pricing.aws import (
    GPUS_PER_INSTANCE,
    PriceRefresher,
    PriceSnapshot,
    capacity_reservations,
    catalog_instance_types,
    on_demand_filters,
    on_demand_prices,
    parse_price_list_item,
    per_gpu_hour,
    spot_prices,
)
from frugal.settings import Settings

CT = CapacityType
NOW = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
REGION = "us-east-1"
GPUS = {g.name: g for g in DEFAULT_GPUS}
SPOT_PRODUCT = ["Linux/UNIX"]


@pytest.fixture
def session() -> boto3.session.Session:
    # Dummy credentials: the Stubber answers before anything is signed or sent.
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )


@pytest.fixture
def ec2(session: boto3.session.Session) -> Iterator[tuple[Any, Stubber]]:
    client = session.client("ec2", region_name=REGION)
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def pricing(session: boto3.session.Session) -> Iterator[tuple[Any, Stubber]]:
    client = session.client("pricing", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


# --- recorded response shapes -----------------------------------------------------------------


def spot_item(instance_type: str, zone: str, price: str, when: datetime) -> dict[str, Any]:
    zone_ids = {"us-east-1a": "use1-az6", "us-east-1b": "use1-az1", "us-east-1c": "use1-az2"}
    return {
        "AvailabilityZone": zone,
        "AvailabilityZoneId": zone_ids[zone],
        "InstanceType": instance_type,
        "ProductDescription": "Linux/UNIX",
        "SpotPrice": price,
        "Timestamp": when,
    }


def price_list_item(instance_type: str, usd: str, gpus: int, **attributes: str) -> str:
    """One PriceList entry as the Pricing API returns it: a JSON *string*."""
    sku = hashlib.sha1(instance_type.encode()).hexdigest()[:16].upper()
    on_demand, reserved, rate = "JRTCKXETXF", "4NA7Y494T4", "6YS6EN2CT7"
    product = {
        "productFamily": "Compute Instance",
        "attributes": {
            "enhancedNetworkingSupported": "Yes",
            "memory": "16 GiB",
            "vcpu": "4",
            "capacitystatus": "Used",
            "locationType": "AWS Region",
            "instanceFamily": "GPU instance",
            "operatingSystem": "Linux",
            "regionCode": REGION,
            "physicalProcessor": "AMD EPYC 7R32",
            "networkPerformance": "Up to 10 Gigabit",
            "servicename": "Amazon Elastic Compute Cloud",
            "gpu": str(gpus),
            "instanceType": instance_type,
            "tenancy": "Shared",
            "usagetype": f"BoxUsage:{instance_type}",
            "servicecode": "AmazonEC2",
            "licenseModel": "No License required",
            "currentGeneration": "Yes",
            "preInstalledSw": "NA",
            "location": "US East (N. Virginia)",
            "processorArchitecture": "64-bit",
            "marketoption": "OnDemand",
            "operation": "RunInstances",
            "availabilityzone": "NA",
            **attributes,
        },
        "sku": sku,
    }
    hourly = {
        "unit": "Hrs",
        "endRange": "Inf",
        "appliesTo": [],
        "beginRange": "0",
    }
    terms = {
        "OnDemand": {
            f"{sku}.{on_demand}": {
                "priceDimensions": {
                    f"{sku}.{on_demand}.{rate}": {
                        **hourly,
                        "description": f"${usd} per On Demand Linux {instance_type} Instance Hour",
                        "rateCode": f"{sku}.{on_demand}.{rate}",
                        "pricePerUnit": {"USD": usd},
                    }
                },
                "sku": sku,
                "effectiveDate": "2025-06-01T00:00:00Z",
                "offerTermCode": on_demand,
                "termAttributes": {},
            }
        },
        "Reserved": {
            f"{sku}.{reserved}": {
                "priceDimensions": {
                    f"{sku}.{reserved}.{rate}": {
                        **hourly,
                        "description": "Linux/UNIX (Amazon VPC), 1yr No Upfront",
                        "rateCode": f"{sku}.{reserved}.{rate}",
                        "pricePerUnit": {"USD": "0.0010000000"},  # must never be read
                    }
                },
                "sku": sku,
                "effectiveDate": "2025-06-01T00:00:00Z",
                "offerTermCode": reserved,
                "termAttributes": {
                    "LeaseContractLength": "1yr",
                    "OfferingClass": "standard",
                    "PurchaseOption": "No Upfront",
                },
            }
        },
    }
    return json.dumps(
        {
            "product": product,
            "serviceCode": "AmazonEC2",
            "terms": terms,
            "version": "20250701000000",
            "publicationDate": "2025-07-01T00:00:00Z",
        }
    )


def products_params(instance_type: str, token: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "ServiceCode": "AmazonEC2",
        "Filters": [
            {"Type": "TERM_MATCH", "Field": "instanceType", "Value": instance_type},
            {"Type": "TERM_MATCH", "Field": "regionCode", "Value": REGION},
            {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
            {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
            {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
            {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
        ],
    }
    if token:
        params["NextToken"] = token
    return params


def reservation(
    rid: str, instance_type: str, zone: str, total: int, available: int, **extra: Any
) -> dict[str, Any]:
    return {
        "CapacityReservationId": rid,
        "OwnerId": "123456789012",
        "CapacityReservationArn": f"arn:aws:ec2:{REGION}:123456789012:capacity-reservation/{rid}",
        "AvailabilityZoneId": "use1-az6",
        "InstanceType": instance_type,
        "InstancePlatform": "Linux/UNIX",
        "AvailabilityZone": zone,
        "Tenancy": "default",
        "TotalInstanceCount": total,
        "AvailableInstanceCount": available,
        "EbsOptimized": True,
        "EphemeralStorage": False,
        "State": "active",
        "StartDate": datetime(2025, 6, 1, tzinfo=UTC),
        "EndDateType": "unlimited",
        "InstanceMatchCriteria": "targeted",
        "CreateDate": datetime(2025, 6, 1, tzinfo=UTC),
        "Tags": [
            {"Key": "frugal.dev/pool", "Value": "h100-pool"},
            {"Key": "team", "Value": "ml-platform"},
        ],
        "CapacityAllocations": [{"AllocationType": "used", "Count": total - available}],
        "ReservationType": "default",
        **extra,
    }


def stub_spot(stubber: Stubber, instance_types: list[str], pages: list[list[dict]]) -> None:
    params = {
        "InstanceTypes": instance_types,
        "ProductDescriptions": SPOT_PRODUCT,
        "StartTime": NOW,
    }
    for i, items in enumerate(pages):
        response: dict[str, Any] = {"SpotPriceHistory": items}
        if i < len(pages) - 1:
            response["NextToken"] = f"spot-page-{i + 1}"
        expected = {**params, "NextToken": f"spot-page-{i}"} if i else params
        stubber.add_response("describe_spot_price_history", response, expected)


def stub_products(stubber: Stubber, instance_type: str, *pages: list[str]) -> None:
    for i, items in enumerate(pages):
        response: dict[str, Any] = {"FormatVersion": "aws_v1", "PriceList": items}
        if i < len(pages) - 1:
            response["NextToken"] = f"{instance_type}-page-{i + 1}"
        token = f"{instance_type}-page-{i}" if i else None
        stubber.add_response("get_products", response, products_params(instance_type, token))


# --- GPUs per instance ------------------------------------------------------------------------


def test_every_catalog_instance_type_has_a_gpu_count() -> None:
    types = {it for g in DEFAULT_GPUS for it in g.instance_types}
    assert types <= set(GPUS_PER_INSTANCE)
    assert catalog_instance_types(DEFAULT_GPUS) == sorted(types)


def test_per_gpu_hour() -> None:
    assert per_gpu_hour(55.04, "p5.48xlarge") == pytest.approx(6.88)  # 55.04 / 8
    assert per_gpu_hour(5.672, "g5.12xlarge") == pytest.approx(1.418)  # 5.672 / 4
    assert per_gpu_hour(0.526, "g4dn.xlarge") == pytest.approx(0.526)  # one T4
    assert per_gpu_hour(1.0, "m7i.large") is None  # unknown: no guess


# --- spot -------------------------------------------------------------------------------------


def test_spot_latest_per_zone_then_cheapest_zone_across_pages(ec2) -> None:
    client, stubber = ec2
    types = ["g5.xlarge", "g6.xlarge"]
    earlier = NOW - timedelta(hours=3)
    stub_spot(
        stubber,
        types,
        [
            [
                spot_item("g5.xlarge", "us-east-1a", "0.452100", NOW - timedelta(minutes=40)),
                spot_item("g5.xlarge", "us-east-1b", "0.397400", NOW - timedelta(hours=2)),
                # 1c was cheapest three hours ago but has risen since: only its latest counts
                spot_item("g5.xlarge", "us-east-1c", "0.301000", earlier),
            ],
            [
                spot_item("g5.xlarge", "us-east-1c", "0.488000", NOW - timedelta(minutes=5)),
                spot_item("g6.xlarge", "us-east-1a", "0.361500", NOW - timedelta(hours=1)),
            ],
        ],
    )
    assert spot_prices(client, types, NOW) == {
        "g5.xlarge": pytest.approx(0.3974),  # min(0.4521 at 1a, 0.3974 at 1b, 0.488 at 1c)
        "g6.xlarge": pytest.approx(0.3615),
    }


def test_spot_only_counts_the_given_zones(ec2) -> None:
    client, stubber = ec2
    stub_spot(
        stubber,
        ["g5.xlarge"],
        [
            [
                spot_item("g5.xlarge", "us-east-1a", "0.452100", NOW),
                spot_item("g5.xlarge", "us-east-1b", "0.397400", NOW),
            ]
        ],
    )
    prices = spot_prices(client, ["g5.xlarge"], NOW, zones={"us-east-1a", "us-east-1c"})
    assert prices == {"g5.xlarge": pytest.approx(0.4521)}


def test_spot_types_without_records_are_left_out(ec2) -> None:
    client, stubber = ec2
    stub_spot(stubber, ["p5.48xlarge"], [[]])
    assert spot_prices(client, ["p5.48xlarge"], NOW) == {}
    assert spot_prices(client, [], NOW) == {}  # no call at all


# --- on-demand --------------------------------------------------------------------------------


def test_price_list_entry_is_parsed_from_its_json_string() -> None:
    offer = parse_price_list_item(price_list_item("g5.xlarge", "1.0060000000", 1))
    assert offer is not None
    assert (offer.instance_type, offer.usd_per_hour) == ("g5.xlarge", pytest.approx(1.006))
    assert offer.usage_type == "BoxUsage:g5.xlarge"  # reserved terms are ignored


def test_price_list_entry_without_on_demand_terms() -> None:
    item = json.loads(price_list_item("g5.xlarge", "1.0060000000", 1))
    del item["terms"]["OnDemand"]
    assert parse_price_list_item(json.dumps(item)) is None


def test_on_demand_filters_pin_one_sku() -> None:
    assert on_demand_filters("g5.xlarge", REGION) == products_params("g5.xlarge")["Filters"]


def test_on_demand_prices_read_every_page(pricing) -> None:
    client, stubber = pricing
    # the API may answer with an empty page and a token before the product itself
    stub_products(stubber, "g5.xlarge", [], [price_list_item("g5.xlarge", "1.0060000000", 1)])
    stub_products(stubber, "p5.48xlarge", [price_list_item("p5.48xlarge", "55.0400000000", 8)])
    stub_products(stubber, "g6e.24xlarge", [])  # not offered: left out, not zero
    prices = on_demand_prices(client, ["g5.xlarge", "p5.48xlarge", "g6e.24xlarge"], REGION)
    assert prices == {"g5.xlarge": pytest.approx(1.006), "p5.48xlarge": pytest.approx(55.04)}


def test_on_demand_ignores_other_usage_types_and_market_options(pricing) -> None:
    client, stubber = pricing
    stub_products(
        stubber,
        "g6.xlarge",
        [
            price_list_item("g6.xlarge", "0.8048000000", 1),
            price_list_item("g6.xlarge", "0.0000000000", 1, usagetype="UnusedBox:g6.xlarge"),
            price_list_item("g6.xlarge", "9.9900000000", 1, marketoption="CapacityBlock"),
        ],
    )
    assert on_demand_prices(client, ["g6.xlarge"], REGION) == {"g6.xlarge": pytest.approx(0.8048)}


# --- capacity reservations --------------------------------------------------------------------


def test_capacity_reservations_across_pages(ec2) -> None:
    client, stubber = ec2
    params = {"Filters": [{"Name": "state", "Values": ["active"]}]}
    stubber.add_response(
        "describe_capacity_reservations",
        {
            "CapacityReservations": [
                reservation("cr-0b2c3d4e5f6a7b8c9", "p5.48xlarge", "us-east-1a", 2, 0)
            ],
            "NextToken": "cr-page-1",
        },
        params,
    )
    stubber.add_response(
        "describe_capacity_reservations",
        {
            "CapacityReservations": [
                reservation(
                    "cr-0a1b2c3d4e5f6a7b8",
                    "g6.12xlarge",
                    "us-east-1b",
                    4,
                    1,
                    InstanceMatchCriteria="open",
                    ReservationType="capacity-block",
                    EndDateType="limited",
                    EndDate=datetime(2025, 7, 15, 11, 30, tzinfo=UTC),
                    CapacityBlockId="cb-0123456789abcdef0",
                )
            ]
        },
        {**params, "NextToken": "cr-page-1"},
    )
    found = capacity_reservations(client)
    assert [r.id for r in found] == ["cr-0a1b2c3d4e5f6a7b8", "cr-0b2c3d4e5f6a7b8c9"]  # by id
    block, p5 = found
    assert (p5.instance_type, p5.availability_zone) == ("p5.48xlarge", "us-east-1a")
    assert (p5.total_instances, p5.available_instances, p5.gpus) == (2, 0, 16)  # 2 × 8 H100
    assert p5.tags == {"frugal.dev/pool": "h100-pool", "team": "ml-platform"}
    assert (p5.instance_match_criteria, p5.reservation_type, p5.end_date) == (
        "targeted",
        "default",
        None,
    )
    assert (block.reservation_type, block.gpus) == ("capacity-block", 16)  # 4 × 4 L4
    assert block.end_date == datetime(2025, 7, 15, 11, 30, tzinfo=UTC)


def test_capacity_reservations_filtered_by_instance_type(ec2) -> None:
    client, stubber = ec2
    stubber.add_response(
        "describe_capacity_reservations",
        {"CapacityReservations": []},
        {
            "Filters": [
                {"Name": "state", "Values": ["active"]},
                {"Name": "instance-type", "Values": ["g6.12xlarge", "p5.48xlarge"]},
            ]
        },
    )
    assert capacity_reservations(client, instance_types={"p5.48xlarge", "g6.12xlarge"}) == []


# --- $/GPU-hour and the refresher -------------------------------------------------------------

A10G_TYPES = ["g5.xlarge", "g5.12xlarge"]


def stub_a10g_prices(ec2_stubber: Stubber, pricing_stubber: Stubber) -> None:
    stub_spot(
        ec2_stubber,
        A10G_TYPES,
        [
            [
                spot_item("g5.xlarge", "us-east-1a", "0.397400", NOW),
                spot_item("g5.12xlarge", "us-east-1a", "1.701600", NOW),
            ]
        ],
    )
    stub_products(pricing_stubber, "g5.xlarge", [price_list_item("g5.xlarge", "1.0060000000", 1)])
    stub_products(
        pricing_stubber, "g5.12xlarge", [price_list_item("g5.12xlarge", "5.6720000000", 4)]
    )


def test_snapshot_converts_to_dollars_per_gpu_hour() -> None:
    snapshot = PriceSnapshot(
        on_demand={"g5.xlarge": 1.006, "g5.12xlarge": 5.672, "p5.48xlarge": 55.04},
        spot={"g5.12xlarge": 1.7016},
    )
    assert snapshot.gpu_hour("g5.12xlarge", CT.ON_DEMAND) == pytest.approx(1.418)  # 5.672 / 4
    assert snapshot.gpu_hour("g5.12xlarge", CT.SPOT) == pytest.approx(0.4254)  # 1.7016 / 4
    assert snapshot.gpu_hour("g5.xlarge", CT.SPOT) is None  # no spot record
    assert snapshot.gpu_hour("g5.xlarge", CT.RESERVED) is None  # reserved is a catalog figure
    assert snapshot.gpu_prices([GPUS["a10g"], GPUS["h100"], GPUS["t4"]]) == {
        # on-demand: min(1.006 / 1, 5.672 / 4 = 1.418); spot: only g5.12xlarge, 1.7016 / 4
        "a10g": {CT.ON_DEMAND: pytest.approx(1.006), CT.SPOT: pytest.approx(0.4254)},
        "h100": {CT.ON_DEMAND: pytest.approx(6.88)},  # 55.04 / 8; no spot price, no t4 at all
    }


def test_refresher_feeds_the_settings_catalog(ec2, pricing) -> None:
    (ec2_client, ec2_stubber), (pricing_client, pricing_stubber) = ec2, pricing
    stub_a10g_prices(ec2_stubber, pricing_stubber)
    refresher = PriceRefresher(ec2_client, pricing_client, REGION, A10G_TYPES)
    assert refresher.as_of is None
    assert refresher.refresh(NOW)
    assert (refresher.last_error, refresher.as_of) == (None, NOW)
    assert refresher.gpu_prices([GPUS["a10g"]]) == {
        # spot: min(0.3974 / 1, 1.7016 / 4 = 0.4254); on-demand: min(1.006, 5.672 / 4 = 1.418)
        "a10g": {CT.SPOT: pytest.approx(0.3974), CT.ON_DEMAND: pytest.approx(1.006)}
    }
    overrides = refresher.snapshot.gpu_overrides(DEFAULT_GPUS)
    a10g = Settings(gpu_overrides=overrides).catalog()["a10g"]
    assert (a10g.on_demand, a10g.spot) == (pytest.approx(1.006), pytest.approx(0.3974))
    assert a10g.reserved == GPUS["a10g"].reserved  # untouched


def test_refresher_waits_for_its_interval(ec2, pricing) -> None:
    (ec2_client, ec2_stubber), (pricing_client, pricing_stubber) = ec2, pricing
    stub_a10g_prices(ec2_stubber, pricing_stubber)
    refresher = PriceRefresher(
        ec2_client, pricing_client, REGION, A10G_TYPES, interval=timedelta(hours=1)
    )
    assert refresher.refresh(NOW)
    # not due: no AWS call (the Stubber would fail on an unstubbed one)
    assert not refresher.refresh(NOW + timedelta(minutes=59))
    assert refresher.due(NOW + timedelta(hours=1))


def test_refresher_keeps_the_last_good_prices_on_failure(ec2, pricing, caplog) -> None:
    (ec2_client, ec2_stubber), (pricing_client, pricing_stubber) = ec2, pricing
    stub_a10g_prices(ec2_stubber, pricing_stubber)
    refresher = PriceRefresher(
        ec2_client,
        pricing_client,
        REGION,
        A10G_TYPES,
        interval=timedelta(hours=1),
        retry_interval=timedelta(minutes=5),
    )
    refresher.refresh(NOW)
    good = refresher.snapshot

    later = NOW + timedelta(hours=1)
    ec2_stubber.add_client_error(
        "describe_spot_price_history",
        service_error_code="RequestLimitExceeded",
        service_message="Request limit exceeded.",
        http_status_code=503,
    )
    pricing_stubber.add_client_error(
        "get_products",
        service_error_code="AccessDeniedException",
        service_message="User is not authorized to perform: pricing:GetProducts",
        http_status_code=400,
    )
    with caplog.at_level("WARNING", logger="frugal.pricing"):
        assert refresher.refresh(later)
    assert refresher.snapshot == good
    assert refresher.as_of == NOW
    assert "RequestLimitExceeded" in (refresher.last_error or "")
    assert "AccessDeniedException" in (refresher.last_error or "")
    assert "keeping prices as of" in caplog.text
    assert refresher.gpu_prices([GPUS["a10g"]])["a10g"][CT.SPOT] == pytest.approx(0.3974)

    # after a failure it retries sooner than the interval, and recovers
    assert not refresher.due(later + timedelta(minutes=4))
    assert refresher.due(later + timedelta(minutes=5))


def test_refresher_keeps_each_kind_of_price_separately(ec2, pricing) -> None:
    (ec2_client, ec2_stubber), (pricing_client, pricing_stubber) = ec2, pricing
    stub_a10g_prices(ec2_stubber, pricing_stubber)
    refresher = PriceRefresher(ec2_client, pricing_client, REGION, A10G_TYPES)
    refresher.refresh(NOW)

    later = NOW + timedelta(hours=1)
    # spot succeeds with a new price; the Pricing API answers with a broken entry
    params = {
        "InstanceTypes": A10G_TYPES,
        "ProductDescriptions": SPOT_PRODUCT,
        "StartTime": later,
    }
    ec2_stubber.add_response(
        "describe_spot_price_history",
        {"SpotPriceHistory": [spot_item("g5.xlarge", "us-east-1b", "0.350000", later)]},
        params,
    )
    pricing_stubber.add_response(
        "get_products",
        {"FormatVersion": "aws_v1", "PriceList": ['{"product": {"attributes": ']},
        products_params("g5.xlarge"),
    )
    assert refresher.refresh(later)
    snapshot = refresher.snapshot
    assert snapshot.spot == {"g5.xlarge": pytest.approx(0.35)}
    assert snapshot.spot_as_of == later
    assert snapshot.on_demand == {"g5.xlarge": 1.006, "g5.12xlarge": 5.672}  # last good
    assert snapshot.on_demand_as_of == NOW
    assert refresher.as_of == NOW  # the oldest price held
    assert (refresher.last_error or "").startswith("on-demand prices:")


def test_refresher_for_the_catalog_asks_for_every_catalog_instance_type(ec2, pricing) -> None:
    (ec2_client, _), (pricing_client, _) = ec2, pricing
    refresher = PriceRefresher.for_catalog(
        ec2_client, pricing_client, REGION, [GPUS["a10g"], GPUS["h100"]]
    )
    assert refresher.instance_types == ("g5.12xlarge", "g5.48xlarge", "g5.xlarge", "p5.48xlarge")
