"""The operator's own Prometheus metrics (served by ``frugal operator --metrics-port``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECONCILES = Counter(
    "frugal_reconciles_total", "Endpoint reconciles, by outcome.", ["kind", "result"]
)
WRITES = Counter(
    "frugal_api_writes_total",
    "Writes the operator sent to the API server, by verb and kind.",
    ["verb", "kind"],
)
API_REQUESTS = Counter(
    "frugal_api_requests_total",
    "Requests the operator's own client sent to the API server (reads and writes), by verb.",
    ["verb"],
)
PROMETHEUS_QUERIES = Counter(
    "frugal_prometheus_queries_total",
    "PromQL queries the control loops sent, by outcome.",
    ["result"],
)
RECONCILE_SECONDS = Histogram(
    "frugal_reconcile_duration_seconds",
    "Time to reconcile one endpoint.",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
