"""The control loops against real Prometheus, real engine simulators and the real API server.

Engine simulators stand in for the vLLM pods of an endpoint (the testbed has no nodes); they
export vLLM's metric names, and Prometheus scrapes them every second. Load is real HTTP traffic.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    start_http_server,
)

from frugal import kube
from frugal.settings import Settings
from support.operator import running_operator
from support.wait import wait_for
from testbed.prom import Prometheus, free_port

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    prom = Prometheus(tmp_path_factory.mktemp("prometheus"))
    prom.start()
    try:
        yield prom
    finally:
        prom.stop()


class EngineSim:
    """A `frugal engine-sim` process."""

    def __init__(self, model: str, workdir: Path, **knobs: object) -> None:
        self.model = model
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            sys.executable,
            "-m",
            "frugal.enginesim",
            "--port",
            str(self.port),
            "--model",
            model,
        ]
        for key, value in knobs.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        self.proc = subprocess.Popen(
            args,
            stdout=(workdir / f"{model}.log").open("w"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        wait_for(self._healthy, timeout=30, what=f"engine sim {model}")

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
            return r.status == 200

    def chat(self, max_tokens: int = 16) -> None:
        body = json.dumps(
            {
                "model": self.model,
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": "where is my card?"}],
            }
        )
        req = urllib.request.Request(
            f"{self.url}/v1/chat/completions",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=120) as r:
            r.read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def endpoint(namespace: str, name: str, **scaling: object) -> dict:
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"uri": "hf://org/m", "servedName": name, "parameters": 1e9},
            "scaling": scaling,
            "capacity": {"preference": ["on-demand"]},
            "budget": {"hourlyUSD": 1.0},
        },
    }


def status(cluster, namespace: str, name: str) -> dict:
    return cluster.get("InferenceEndpoint", namespace, name).get("status", {})


def cond(st: dict, ctype: str) -> dict:
    return next((c for c in st.get("conditions", []) if c["type"] == ctype), {})


def deployment_replicas(cluster, namespace: str, name: str) -> int:
    """The endpoint's on-demand replicas; an endpoint at zero has no Deployment."""
    dep = kube.get(cluster.api, "apps/v1", "Deployment", namespace, f"{name}-on-demand")
    return dep["spec"]["replicas"] if dep else 0


def loop_settings(prom: Prometheus) -> Settings:
    return Settings.model_validate(
        {
            "reconcileIntervalSeconds": 2,
            "prometheus": {"url": prom.url, "qualityWindow": "5s"},
            "loops": {
                "scaleIntervalSeconds": 1,
                "rerouteTickSeconds": 1,
                "scaleDownStabilisationSeconds": 3,
            },
        }
    )


def test_scale_up_down_to_zero_wake_and_fail_static(
    cluster, namespace, prometheus: Prometheus, tmp_path: Path
) -> None:
    name = "chat"
    sim = EngineSim(name, tmp_path, tokens_per_second=20, max_num_seqs=64, answer_tokens=200)
    prometheus.add_target(f"127.0.0.1:{sim.port}", endpoint=name)
    stop_load = threading.Event()

    def load() -> None:
        while not stop_load.is_set():
            sim.chat(max_tokens=200)

    workers = [threading.Thread(target=load, daemon=True) for _ in range(30)]
    try:
        with running_operator(str(cluster.kubeconfig), [namespace], loop_settings(prometheus)):
            cluster.apply(
                endpoint(
                    namespace,
                    name,
                    minReplicas=0,
                    maxReplicas=4,
                    targetInFlight=10,
                    idleAfter="15s",
                )
            )
            wait_for(lambda: deployment_replicas(cluster, namespace, name) == 1)
            wait_for(
                lambda: (
                    cond(status(cluster, namespace, name), "SignalsAvailable").get("status")
                    == "True"
                ),
                what="signals",
            )

            for w in workers:
                w.start()
            wait_for(
                lambda: deployment_replicas(cluster, namespace, name) >= 3,
                what="scale up under load",
            )
            st = status(cluster, namespace, name)
            assert st["lastDecision"]["action"] == "ScaleUp"
            assert st["lastDecision"]["signals"]["inFlight"] >= 20
            assert st["lastDecision"]["signals"]["kvCacheUsage"] > 0  # recorded context
            live = wait_for(
                lambda: (
                    (c := status(cluster, namespace, name).get("cost", {})).get(
                        "tokensPerSecond", 0
                    )
                    > 0
                    and c
                ),
                what="live cost",
            )
            assert live["source"] == "live"
            assert live["perMillionTokensUSD"] > 0

            stop_load.set()
            for w in workers:
                w.join(timeout=60)
            wait_for(
                lambda: deployment_replicas(cluster, namespace, name) == 0,
                timeout=120,
                what="scale to zero after idleAfter",
            )
            st = wait_for(
                lambda: (
                    (s := status(cluster, namespace, name)).get("phase") == "ScaledToZero" and s
                ),
                what="phase ScaledToZero",
            )
            assert st["lastDecision"]["action"] == "ScaleToZero"

            now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            cluster.apply(
                {
                    **endpoint(
                        namespace,
                        name,
                        minReplicas=0,
                        maxReplicas=4,
                        targetInFlight=10,
                        idleAfter="15s",
                    ),
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "annotations": {"frugal.dev/wake": now},
                    },
                }
            )
            wait_for(
                lambda: deployment_replicas(cluster, namespace, name) == 1,
                what="wake on the annotation",
            )
            assert status(cluster, namespace, name)["lastDecision"]["action"] == "Wake"

            # Prometheus goes away: decisions hold, the condition says why, no scale to zero.
            prometheus.stop()
            wait_for(
                lambda: (
                    cond(status(cluster, namespace, name), "SignalsAvailable").get("status")
                    == "False"
                ),
                what="signals absent",
            )
            assert (
                "holding" in cond(status(cluster, namespace, name), "SignalsAvailable")["message"]
            )
            assert deployment_replicas(cluster, namespace, name) == 1
            prometheus.start()
            wait_for(
                lambda: (
                    cond(status(cluster, namespace, name), "SignalsAvailable").get("status")
                    == "True"
                ),
                what="signals back",
            )
    finally:
        stop_load.set()
        sim.stop()
        prometheus.remove_target(f"127.0.0.1:{sim.port}")
        if prometheus.proc is None:
            prometheus.start()


class QualityExporter:
    """Publishes per-tier quality in the gateway's metric names (frugal_gateway_*).

    Stand-in for the gateway's shadow sampler so that the reroute loop can be driven through
    real Prometheus before the gateway itself is part of the test.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.quality = Gauge(
            "frugal_gateway_quality_ratio",
            "quality",
            ["policy", "namespace", "tier"],
            registry=self.registry,
        )
        self.port = free_port()
        self.server, self.thread = start_http_server(self.port, "127.0.0.1", registry=self.registry)

    def stop(self) -> None:
        self.server.shutdown()


def test_reroute_moves_weight_after_a_quality_dip_and_back(
    cluster, namespace, prometheus: Prometheus
) -> None:
    exporter = QualityExporter()
    prometheus.add_target(f"127.0.0.1:{exporter.port}")
    tiers = {"small": 0.97, "medium": 0.98, "large": 1.0}
    for tier, q in tiers.items():
        exporter.quality.labels("support", namespace, tier).set(q)
    policy = {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "RoutingPolicy",
        "metadata": {"name": "support", "namespace": namespace},
        "spec": {
            "modelName": "support",
            "tiers": [
                {"name": "small", "endpointRef": {"name": "s"}, "weight": 70, "minWeight": 40},
                {"name": "medium", "endpointRef": {"name": "m"}, "weight": 25},
                {"name": "large", "endpointRef": {"name": "l"}, "weight": 5, "minWeight": 5},
            ],
            "objectives": {"minQuality": 0.93},
            "autoReroute": {
                "enabled": True,
                "interval": "1s",
                "maxStep": 10,
                "cooldown": "2s",
                "hysteresis": 0.01,
            },
        },
    }

    def rp() -> dict:
        return cluster.get("RoutingPolicy", namespace, "support").get("status", {})

    try:
        with running_operator(str(cluster.kubeconfig), [namespace], loop_settings(prometheus)):
            cluster.apply(policy)
            wait_for(lambda: rp().get("weights"), what="effective weights")
            exporter.quality.labels("support", namespace, "small").set(0.6)
            dipped = wait_for(
                lambda: (s := rp()).get("weights", {}).get("small", 70) < 70 and s,
                what="weight moved off the small tier",
            )
            assert dipped["lastDecision"]["action"] in ("Reroute", "Rollback")
            assert dipped["lastDecision"]["signals"]["quality.small"] == pytest.approx(0.6, 0.05)
            assert "below 0.93" in dipped["lastDecision"]["reason"]

            exporter.quality.labels("support", namespace, "small").set(0.97)
            wait_for(
                lambda: rp().get("weights", {}).get("small") == 70,
                timeout=120,
                what="weight back on the small tier",
            )
            assert rp()["weightsSummary"].startswith("small=70")
            events = kube.request(cluster.api, "GET", f"/api/v1/namespaces/{namespace}/events")
            reasons = {
                e["reason"] for e in events["items"] if e["involvedObject"]["name"] == "support"
            }
            assert "Reroute" in reasons
    finally:
        prometheus.remove_target(f"127.0.0.1:{exporter.port}")
        exporter.stop()


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class FleetExporter:
    """vLLM's engine series for several endpoints from one scrape target (no engine needed to
    tell whether each endpoint finds its own value in a fleet query)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.running = Gauge(
            "vllm:num_requests_running", "running", ["model_name"], registry=self.registry
        )
        self.waiting = Gauge(
            "vllm:num_requests_waiting", "waiting", ["model_name"], registry=self.registry
        )
        self.served = Counter(
            "vllm:request_success", "served", ["model_name"], registry=self.registry
        )
        # The text format, as vLLM serves it: prometheus_client's own server would negotiate
        # OpenMetrics, where Prometheus 2.x does not take names with a colon.
        self.server = make_server("127.0.0.1", 0, self._app, handler_class=_Quiet)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _app(self, environ: dict, start_response: Callable) -> list[bytes]:
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [generate_latest(self.registry)]

    def engine(self, model: str, in_flight: float) -> None:
        self.running.labels(model).set(in_flight)
        self.waiting.labels(model).set(0)
        self.served.labels(model).inc(0)

    def stop(self) -> None:
        self.server.shutdown()


def queries_sent() -> float:
    return sum(
        REGISTRY.get_sample_value("frugal_prometheus_queries_total", {"result": r}) or 0.0
        for r in ("ok", "error")
    )


LOAD_TEMPLATES = 5
"""Fleet queries per scale tick: inFlight, requests, gatewayRequests, waitingAtGateway,
tokensPerSecond (one idleAfter window across the fleet)."""


def test_endpoints_read_one_fleet_query_per_tick(
    cluster, namespace, prometheus: Prometheus
) -> None:
    """Six endpoints, each deciding on its own value from queries sent once per tick."""
    exporter = FleetExporter()
    prometheus.add_target(f"127.0.0.1:{exporter.port}")
    loads = {"busy": 40, "idle": 0, "steady-a": 5, "steady-b": 5, "steady-c": 5}
    for model, in_flight in loads.items():
        exporter.engine(model, in_flight)
    names = [*loads, "silent"]  # "silent" has no series at all: absent, not zero
    scaling = {"minReplicas": 0, "maxReplicas": 4, "targetInFlight": 10, "idleAfter": "5s"}
    settings = loop_settings(prometheus)
    try:
        with running_operator(str(cluster.kubeconfig), [namespace], settings):
            for name in names:
                cluster.apply(endpoint(namespace, name, **scaling))
            wait_for(
                lambda: deployment_replicas(cluster, namespace, "busy") == 4,
                what="busy endpoint scaled to its in-flight load",
            )
            wait_for(
                lambda: (
                    status(cluster, namespace, "idle").get("phase") == "ScaledToZero"
                    and deployment_replicas(cluster, namespace, "idle") == 0
                ),
                what="idle endpoint scaled to zero",
            )
            for name in names:
                wait_for(
                    lambda n=name: (
                        cond(status(cluster, namespace, n), "SignalsAvailable").get("status")
                        == "True"
                    ),
                    what=f"{name}: signals",
                )
            for name in ("steady-a", "steady-b", "steady-c", "silent"):
                assert deployment_replicas(cluster, namespace, name) == 1
            assert "lastDecision" not in status(cluster, namespace, "silent")

            # Steady: every endpoint's timer fires each second, the queries do not multiply.
            before, start = queries_sent(), time.monotonic()
            time.sleep(6)
            sent, ticks = queries_sent() - before, time.monotonic() - start
            per_tick = settings.loops.scale_interval_seconds
            assert 0 < sent <= LOAD_TEMPLATES * (ticks / per_tick + 2)
            assert deployment_replicas(cluster, namespace, "silent") == 1
    finally:
        prometheus.remove_target(f"127.0.0.1:{exporter.port}")
        exporter.stop()
