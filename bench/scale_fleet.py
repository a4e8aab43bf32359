"""Helpers of the fleet-scale benchmark: the objects it applies, the operator process it
measures, and what it watches.

Kept apart from ``bench_scale.py`` so that the regression test can build the same objects.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from support.process import OperatorProcess
from testbed.fleet import process_rss

REPO = Path(__file__).resolve().parent.parent
RESERVATION = "reserved"
# Small models fit an L4, the 14B one needs an L40S: both GPU types are used.
PARAMETERS = (1e9, 3e9, 1.4e10)
PREFERENCES = (("reserved", "spot", "on-demand"), ("spot", "on-demand"), ("on-demand",))


def endpoint_doc(namespace: str, i: int, max_model_len: int = 4096) -> dict[str, Any]:
    """Endpoint ``i`` of the synthetic fleet: a deterministic mix of sizes and capacity types."""
    params = PARAMETERS[i % len(PARAMETERS)]
    prefs = list(PREFERENCES[i % len(PREFERENCES)])
    if params > 1e10 and "reserved" in prefs:  # the reservation is of L4s
        prefs.remove("reserved")
    capacity: dict[str, Any] = {"preference": prefs}
    if "reserved" in prefs:
        capacity["reservation"] = RESERVATION
    if "spot" in prefs:
        capacity["spot"] = {"maxShare": 1.0}
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": endpoint_name(i), "namespace": namespace},
        "spec": {
            "model": {
                "uri": f"hf://bench/model-{i % 7}",
                "servedName": endpoint_name(i),
                "parameters": params,
            },
            "engine": {"maxModelLen": max_model_len},
            # The fleet has L4 and L40S nodes only; auto would pick the catalog's cheaper T4.
            "resources": {"gpu": {"type": "l4" if params < 1e10 else "l40s"}},
            "scaling": {"minReplicas": 1, "maxReplicas": 2, "idleAfter": "15m"},
            "capacity": capacity,
            "costAllocation": {"team": f"team-{i % 10}", "project": "bench"},
            "budget": {"hourlyUSD": 50.0},
        },
    }


def endpoint_name(i: int) -> str:
    return f"ep-{i:04d}"


def expected_children(doc: dict[str, Any]) -> int:
    """A Deployment and a Service.

    Each endpoint starts with one replica, only a capacity type holding replicas gets a
    Deployment, and every preference here ends in on-demand, so the replica is always placed;
    a PodDisruptionBudget comes only with a second replica.
    """
    assert doc["spec"]["scaling"]["minReplicas"] == 1
    return 2


def policy_doc(namespace: str, j: int, endpoints: int) -> dict[str, Any]:
    """RoutingPolicy ``j``: three tiers over three of the endpoints, auto-reroute on."""
    tiers = [
        {"name": name, "endpointRef": {"name": endpoint_name((3 * j + k) % endpoints)}}
        for k, name in enumerate(("small", "medium", "large"))
    ]
    for tier, weight in zip(tiers, (70, 25, 5), strict=True):
        tier["weight"] = weight
    tiers[2]["minWeight"] = 5
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "RoutingPolicy",
        "metadata": {"name": policy_name(j), "namespace": namespace},
        "spec": {
            "modelName": policy_name(j),
            "tiers": tiers,
            "objectives": {"minQuality": 0.9},
            "autoReroute": {
                "enabled": True,
                "interval": "30s",
                "maxStep": 10,
                "cooldown": "30s",
                "hysteresis": 0.01,
            },
        },
    }


def policy_name(j: int) -> str:
    return f"rp-{j:03d}"


# --- the operator as its own process --------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def start_operator(
    kubeconfig: Path,
    namespace: str,
    settings: dict[str, Any],
    workdir: Path,
    command_prefix: list[str] | None = None,
) -> OperatorProcess:
    """``frugal operator --standalone`` watching one namespace, once it serves its metrics."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings_file = workdir / f"settings-{namespace}.yaml"
    settings_file.write_text(yaml.safe_dump(settings))
    op = OperatorProcess(
        kubeconfig,
        [namespace],
        settings_file,
        workdir / f"operator-{namespace}.log",
        args=["--standalone"],
        command_prefix=list(command_prefix or []),
    )
    return op.start().wait_metrics()


class Sampler(threading.Thread):
    """Samples a process's RSS and CPU time every ``period`` seconds."""

    def __init__(self, pid: int, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples: list[tuple[float, int, float]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append(
                (time.monotonic(), process_rss(self.pid), proc_cpu_seconds(self.pid))
            )
            self._stop_event.wait(self.period)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def peak_rss(self, since: float = 0.0, until: float = float("inf")) -> int:
        return max((r for t, r, _ in self.samples if since <= t <= until), default=0)

    def cpu_between(self, since: float, until: float) -> float:
        inside = [(t, c) for t, _, c in self.samples if since <= t <= until]
        return inside[-1][1] - inside[0][1] if len(inside) >= 2 else 0.0
