"""The engine's Prometheus metrics under vLLM 0.33.0's names and labels (docs/vllm.md).

Each simulator owns a registry, so several can run in one process (tests) without clashing.
prometheus_client appends ``_total`` to counters, so ``vllm:prompt_tokens`` is exposed as
``vllm:prompt_tokens_total``, as vLLM exposes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

ENGINE_INDEX = "0"
LABELS = ("model_name", "engine")
FINISH_REASONS = ("stop", "length", "abort")

# vLLM's own buckets, so dashboards and recording rules built on the simulator carry over.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
E2E_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip


class Load(NamedTuple):
    """What the scheduler holds right now; read at scrape time, so it is never stale."""

    model: str
    running: int
    waiting: int
    max_num_seqs: int


class _LoadCollector:
    """The three scheduler gauges, computed on each scrape instead of set on each change."""

    def __init__(self, load: Callable[[], Load]) -> None:
        self._load = load

    def collect(self) -> Iterator[Metric]:
        load = self._load()
        labels = [load.model, ENGINE_INDEX]
        # The simulator holds no real KV cache: running / max_num_seqs stands in for usage.
        kv = min(1.0, load.running / load.max_num_seqs)
        for name, doc, value in (
            ("vllm:num_requests_running", "Number of requests in model execution batches.",
             load.running),
            ("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
             load.waiting),
            ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", kv),
        ):  # fmt: skip
            family = GaugeMetricFamily(name, doc, labels=LABELS)
            family.add_metric(labels, value)
            yield family


class EngineMetrics:
    """Counters and histograms of one simulated engine, labelled with its served model name."""

    def __init__(self, load: Callable[[], Load]) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "Number of prefill tokens processed.", LABELS, registry=reg
        )
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", LABELS, registry=reg
        )
        self.request_success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*LABELS, "finished_reason"],
            registry=reg,
        )
        self.prefix_queries = Counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            LABELS,
            registry=reg,
        )
        self.prefix_hits = Counter(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            LABELS,
            registry=reg,
        )
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            LABELS,
            buckets=TTFT_BUCKETS,
            registry=reg,
        )
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            LABELS,
            buckets=E2E_BUCKETS,
            registry=reg,
        )
        reg.register(_LoadCollector(load))
        self._plain = (
            self.prompt_tokens,
            self.generation_tokens,
            self.prefix_queries,
            self.prefix_hits,
            self.ttft,
            self.e2e,
        )
        self.model = load().model
        self._create(self.model)

    def _create(self, model: str) -> None:
        """Start every series at zero, as vLLM does, so a scrape before any request sees them."""
        for metric in self._plain:
            metric.labels(model, ENGINE_INDEX)
        for reason in FINISH_REASONS:
            self.request_success.labels(model, ENGINE_INDEX, reason)

    def rename(self, model: str) -> None:
        """Serve under a new name: old series go, new ones start at zero (like a restart)."""
        if model == self.model:
            return
        for metric in self._plain:
            metric.remove(self.model, ENGINE_INDEX)
        for reason in FINISH_REASONS:
            self.request_success.remove(self.model, ENGINE_INDEX, reason)
        self.model = model
        self._create(model)

    def scheduled(self, prompt_tokens: int, cached_tokens: int) -> None:
        """A request entered the batch: its prompt is prefilled, partly from the prefix cache."""
        labels = (self.model, ENGINE_INDEX)
        self.prompt_tokens.labels(*labels).inc(prompt_tokens)
        self.prefix_queries.labels(*labels).inc(prompt_tokens)
        self.prefix_hits.labels(*labels).inc(cached_tokens)

    def first_token(self, seconds: float) -> None:
        self.ttft.labels(self.model, ENGINE_INDEX).observe(seconds)

    def token(self) -> None:
        self.generation_tokens.labels(self.model, ENGINE_INDEX).inc()

    def finished(self, reason: str, seconds: float) -> None:
        self.request_success.labels(self.model, ENGINE_INDEX, reason).inc()
        self.e2e.labels(self.model, ENGINE_INDEX).observe(seconds)

    def exposition(self) -> bytes:
        """The Prometheus text format of everything above."""
        return generate_latest(self.registry)
