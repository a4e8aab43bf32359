"""``frugal report`` against the testbed API server (and, optionally, a real Prometheus).

The operator is not running here: the test writes each endpoint's ``status.cost`` itself through
the /status subresource, exactly as the operator's loops do, and reads the report back.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server
from typer.testing import CliRunner

from frugal import kube
from frugal.finops.cli import app, spend_report
from support.wait import wait_for

pytestmark = pytest.mark.cluster

BY = ["team", "project", "environment", "tier"]


def endpoint(namespace: str, name: str, team: str, env: str, **labels: str) -> dict:
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"uri": "hf://org/m", "servedName": name, "parameters": 8e9},
            "capacity": {"preference": ["on-demand"]},
            "costAllocation": {
                "team": team,
                "project": "helpdesk",
                "environment": env,
                "labels": labels,
            },
            "budget": {"hourlyUSD": 2.0},
        },
    }


def write_cost(cluster, namespace: str, name: str, cost: dict) -> None:
    path = kube.resource_path("frugal.dev/v1alpha1", "InferenceEndpoint", namespace, name)
    kube.request(
        cluster.api,
        "PATCH",
        path + "/status",
        body={"status": {"phase": "Serving", "cost": cost}},
        content_type="application/merge-patch+json",
    )


@pytest.fixture
def fleet(cluster, namespace: str) -> str:
    """Three endpoints of two teams; two are tiers of a RoutingPolicy, one names its tier."""
    cluster.create(endpoint(namespace, "support-small", "support", "prod"))
    cluster.create(endpoint(namespace, "support-large", "support", "prod"))
    cluster.create(endpoint(namespace, "search-dev", "search", "dev", tier="experimental"))
    cluster.create(
        {
            "apiVersion": "frugal.dev/v1alpha1",
            "kind": "RoutingPolicy",
            "metadata": {"name": "support", "namespace": namespace},
            "spec": {
                "modelName": "support",
                "tiers": [
                    {"name": "small", "endpointRef": {"name": "support-small"}, "weight": 80},
                    {"name": "large", "endpointRef": {"name": "support-large"}, "weight": 20},
                ],
            },
        }
    )
    # small: $0.805/h serving 500 tokens/s; large: $3.22/h at 200 tokens/s, 161% of its budget
    write_cost(
        cluster,
        namespace,
        "support-small",
        {"hourlyUSD": 0.805, "tokensPerSecond": 500.0, "budgetBurn": 0.4025, "source": "live"},
    )
    write_cost(
        cluster,
        namespace,
        "support-large",
        {"hourlyUSD": 3.22, "perMillionTokensUSD": 4.472, "budgetBurn": 1.61, "source": "live"},
    )
    # search-dev has no cost yet (just created): absent, not zero
    return namespace


def test_report_groups_live_spend(cluster, fleet: str) -> None:
    data = spend_report(cluster.api, fleet, BY)
    groups = {(g["team"], g["tier"]): g for g in data["groups"]}
    small = groups["support", "small"]
    # $0.805/h × 24 = $19.32/day; $0.805 / (500 tokens/s × 3600 s) × 1e6 = $0.4472 per 1M
    assert small["usd_per_day"] == pytest.approx(19.32)
    assert small["usd_per_1m_tokens"] == pytest.approx(0.447222, rel=1e-4)
    large = groups["support", "large"]
    assert large["usd_per_day"] == pytest.approx(3.22 * 24)
    # tokens/s recovered from $/h and $/1M: 3.22 / 4.472 × 1e6 / 3600 = 200 → $4.472 per 1M
    assert large["usd_per_1m_tokens"] == pytest.approx(4.472, rel=1e-4)
    assert large["budget_burn"] == pytest.approx(1.61)
    dev = groups["search", "experimental"]
    assert dev["usd_per_day"] is None
    assert dev["usd_per_1m_tokens"] is None
    assert data["totals"]["usd_per_day"] == pytest.approx((0.805 + 3.22) * 24)
    # coarser grouping adds up: one team row for support
    by_team = {g["team"]: g for g in spend_report(cluster.api, fleet, ["team"])["groups"]}
    assert by_team["support"]["usd_per_day"] == pytest.approx((0.805 + 3.22) * 24)
    assert by_team["support"]["budget_burn"] == pytest.approx(1.61)  # the worst of the team


def test_report_cli_prints_table_csv_json_and_a_chart(cluster, fleet: str, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["report", "--kubeconfig", str(cluster.kubeconfig), "-n", fleet]
    out = runner.invoke(app, base)
    assert out.exit_code == 0, out.output
    assert "support" in out.output
    assert "$19.32" in out.output
    csv_out = runner.invoke(app, [*base, "--csv", "--by", "team"])
    assert csv_out.exit_code == 0, csv_out.output
    lines = csv_out.output.strip().splitlines()
    assert lines[0].startswith("team,endpoints,usd_per_day")
    assert any(line.startswith("support,2,96.6") for line in lines)
    chart = tmp_path / "spend.png"
    js = runner.invoke(app, [*base, "--json", "--plot", str(chart)])
    assert js.exit_code == 0, js.output
    data = json.loads(js.stdout)
    assert {e["name"] for e in data["endpoints"]} == {
        "support-small",
        "support-large",
        "search-dev",
    }
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """Debian's prometheus on loopback, scraping one static target every second."""

    def __init__(self, workdir: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 900ms}\n"
            f"scrape_configs: [{{job_name: report, static_configs: [{{targets: ['{target}']}}]}}]\n"
        )
        self.proc = subprocess.Popen(
            [
                str(shutil.which("prometheus")),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=(workdir / "prometheus.log").open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def query(self, promql: str) -> list[dict]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())["data"]["result"]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def gateway_metrics() -> Iterator[tuple[CollectorRegistry, int]]:
    """A stand-in for the gateway's /metrics: a prometheus_client server on loopback."""
    registry = CollectorRegistry()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield registry, port
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def prometheus(tmp_path: Path, gateway_metrics) -> Iterator[Prometheus]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (make deps)")
    prom = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{gateway_metrics[1]}")
    try:
        wait_for(
            lambda: urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2).status == 200,
            timeout=60,
            what="prometheus ready",
        )
        yield prom
    finally:
        prom.stop()


def test_report_adds_gateway_spend_and_cache_savings(
    cluster, fleet: str, gateway_metrics, prometheus: Prometheus
) -> None:
    registry, _ = gateway_metrics
    labels = ["namespace", "team", "project", "environment", "tier"]
    cost = Counter("frugal_gateway_cost_usd", "API spend", labels, registry=registry)
    saved = Counter("frugal_gateway_cache_saved_usd", "saved", labels, registry=registry)
    key = {
        "namespace": fleet,
        "team": "support",
        "project": "helpdesk",
        "environment": "prod",
        "tier": "frontier",
    }
    cost.labels(**key).inc(0)
    saved.labels(**key).inc(0)
    wait_for(
        lambda: prometheus.query("frugal_gateway_cost_usd_total"), timeout=60, what="first scrape"
    )
    cost.labels(**key).inc(5.0)
    saved.labels(**key).inc(2.0)
    wait_for(
        lambda: prometheus.query("increase(frugal_gateway_cost_usd_total[1m]) > 0"),
        timeout=60,
        what="the increase to be scraped",
    )
    time.sleep(2)  # one more scrape of both counters
    data = spend_report(cluster.api, fleet, BY, prometheus.url, window="1m")
    groups = {(g["team"], g["tier"]): g for g in data["groups"]}
    api = groups["support", "frontier"]
    # increase() over 1m, scaled ×1440 to a day: positive, and savings in the same proportion
    assert api["api_usd_per_day"] > 0
    assert api["cache_saved_usd_per_day"] == pytest.approx(api["api_usd_per_day"] * 2 / 5, rel=0.2)
    assert api["usd_per_day"] == pytest.approx(api["api_usd_per_day"])
    assert groups["support", "small"]["api_usd_per_day"] is None
