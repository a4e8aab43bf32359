"""The Kubernetes wake callback against the real API server: it stamps the wake annotation."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from frugal.gateway.snapshot import Upstream
from frugal.gateway.wake import WAKE_ANNOTATION, KubeWaker

pytestmark = pytest.mark.cluster


def endpoint(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"uri": "hf://Qwen/Qwen3-4B-AWQ", "servedName": name, "parameters": 4e9},
            "engine": {"quantization": "awq", "maxModelLen": 4096},
            "scaling": {"minReplicas": 0, "maxReplicas": 1},
        },
    }


def test_kube_waker_patches_the_wake_annotation(cluster, namespace: str) -> None:
    cluster.create(endpoint("sleepy", namespace))
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    upstream = Upstream(
        key="k",
        endpoint="sleepy",
        namespace=namespace,
        urls=("http://127.0.0.1:1",),
        model="sleepy",
        price_in_per_1m=0,
        price_out_per_1m=0,
        api_key=None,
        scaled_to_zero=True,
        cold_start_budget=60,
        max_in_flight=1,
        health_path="/health",
    )
    asyncio.run(KubeWaker(cluster.api)(upstream))
    stored = cluster.get("InferenceEndpoint", namespace, "sleepy")
    stamp = stored["metadata"]["annotations"][WAKE_ANNOTATION]
    woke = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert woke >= before
    assert stored["spec"]["scaling"]["minReplicas"] == 0  # nothing else touched
