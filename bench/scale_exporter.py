"""A synthetic exporter: vLLM and gateway metrics for a whole fleet, from one process.

Prometheus scrapes it like the engines and the gateway of every endpoint. Each endpoint serves
a steady load (requests counted, tokens, two requests in flight) until ``go_idle`` stops it;
each RoutingPolicy tier reports a quality ratio and cost until ``set_quality`` changes it. The
label names are the ones the default PromQL templates select on (``model_name`` for vLLM's
series, ``policy``/``namespace``/``tier`` and ``endpoint``/``namespace`` for the gateway's).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REQUESTS_PER_SECOND = 2.0
TOKENS_PER_REQUEST = 200
# Relative cost per request of each tier: the small one is the cheapest, as in the paper's case.
TIER_COST = {"small": 0.2, "medium": 1.0, "large": 5.0}


class FleetCollector(Collector):
    """Every series is computed from the clock at scrape time: no per-request work."""

    def __init__(self, served_names: list[str], tiers: dict[tuple[str, str, str], float]) -> None:
        self.start = time.time()
        self.served = served_names
        self.idle_since: dict[str, float] = {}
        self.quality = dict(tiers)  # (policy, namespace, tier) -> quality ratio
        self.lock = threading.Lock()

    def go_idle(self, served_name: str) -> float:
        """Stop the endpoint's traffic now; returns the time it stopped."""
        with self.lock:
            self.idle_since[served_name] = time.time()
            return self.idle_since[served_name]

    def set_quality(self, policy: str, namespace: str, tier: str, value: float) -> float:
        with self.lock:
            self.quality[(policy, namespace, tier)] = value
        return time.time()

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        running = GaugeMetricFamily("vllm:num_requests_running", "", labels=["model_name"])
        waiting = GaugeMetricFamily("vllm:num_requests_waiting", "", labels=["model_name"])
        success = CounterMetricFamily("vllm:request_success", "", labels=["model_name"])
        prompt = CounterMetricFamily("vllm:prompt_tokens", "", labels=["model_name"])
        generated = CounterMetricFamily("vllm:generation_tokens", "", labels=["model_name"])
        with self.lock:
            idle = dict(self.idle_since)
            quality = dict(self.quality)
        for name in self.served:
            until = idle.get(name, now)
            done = (until - self.start) * REQUESTS_PER_SECOND
            active = name not in idle
            running.add_metric([name], 2.0 if active else 0.0)
            waiting.add_metric([name], 0.0)
            success.add_metric([name], done)
            prompt.add_metric([name], done * TOKENS_PER_REQUEST)
            generated.add_metric([name], done * TOKENS_PER_REQUEST / 2)
        yield from (running, waiting, success, prompt, generated)
        labels = ["policy", "namespace", "tier"]
        ratio = GaugeMetricFamily("frugal_gateway_quality_ratio", "", labels=labels)
        requests = CounterMetricFamily("frugal_gateway_requests", "", labels=labels)
        cost = CounterMetricFamily("frugal_gateway_cost_usd", "", labels=labels)
        elapsed = now - self.start
        for (policy, ns, tier), q in quality.items():
            ratio.add_metric([policy, ns, tier], q)
            requests.add_metric([policy, ns, tier], elapsed)
            cost.add_metric([policy, ns, tier], elapsed * 0.001 * TIER_COST.get(tier, 1.0))
        yield from (ratio, requests, cost)


class Exporter:
    """The collector served over HTTP on a free loopback port, in a thread."""

    def __init__(self, collector: FleetCollector, port: int) -> None:
        from wsgiref.simple_server import WSGIServer, make_server

        class _Threaded(WSGIServer):
            daemon_threads = True

        class _Quiet(WSGIRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

        registry = CollectorRegistry()
        registry.register(collector)

        def app(environ: dict, start_response: Any) -> list[bytes]:
            # The classic text format whatever the scraper asks for: with the escaping that
            # Prometheus 3 negotiates, vLLM's colons would arrive as underscores.
            body = generate_latest(registry)
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [body]

        self.collector = collector
        self.port = port
        self.server = make_server("127.0.0.1", port, app, _Threaded, handler_class=_Quiet)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
