"""Shell: live signals from Prometheus, via prometheus-api-client.

Every query result is typed and time-stamped. A missing series, an empty result, a NaN or a
failed query is *absent* (None) — never zero — so that no policy scales to zero or reroutes on
data it does not have (fail-static). Queries are templates in settings, so the label names can
follow whatever relabelling the Prometheus in front of them does (e.g. the Prometheus operator's
``namespace``/``pod`` labels).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_api_client import PrometheusConnect
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from urllib3.util.retry import Retry

from frugal.controller.metrics import PROMETHEUS_QUERIES
from frugal.policy.reroute import TierSignals
from frugal.policy.scale import LoadSignals

log = logging.getLogger("frugal.signals")


class Queries(BaseModel):
    """PromQL templates.

    ``{sel}`` is a selector (``engineSelector``, ``gatewaySelector`` or ``tierSelector``),
    ``{window}`` a range, ``{by}`` the labels that tell objects apart. The loops' templates
    (inFlight, requests, gatewayRequests, waitingAtGateway, tokensPerSecond, tierQuality,
    tierCostPer1K) are evaluated once per tick for the whole fleet: ``{sel}`` is then the
    selector's constant matchers only, and ``{by}`` the labels of its templated matchers (those
    written ``label="{field}"``), so a custom template must aggregate ``by ({by})``. A custom
    template without ``{by}`` still works, evaluated once per object with the full selector — at
    the cost of one query per endpoint and tick.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    engine_selector: str = 'model_name="{served_name}"'
    """Labels that pick one endpoint's engine series; add namespace="{namespace}" when your
    Prometheus attaches it. Templated matchers must be equality matchers."""
    gateway_selector: str = 'endpoint="{name}",namespace="{namespace}"'
    """Labels that pick one endpoint's gateway series."""
    tier_selector: str = 'policy="{policy}",namespace="{namespace}",tier="{tier}"'
    """Labels that pick one RoutingPolicy tier's gateway series."""
    in_flight: str = (
        "sum by ({by}) (vllm:num_requests_running{{{sel}}})"
        " + sum by ({by}) (vllm:num_requests_waiting{{{sel}}})"
    )
    requests: str = "sum by ({by}) (increase(vllm:request_success_total{{{sel}}}[{window}]))"
    """Requests the engines served in the idle window; gatewayRequests is added to it."""
    gateway_requests: str = (
        "sum by ({by}) (increase(frugal_gateway_requests_total{{{sel}}}[{window}]))"
    )
    """Requests the gateway saw for the endpoint (including those it held while at zero);
    absent counts as none."""
    tokens_per_second: str = (
        "sum by ({by}) (rate(vllm:prompt_tokens_total{{{sel}}}[5m]))"
        " + sum by ({by}) (rate(vllm:generation_tokens_total{{{sel}}}[5m]))"
    )
    p95_latency: str = (
        "histogram_quantile(0.95, sum by (le, {by}) "
        "(rate(vllm:e2e_request_latency_seconds_bucket{{{sel}}}[5m])))"
    )
    ttft_p95: str = (
        "histogram_quantile(0.95, sum by (le, {by}) "
        "(rate(vllm:time_to_first_token_seconds_bucket{{{sel}}}[5m])))"
    )
    kv_cache_usage: str = "avg by ({by}) (vllm:kv_cache_usage_perc{{{sel}}})"
    prefix_cache_hit_rate: str = (
        "sum by ({by}) (rate(vllm:prefix_cache_hits_total{{{sel}}}[5m]))"
        " / sum by ({by}) (rate(vllm:prefix_cache_queries_total{{{sel}}}[5m]))"
    )
    request_rate: str = "sum by ({by}) (rate(vllm:request_success_total{{{sel}}}[1m]))"

    @model_validator(mode="after")
    def _selectors_group(self) -> Queries:
        """A selector that cannot be grouped fails at start-up, not on every tick."""
        for selector in (self.engine_selector, self.gateway_selector, self.tier_selector):
            grouping(selector)
        return self

    # Counters as they stand (since each gateway replica started): a window's increase() would
    # miss the first samples of series that appear with the first hit.
    cache_requests: str = (
        'sum(frugal_gateway_requests_total{{policy="{policy}",namespace="{namespace}"}})'
    )
    cache_hits: str = (
        'sum(frugal_gateway_cache_hits_total{{policy="{policy}",namespace="{namespace}",'
        'kind="{kind}"}})'
    )
    cache_saved_usd: str = (
        'sum(frugal_gateway_cache_saved_usd_total{{policy="{policy}",namespace="{namespace}"}})'
    )
    semantic_false_hit_rate: str = (
        'max(frugal_gateway_semantic_false_hit_rate{{policy="{policy}",namespace="{namespace}"}})'
    )
    semantic_suspended: str = (
        'max(frugal_gateway_semantic_suspended{{policy="{policy}",namespace="{namespace}"}})'
    )
    waiting_at_gateway: str = "sum by ({by}) (frugal_gateway_waiting{{{sel}}})"
    tier_quality: str = (
        "avg by ({by}) (avg_over_time(frugal_gateway_quality_ratio{{{sel}}}[{window}]))"
    )
    tier_cost_per_1k: str = (
        "1000 * sum by ({by}) (rate(frugal_gateway_cost_usd_total{{{sel}}}[{window}]))"
        " / sum by ({by}) (rate(frugal_gateway_requests_total{{{sel}}}[{window}]))"
    )


class PrometheusSettings(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    url: str | None = None
    """Prometheus base URL; without it, no live signal exists and the loops hold."""
    timeout_seconds: float = Field(default=5.0, gt=0)
    quality_window: str = "5m"
    queries: Queries = Field(default_factory=Queries)


@dataclass(frozen=True)
class Sample:
    value: float
    at: datetime


class PrometheusError(RuntimeError):
    """Prometheus did not answer; every signal of this round is absent."""


# --- pure: from one object's selector to a fleet query, and back to each object's value ------

_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


@dataclass(frozen=True)
class Grouping:
    """How a per-object selector becomes one query for every object, and how to find each
    object's value in its result."""

    selector: str
    """The per-object selector, a template over the object's fields."""
    constant: str
    """Its matchers without a placeholder: the fleet query's selector."""
    labels: tuple[tuple[str, str], ...]
    """(label, value template) of the templated matchers: the fleet query groups by these."""

    @property
    def by(self) -> str:
        return ", ".join(label for label, _ in self.labels)

    def key(self, fields: dict[str, str]) -> tuple[str, ...]:
        """The label values one object's series carry."""
        return tuple(template.format(**fields) for _, template in self.labels)


def grouping(selector: str) -> Grouping:
    """Split a selector such as ``job="vllm",model_name="{served_name}"`` into its constant
    matchers and the labels to group by; a placeholder must sit in an equality matcher."""
    constant: list[str] = []
    labels: list[tuple[str, str]] = []
    pos = 0
    while pos < len(selector.strip()):
        m = _MATCHER.match(selector, pos)
        if m is None:
            raise ValueError(f"cannot parse selector {selector!r} at {selector[pos:]!r}")
        label, op, value = m.groups()
        if "{" in value:
            if op != "=":
                raise ValueError(f'selector {selector!r}: a placeholder needs label="{{field}}"')
            labels.append((label, value))
        else:
            constant.append(f'{label}{op}"{value}"')
        pos = m.end()
    return Grouping(selector, ",".join(constant), tuple(labels))


def by_key(result: list[dict[str, Any]], labels: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    """A vector result as label values → number; NaN and infinities are absent, not numbers."""
    out: dict[tuple[str, ...], float] = {}
    for item in result:
        value = float(item["value"][1])
        if not (math.isnan(value) or math.isinf(value)):
            out[tuple(item["metric"].get(label, "") for label in labels)] = value
    return out


def fleet_form(template: str) -> bool:
    """Whether a template aggregates by ``{by}``, so one query answers for every object."""
    return "{by}" in template


# --- shell ---------------------------------------------------------------------------------


@dataclass
class _Entry:
    at: float
    values: dict[tuple[str, ...], float] | None
    error: PrometheusError | None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Signals:
    """Typed signal queries against one Prometheus.

    The loops' queries are fleet queries, cached for ``max_age`` seconds (a loop's tick): the
    first endpoint whose timer fires after that sends the query, every other endpoint reads its
    value from the same result (1,000 endpoints: 5 queries per tick, not 5,000). A failed query
    is cached for the tick too, so a dead Prometheus is not asked once per endpoint.
    """

    def __init__(self, settings: PrometheusSettings) -> None:
        self.settings = settings
        self.queries = settings.queries
        self.engine = grouping(settings.queries.engine_selector)
        self.gateway = grouping(settings.queries.gateway_selector)
        self.tiers = grouping(settings.queries.tier_selector)
        self._cache: dict[str, _Entry] = {}
        self._cache_lock = threading.Lock()
        self.client = (
            # No retries here: the loops run again on their next tick, and a Prometheus that does
            # not answer within the timeout is absent for this round.
            PrometheusConnect(
                url=settings.url,
                disable_ssl=True,
                timeout=settings.timeout_seconds,
                retry=Retry(total=0),
            )
            if settings.url
            else None
        )

    def _query(self, promql: str) -> list[dict[str, Any]]:
        if self.client is None:
            raise PrometheusError("no Prometheus URL configured")
        try:
            result = self.client.custom_query(
                promql, params={"timeout": f"{self.settings.timeout_seconds:g}s"}
            )
        except Exception as err:  # requests and client errors alike mean "no answer"
            PROMETHEUS_QUERIES.labels("error").inc()
            raise PrometheusError(f"{type(err).__name__}: {err}") from err
        PROMETHEUS_QUERIES.labels("ok").inc()
        return result or []

    def scalar(self, promql: str) -> float | None:
        """One number, or None when the result is empty or not a number."""
        result = self._query(promql)
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) or math.isinf(value) else value

    def fleet(
        self, promql: str, labels: tuple[str, ...], max_age: float
    ) -> dict[tuple[str, ...], float]:
        """The result of a fleet query at most ``max_age`` seconds old; one query in flight."""
        if self.client is None:
            raise PrometheusError("no Prometheus URL configured")
        with self._cache_lock:
            entry = self._cache.setdefault(promql, _Entry(-math.inf, None, None))
        with entry.lock:
            if time.monotonic() - entry.at >= max_age:
                try:
                    entry.values, entry.error = by_key(self._query(promql), labels), None
                except PrometheusError as err:
                    entry.values, entry.error = None, err
                entry.at = time.monotonic()
            if entry.error is not None:
                raise entry.error
            return entry.values or {}

    def value(
        self,
        template: str,
        group: Grouping,
        fields: dict[str, str],
        *,
        max_age: float,
        window: str = "",
    ) -> float | None:
        """One object's value of ``template``: from the fleet query's result when the template
        groups by ``{by}``, otherwise from a query of its own."""
        if not fleet_form(template):
            sel = group.selector.format(**fields)
            return self.scalar(template.format(sel=sel, window=window, by="", **fields))
        promql = template.format(sel=group.constant, by=group.by, window=window)
        labels = tuple(label for label, _ in group.labels)
        return self.fleet(promql, labels, max_age).get(group.key(fields))

    def load(
        self, *, name: str, namespace: str, served_name: str, idle_after: str, max_age: float = 0
    ) -> LoadSignals:
        q = self.queries
        fields = {"name": name, "namespace": namespace, "served_name": served_name}
        at = {"max_age": max_age, "window": idle_after}
        waiting = self.value(q.waiting_at_gateway, self.gateway, fields, **at)
        served = self.value(q.requests, self.engine, fields, **at)
        via_gateway = self.value(q.gateway_requests, self.gateway, fields, **at)
        return LoadSignals(
            in_flight=self.value(q.in_flight, self.engine, fields, **at),
            requests_in_idle_window=None if served is None else served + (via_gateway or 0.0),
            wake_requested=bool(waiting and waiting > 0),
        )

    def snapshot(self, *, name: str, namespace: str, served_name: str) -> dict[str, float]:
        """Context for a decision's record: latency quantiles, KV usage, prefix hits, rate.

        Queried per endpoint, only when a decision is made, so a steady fleet costs nothing.
        """
        q = self.queries
        fields = {"name": name, "namespace": namespace, "served_name": served_name}
        sel = self.engine.selector.format(**fields)
        out = {}
        for key, template in (
            ("requestsPerSecond", q.request_rate),
            ("p95LatencySeconds", q.p95_latency),
            ("ttftP95Seconds", q.ttft_p95),
            ("kvCacheUsage", q.kv_cache_usage),
            ("prefixCacheHitRate", q.prefix_cache_hit_rate),
        ):
            value = self.scalar(template.format(sel=sel, by=self.engine.by, **fields))
            if value is not None:
                out[key] = round(value, 4)
        return out

    def tokens_per_second(
        self, *, name: str, namespace: str, served_name: str, max_age: float = 0
    ) -> float | None:
        fields = {"name": name, "namespace": namespace, "served_name": served_name}
        return self.value(self.queries.tokens_per_second, self.engine, fields, max_age=max_age)

    def cache(self, *, policy: str, namespace: str) -> dict[str, float]:
        """A CachePolicy's figures from the gateway's metrics; absent ones are left out."""
        q = self.queries
        fmt = {"policy": policy, "namespace": namespace}
        out: dict[str, float] = {}
        total = self.scalar(q.cache_requests.format(**fmt))
        if total:
            for kind in ("exact", "semantic"):
                hits = self.scalar(q.cache_hits.format(kind=kind, **fmt))
                if hits is not None:
                    out[kind] = hits / total
        for key, template in (
            ("savedUSD", q.cache_saved_usd),
            ("falseHitRate", q.semantic_false_hit_rate),
            ("semanticSuspended", q.semantic_suspended),
        ):
            value = self.scalar(template.format(**fmt))
            if value is not None:
                out[key] = value
        return out

    def tier(self, *, policy: str, namespace: str, tier: str, max_age: float = 0) -> TierSignals:
        q = self.queries
        fields = {"policy": policy, "namespace": namespace, "tier": tier}
        at = {"max_age": max_age, "window": self.settings.quality_window}
        return TierSignals(
            quality=self.value(q.tier_quality, self.tiers, fields, **at),
            cost_per_1k=self.value(q.tier_cost_per_1k, self.tiers, fields, **at),
        )
