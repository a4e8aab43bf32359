"""Two operator processes with peering: only the higher priority acts; the other takes over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from frugal import kube
from support.wait import wait_for

# Not in `make test` yet: one run in three here, the standby never saw the active replica's
# peering record within 90 s (kopf's peering watch after a 429 "storage is (re)initializing"
# from a freshly created CRD). Tracked for the HA work; run with `make chaos`.
pytestmark = [pytest.mark.cluster, pytest.mark.chaos]


def start_operator(kubeconfig: Path, namespace: str, priority: int, settings: Path, log: Path):
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "frugal.cli",
            "operator",
            "--namespace",
            namespace,
            "--peering",
            "--priority",
            str(priority),
            "--settings",
            str(settings),
            "--log-format",
            "plain",
        ],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def endpoint(namespace: str, name: str) -> dict:
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"uri": "hf://org/m", "servedName": name, "parameters": 1e9},
            "capacity": {"preference": ["on-demand"]},
        },
    }


def has_children(cluster, namespace: str, name: str) -> bool:
    return (
        kube.get(cluster.api, "apps/v1", "Deployment", namespace, f"{name}-on-demand") is not None
    )


def test_only_the_active_replica_acts_and_a_standby_takes_over(
    cluster, namespace: str, tmp_path: Path
) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        yaml.safe_dump({"reconcileIntervalSeconds": 1, "peeringLifetimeSeconds": 5})
    )
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    a = start_operator(cluster.kubeconfig, namespace, 200, settings, log_a)
    b = start_operator(cluster.kubeconfig, namespace, 100, settings, log_b)
    try:
        wait_for(
            lambda: "Pausing operations in favour of" in log_b.read_text(),
            what="the lower-priority replica to pause",
        )
        cluster.apply(endpoint(namespace, "first"))
        wait_for(lambda: has_children(cluster, namespace, "first"), what="first reconciled")
        assert "first" in log_a.read_text()
        assert "Handler 'reconcile'" not in log_b.read_text(), "the standby acted"

        a.send_signal(signal.SIGKILL)  # no goodbye: the standby must notice by itself
        a.wait()
        cluster.apply(endpoint(namespace, "second"))
        wait_for(
            lambda: has_children(cluster, namespace, "second"),
            timeout=120,
            what="the standby to take over",
        )
        assert "Resuming operations" in log_b.read_text()
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
