"""Decision latency of the control loops: from a signal change to the applied change.

Real components: the testbed API server, Debian's Prometheus scraping `frugal engine-sim`
processes, and the operator in-process with its DEFAULT loop intervals (scale every 15 s,
reroute tick 10 s, reroute interval 1 m, cooldown 5 m). Prometheus scrapes every 5 s.

Measured per loop, over several trials:
- scale-up: load starts → the endpoint's Deployment has more replicas;
- wake: the wake annotation is set at zero replicas → the Deployment has a replica;
- scale-to-zero: the last request ends → replicas 0, minus the endpoint's idleAfter;
- reroute: a tier's quality drops → the RoutingPolicy's weights change.

Usage: .venv/bin/python bench/bench_decision_latency.py [--trials N] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "e2e")]

from frugal import kube  # noqa: E402
from frugal.settings import Settings  # noqa: E402
from support.operator import running_operator  # noqa: E402
from support.wait import wait_for  # noqa: E402
from testbed.client import Cluster  # noqa: E402
from testbed.controlplane import ControlPlane, bin_dir  # noqa: E402
from testbed.prom import Prometheus  # noqa: E402

sys.path.insert(0, str(REPO / "tests" / "integration"))
from test_control_loops import EngineSim, QualityExporter  # noqa: E402


def deployment_replicas(cluster: Cluster, ns: str, name: str) -> int:
    dep = kube.get(cluster.api, "apps/v1", "Deployment", ns, f"{name}-on-demand")
    return dep["spec"]["replicas"] if dep else -1


def endpoint(ns: str, name: str, **scaling: object) -> dict:
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "model": {"uri": "hf://org/m", "servedName": name, "parameters": 1e9},
            "scaling": scaling,
            "capacity": {"preference": ["on-demand"]},
        },
    }


def timed(action, done, timeout: float = 600) -> float:
    start = time.monotonic()
    action()
    wait_for(done, timeout=timeout)
    return time.monotonic() - start


def run(trials: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {
        "scale-up": [],
        "wake": [],
        "scale-to-zero": [],
        "reroute": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plane = ControlPlane(work / "testbed")
        plane.up(crds=REPO / "crds")
        prom = Prometheus(work / "prom")
        prom.start()
        # Default loop intervals; only Prometheus's address is set.
        settings = Settings.model_validate({"prometheus": {"url": prom.url}})
        cluster = Cluster(plane.kubeconfig, str(bin_dir("kubernetes") / "kubectl"))
        ns = "bench"
        cluster.ensure_namespace(ns)
        exporter = QualityExporter()
        prom.add_target(f"127.0.0.1:{exporter.port}")
        try:
            with running_operator(str(plane.kubeconfig), [ns], settings):
                for trial in range(trials):
                    name = f"chat-{trial}"
                    sim = EngineSim(name, work, tokens_per_second=20, answer_tokens=100)
                    prom.add_target(f"127.0.0.1:{sim.port}")
                    cluster.apply(
                        endpoint(
                            ns,
                            name,
                            minReplicas=0,
                            maxReplicas=4,
                            targetInFlight=4,
                            idleAfter="30s",
                        )
                    )
                    wait_for(lambda n=name: deployment_replicas(cluster, ns, n) == 1)
                    stop = threading.Event()

                    def load(s=sim, ev=stop) -> None:
                        while not ev.is_set():
                            s.chat(max_tokens=100)

                    workers = [threading.Thread(target=load, daemon=True) for _ in range(12)]
                    results["scale-up"].append(
                        timed(
                            lambda w=workers: [t.start() for t in w],
                            lambda n=name: deployment_replicas(cluster, ns, n) >= 2,
                        )
                    )
                    stop.set()
                    for t in workers:
                        t.join()
                    idle = timed(
                        lambda: None, lambda n=name: deployment_replicas(cluster, ns, n) == 0
                    )
                    results["scale-to-zero"].append(idle - 30)
                    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    doc = endpoint(
                        ns, name, minReplicas=0, maxReplicas=4, targetInFlight=4, idleAfter="30s"
                    )
                    doc["metadata"]["annotations"] = {"frugal.dev/wake": now}
                    results["wake"].append(
                        timed(
                            lambda d=doc: cluster.apply(d),
                            lambda n=name: deployment_replicas(cluster, ns, n) == 1,
                        )
                    )
                    sim.stop()
                    prom.remove_target(f"127.0.0.1:{sim.port}")

                    policy = f"rp-{trial}"
                    for tier in ("small", "large"):
                        exporter.quality.labels(policy, ns, tier).set(0.98)
                    cluster.apply(
                        {
                            "apiVersion": "frugal.dev/v1alpha1",
                            "kind": "RoutingPolicy",
                            "metadata": {"name": policy, "namespace": ns},
                            "spec": {
                                "modelName": policy,
                                "tiers": [
                                    {"name": "small", "endpointRef": {"name": "s"}, "weight": 80},
                                    {"name": "large", "endpointRef": {"name": "l"}, "weight": 20},
                                ],
                                "objectives": {"minQuality": 0.9},
                                "autoReroute": {"enabled": True},
                            },
                        }
                    )

                    def weights(p=policy) -> dict:
                        return (
                            cluster.get("RoutingPolicy", ns, p).get("status", {}).get("weights", {})
                        )

                    wait_for(lambda: weights().get("small") == 80, timeout=120)
                    results["reroute"].append(
                        timed(
                            lambda p=policy: exporter.quality.labels(p, ns, "small").set(0.5),
                            lambda: weights().get("small", 80) < 80,
                        )
                    )
        finally:
            exporter.stop()
            prom.stop()
            plane.down()
    return results


def table(results: dict[str, list[float]]) -> str:
    lines = ["| loop | trials | p50 (s) | max (s) |", "|---|---|---|---|"]
    for loop, values in results.items():
        lines.append(
            f"| {loop} | {len(values)} | {statistics.median(values):.1f} | {max(values):.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    started = time.monotonic()
    results = run(args.trials)
    print(table(results))
    print(f"\n(total {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
