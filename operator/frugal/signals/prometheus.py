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
from dataclasses import dataclass
from datetime import datetime

from prometheus_api_client import PrometheusConnect
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from urllib3.util.retry import Retry

from frugal.controller.metrics import PROMETHEUS_QUERIES
from frugal.policy.reroute import TierSignals
from frugal.policy.scale import LoadSignals

log = logging.getLogger("frugal.signals")


class Queries(BaseModel):
    """PromQL templates. ``{sel}`` is the engine selector, ``{window}`` a range, ``{policy}`` and
    ``{tier}`` name a RoutingPolicy tier (gateway metrics)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    engine_selector: str = 'model_name="{served_name}"'
    """Labels that pick one endpoint's engine series; add namespace="{namespace}" when your
    Prometheus attaches it."""
    in_flight: str = (
        "sum(vllm:num_requests_running{{{sel}}}) + sum(vllm:num_requests_waiting{{{sel}}})"
    )
    requests: str = (
        "sum(increase(vllm:request_success_total{{{sel}}}[{window}]))"
        ' + (sum(increase(frugal_gateway_requests_total{{endpoint="{name}",'
        'namespace="{namespace}"}}[{window}])) or vector(0))'
    )
    tokens_per_second: str = (
        "sum(rate(vllm:prompt_tokens_total{{{sel}}}[5m]))"
        " + sum(rate(vllm:generation_tokens_total{{{sel}}}[5m]))"
    )
    p95_latency: str = (
        "histogram_quantile(0.95, sum by (le) "
        "(rate(vllm:e2e_request_latency_seconds_bucket{{{sel}}}[5m])))"
    )
    ttft_p95: str = (
        "histogram_quantile(0.95, sum by (le) "
        "(rate(vllm:time_to_first_token_seconds_bucket{{{sel}}}[5m])))"
    )
    kv_cache_usage: str = "avg(vllm:kv_cache_usage_perc{{{sel}}})"
    prefix_cache_hit_rate: str = (
        "sum(rate(vllm:prefix_cache_hits_total{{{sel}}}[5m]))"
        " / sum(rate(vllm:prefix_cache_queries_total{{{sel}}}[5m]))"
    )
    request_rate: str = "sum(rate(vllm:request_success_total{{{sel}}}[1m]))"
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
    waiting_at_gateway: str = (
        'sum(frugal_gateway_waiting{{endpoint="{name}",namespace="{namespace}"}})'
    )
    tier_quality: str = (
        'avg_over_time(frugal_gateway_quality_ratio{{policy="{policy}",namespace="{namespace}",'
        'tier="{tier}"}}[{window}])'
    )
    tier_cost_per_1k: str = (
        '1000 * sum(rate(frugal_gateway_cost_usd_total{{policy="{policy}",namespace="{namespace}",'
        'tier="{tier}"}}[{window}])) / sum(rate(frugal_gateway_requests_total{{policy="{policy}",'
        'namespace="{namespace}",tier="{tier}"}}[{window}]))'
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


class Signals:
    """Typed signal queries against one Prometheus."""

    def __init__(self, settings: PrometheusSettings) -> None:
        self.settings = settings
        self.queries = settings.queries
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

    def scalar(self, promql: str) -> float | None:
        """One number, or None when the result is empty or not a number."""
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
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) or math.isinf(value) else value

    def load(self, *, name: str, namespace: str, served_name: str, idle_after: str) -> LoadSignals:
        q = self.queries
        sel = q.engine_selector.format(served_name=served_name, namespace=namespace, name=name)
        fmt = {"sel": sel, "name": name, "namespace": namespace, "window": idle_after}
        waiting = self.scalar(q.waiting_at_gateway.format(**fmt))
        return LoadSignals(
            in_flight=self.scalar(q.in_flight.format(**fmt)),
            requests_in_idle_window=self.scalar(q.requests.format(**fmt)),
            wake_requested=bool(waiting and waiting > 0),
        )

    def snapshot(self, *, name: str, namespace: str, served_name: str) -> dict[str, float]:
        """Context for a decision's record: latency quantiles, KV usage, prefix hits, rate.

        Queried only when a decision is made, so a steady fleet costs Prometheus little.
        """
        q = self.queries
        sel = q.engine_selector.format(served_name=served_name, namespace=namespace, name=name)
        out = {}
        for key, template in (
            ("requestsPerSecond", q.request_rate),
            ("p95LatencySeconds", q.p95_latency),
            ("ttftP95Seconds", q.ttft_p95),
            ("kvCacheUsage", q.kv_cache_usage),
            ("prefixCacheHitRate", q.prefix_cache_hit_rate),
        ):
            value = self.scalar(template.format(sel=sel))
            if value is not None:
                out[key] = round(value, 4)
        return out

    def tokens_per_second(self, *, name: str, namespace: str, served_name: str) -> float | None:
        q = self.queries
        sel = q.engine_selector.format(served_name=served_name, namespace=namespace, name=name)
        return self.scalar(q.tokens_per_second.format(sel=sel))

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

    def tier(self, *, policy: str, namespace: str, tier: str) -> TierSignals:
        q = self.queries
        fmt = {
            "policy": policy,
            "namespace": namespace,
            "tier": tier,
            "window": self.settings.quality_window,
        }
        return TierSignals(
            quality=self.scalar(q.tier_quality.format(**fmt)),
            cost_per_1k=self.scalar(q.tier_cost_per_1k.format(**fmt)),
        )
