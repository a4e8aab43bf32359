"""CachePolicy status comes from what the real gateway measured, through real Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from test_control_loops import EngineSim

from frugal.settings import Settings
from support.operator import running_operator
from support.wait import wait_for
from testbed.prom import Prometheus, free_port

pytestmark = pytest.mark.cluster


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    prom = Prometheus(tmp_path / "prometheus")
    prom.start()
    try:
        yield prom
    finally:
        prom.stop()


def policies(namespace: str, target: dict[str, str]) -> list[dict]:
    rp = {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "RoutingPolicy",
        "metadata": {"name": "support", "namespace": namespace},
        "spec": {
            "modelName": "assistant",
            "tiers": [{"name": "small", "endpointRef": {"name": "small"}, "weight": 100}],
        },
    }
    cp = {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "CachePolicy",
        "metadata": {"name": "support", "namespace": namespace},
        "spec": {
            "targetRef": target,
            "semantic": {"enabled": False},
        },
    }
    return [rp, cp]


def ask(gateway: str, model: str) -> str:
    body = json.dumps(
        {
            "model": model,
            "temperature": 0,
            "messages": [{"role": "user", "content": "How do I reset my PIN?"}],
        }
    )
    req = urllib.request.Request(
        f"{gateway}/v1/chat/completions",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()
        return r.headers["x-frugal-cache"]


@pytest.mark.parametrize(
    "target",
    [
        ({"kind": "RoutingPolicy", "name": "support"}, "assistant"),
        # A cache in front of one endpoint, called by its served name.
        ({"kind": "InferenceEndpoint", "name": "small"}, "small"),
    ],
    ids=["routing-policy", "endpoint"],
)
def test_hit_rate_and_savings_reach_the_cache_policy(
    cluster, namespace, prometheus: Prometheus, tmp_path: Path, target: tuple[dict, str]
) -> None:
    """``target``: the CachePolicy's targetRef, and the model name clients call."""
    ref, model = target
    sim = EngineSim("small", tmp_path, tokens_per_second=0)
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "namespace": namespace,
                "policies": policies(namespace, ref),
                "upstreams": {
                    "small": {
                        "url": sim.url,
                        "servedName": "small",
                        "inputPricePer1M": 1.0,
                        "outputPricePer1M": 2.0,
                    }
                },
                "auth": {"required": False},
            }
        )
    )
    port = free_port()
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "frugal.cli",
            "gateway",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=(tmp_path / "gateway.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: urllib.request.urlopen(f"{url}/healthz", timeout=2).status == 200,
            what="gateway up",
        )
        prometheus.add_target(f"127.0.0.1:{port}")
        settings = Settings.model_validate(
            {
                "prometheus": {"url": prometheus.url},
                "loops": {"cacheStatusSeconds": 1},
            }
        )
        with running_operator(str(cluster.kubeconfig), [namespace], settings):
            for doc in policies(namespace, ref):
                cluster.apply(doc)
            served = [ask(url, model) for _ in range(5)]
            assert served == ["miss", "exact", "exact", "exact", "exact"]

            def status() -> dict:
                return cluster.get("CachePolicy", namespace, "support").get("status", {})

            st = wait_for(
                lambda: (s := status()).get("hitRate", {}).get("exact", 0) > 0.5 and s,
                timeout=120,
                what="hit rate in CachePolicy status",
            )
            assert st["hitRate"]["total"] == pytest.approx(0.8, abs=0.1)
            assert st["estimatedSavedUSD"] > 0
            ready = next(c for c in st["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "True"
    finally:
        gateway.terminate()
        gateway.wait(timeout=20)
        sim.stop()
