"""The gateway's Prometheus metrics: requests, tokens and dollars per tier and cost label.

The operator's loops read three of them (see frugal.signals.prometheus.Queries):
``frugal_gateway_cost_usd_total`` and ``frugal_gateway_requests_total`` by policy, namespace and
tier give each tier's $/1k requests; ``frugal_gateway_quality_ratio`` gives its shadow-measured
quality; ``frugal_gateway_waiting`` by endpoint tells the scaler a request is held at zero.

Cache hits are counted in ``requests_total`` with ``cache`` set and an empty ``tier`` and
``endpoint``: no tier served them, so they must not make a tier look cheaper (or an endpoint
look busy) to the loops. Which tier produced a cached answer is in ``cache_hits_total`` and in
the response's ``x-frugal-tier`` header.

The semantic false-hit budget's metrics (``frugal_gateway_semantic_*``) feed the CachePolicy's
status; like ``requests_total`` and ``cache_hits_total`` their ``policy`` label is the
RoutingPolicy the cache is in front of (its ``targetRef.name``; the endpoint's name for a cache
in front of an InferenceEndpoint).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

COST = ("tenant", "team", "project", "env")
ROUTE = ("policy", "namespace", "tier", "endpoint")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320)


class Labels(NamedTuple):
    """The labels one request is metered under (a tuple: a request builds a few and hashes
    them to find its bound series; a frozen dataclass cost several times more for both)."""

    policy: str = ""
    namespace: str = ""
    tier: str = ""
    endpoint: str = ""
    tenant: str = ""
    team: str = ""
    project: str = ""
    env: str = ""

    def route(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in ROUTE}

    def cost(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in COST}

    def all(self) -> dict[str, str]:
        return self.route() | self.cost()

    def values(self) -> tuple[str, ...]:
        """The label values in ROUTE + COST order (positional ``.labels()``)."""
        return tuple(self)


class _Series(NamedTuple):
    """The labelled children one (labels, cache, code) combination meters into."""

    requests: Any
    tokens_in: Any
    tokens_out: Any
    cost: Any
    latency: Any
    ttft: Any


class Metrics:
    """All gateway metrics, in their own registry (one per app, so tests can run several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "frugal_gateway_requests",
            "Requests answered, by route, cost labels, cache outcome and HTTP status.",
            [*ROUTE, *COST, "cache", "code"],
            registry=r,
        )
        self.tokens = Counter(
            "frugal_gateway_tokens",
            "Tokens in (prompt) and out (completion) served by model calls.",
            [*ROUTE, *COST, "direction"],
            registry=r,
        )
        self.cost = Counter(
            "frugal_gateway_cost_usd",
            "US dollars of model calls (Eq. 1 at the tier's per-token price).",
            [*ROUTE, *COST],
            registry=r,
        )
        self.cache_hits = Counter(
            "frugal_gateway_cache_hits",
            "Answers served from the cache, by kind (exact, semantic) and originating tier.",
            ["kind", "policy", "namespace", "tier", *COST],
            registry=r,
        )
        self.cache_saved = Counter(
            "frugal_gateway_cache_saved_usd",
            "US dollars of model calls the cache avoided (the cost of the cached call).",
            ["policy", "namespace", "tier", *COST],
            registry=r,
        )
        self.cache_distrusted = Counter(
            "frugal_gateway_cache_distrusted",
            "Cached entries not served because their tier wrote them while its live quality "
            "was under its objective (by kind and originating tier).",
            ["kind", "policy", "namespace", "tier"],
            registry=r,
        )
        self.cache_errors = Counter(
            "frugal_gateway_cache_errors",
            "Cache backend or embedder failures (the request went on as a miss).",
            ["policy", "namespace", "operation"],
            registry=r,
        )
        self.latency = Histogram(
            "frugal_gateway_request_duration_seconds",
            "Time from request to the last byte of the answer.",
            [*ROUTE, *COST, "cache"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "frugal_gateway_ttft_seconds",
            "Time from request to the first answer byte (first chunk when streaming).",
            [*ROUTE, *COST, "cache"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "frugal_gateway_fallbacks",
            "Requests moved from one tier to another, by reason (error, overload, scaledToZero).",
            ["policy", "namespace", "from_tier", "to_tier", "reason"],
            registry=r,
        )
        self.waiting = Gauge(
            "frugal_gateway_waiting",
            "Requests held at the gateway while their endpoint wakes from zero.",
            ["endpoint", "namespace"],
            registry=r,
        )
        self.wakes = Counter(
            "frugal_gateway_wakes",
            "Wake requests sent for endpoints at zero.",
            ["endpoint", "namespace", "result"],
            registry=r,
        )
        self.in_flight = Gauge(
            "frugal_gateway_in_flight",
            "Requests in flight to an upstream.",
            ["endpoint", "namespace"],
            registry=r,
        )
        self.quality = Gauge(
            "frugal_gateway_quality_ratio",
            "Rolling mean similarity of a tier's answers to the reference tier's (shadow).",
            ["policy", "namespace", "tier"],
            registry=r,
        )
        self.shadow = Counter(
            "frugal_gateway_shadow_requests",
            "Shadow requests to the reference tier, by result (compared, skipped, failed).",
            ["policy", "namespace", "tier", "result"],
            registry=r,
        )
        self.shadow_cost = Counter(
            "frugal_gateway_shadow_cost_usd",
            "US dollars spent on shadow requests (kept apart from the tiers' own cost).",
            ["policy", "namespace", "tier"],
            registry=r,
        )
        self.semantic_verified = Counter(
            "frugal_gateway_semantic_verified",
            "Semantic cache hits verified against a fresh answer of their originating tier.",
            ["policy", "namespace"],
            registry=r,
        )
        self.semantic_false_hits = Counter(
            "frugal_gateway_semantic_false_hits",
            "Verified semantic hits whose fresh answer disagreed with the cached one.",
            ["policy", "namespace"],
            registry=r,
        )
        self.semantic_false_hit_rate = Gauge(
            "frugal_gateway_semantic_false_hit_rate",
            "False-hit rate over the CachePolicy's current window of verified semantic hits.",
            ["policy", "namespace"],
            registry=r,
        )
        self.semantic_suspended = Gauge(
            "frugal_gateway_semantic_suspended",
            "1 while the CachePolicy's semantic cache is suspended (over its false-hit budget).",
            ["policy", "namespace"],
            registry=r,
        )
        self.semantic_verify_cost = Counter(
            "frugal_gateway_semantic_verify_cost_usd",
            "US dollars spent verifying semantic hits (kept apart from the tiers' own cost).",
            ["policy", "namespace", "tier"],
            registry=r,
        )
        self.rejected = Counter(
            "frugal_gateway_rejected",
            "Requests refused before routing, by reason.",
            ["reason", "tenant"],
            registry=r,
        )
        self.reloads = Counter(
            "frugal_gateway_config_reloads",
            "Configuration reloads, by result (ok, error).",
            ["result"],
            registry=r,
        )
        self.generation = Gauge(
            "frugal_gateway_config_generation",
            "How many configurations have been loaded (starts at 1).",
            registry=r,
        )
        self._series: dict[tuple[Labels, str, int], _Series] = {}

    def _bound(self, labels: Labels, cache: str, code: int) -> _Series:
        """The children of one label set, bound once: ``.labels()`` builds and checks dicts on
        every call (about 5 µs each), a dict lookup here costs well under one. The set of
        combinations is as bounded as the metrics themselves (config × tenants × codes)."""
        key = (labels, cache, code)
        series = self._series.get(key)
        if series is None:
            v = labels.values()
            series = self._series[key] = _Series(
                self.requests.labels(*v, cache, str(code)),
                self.tokens.labels(*v, "in"),
                self.tokens.labels(*v, "out"),
                self.cost.labels(*v),
                self.latency.labels(*v, cache),
                self.ttft.labels(*v, cache),
            )
        return series

    def track_in_flight(self, endpoint: str, namespace: str, read: Callable[[], float]) -> None:
        """Read an upstream's in-flight count when scraped: setting the gauge on every request
        and answer took a lock and a dict lookup twice per request for a value that is only
        ever looked at on a scrape."""
        self.in_flight.labels(endpoint, namespace).set_function(read)

    def request(
        self,
        labels: Labels,
        *,
        cache: str,
        code: int,
        tokens_in: int = 0,
        tokens_out: int = 0,
        cost_usd: float = 0.0,
        duration: float | None = None,
        ttft: float | None = None,
    ) -> None:
        """Meter one answered request."""
        series = self._bound(labels, cache, code)
        series.requests.inc()
        if tokens_in or tokens_out:
            series.tokens_in.inc(tokens_in)
            series.tokens_out.inc(tokens_out)
        if cost_usd:
            series.cost.inc(cost_usd)
        if duration is not None:
            series.latency.observe(duration)
        if ttft is not None:
            series.ttft.observe(ttft)
