"""The test cluster's own floor for the fleet-scale convergence target (issue 9).

Creates 1,000 bare Services and 1,000 one-replica Deployments directly, with concurrent
clients and no operator, on the same KWOK fleet as ``bench_scale.py``: if that alone takes
longer than the 120 s target, the target is bounded by the cluster on this machine.

    PYTHONPATH=e2e:tests .venv/bin/python bench/scale_floor.py --n 1000
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench_scale import (
    INSTANCE_TYPES,
    NODES,
    RESULTS,
    ScaleFleet,
    api_client,
    apiserver_latency,
    latency_between,
    list_items,
)

from frugal import kube
from testbed.fleet import karpenter_pools

MANAGER = "bench-floor"


def service(ns: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"ep-{i:04d}", "namespace": ns},
        "spec": {"selector": {"app": f"ep-{i:04d}"}, "ports": [{"port": 8000}]},
    }


def deployment(ns: str, i: int) -> dict[str, Any]:
    labels = {"app": f"ep-{i:04d}"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"ep-{i:04d}", "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [
                        {
                            "name": "engine",
                            "image": "vllm/vllm-openai",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                },
            },
        },
    }


def timed_apply(api: Any, docs: list[dict[str, Any]], threads: int) -> float:
    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda d: kube.apply(api, d, MANAGER), docs))
    return time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument(
        "--workdir", type=Path, default=Path.home() / ".cache" / "frugal" / "bench-floor"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "scale_floor.json")
    args = parser.parse_args()
    fleet = ScaleFleet(args.workdir / "fleet", name="frugal-floor")
    pools = karpenter_pools(**NODES, instance_types=INSTANCE_TYPES, reserved_pool="reserved")
    fleet.up(pools, timeout=300)
    api = api_client(fleet.kubeconfig)
    result: dict[str, Any] = {"n": args.n, "threads": args.threads}
    try:
        for kind, make in (("services", service), ("deployments", deployment)):
            ns = f"floor-{kind}"
            fleet.kubectl("create", "namespace", ns)
            l0 = apiserver_latency(fleet)
            result[f"{kind}_seconds"] = timed_apply(
                api, [make(ns, i) for i in range(args.n)], args.threads
            )
            result[f"{kind}_apiserver_latency"] = latency_between(l0, apiserver_latency(fleet))
            print(f"{args.n} {kind}: {result[f'{kind}_seconds']:.1f} s", flush=True)
        t0, deadline = time.monotonic(), time.monotonic() + 600
        while time.monotonic() < deadline:
            deps = list_items(api, "apps/v1", "Deployment", "floor-deployments")
            ready = sum(1 for d in deps if (d.get("status") or {}).get("readyReplicas") == 1)
            if ready == args.n:
                break
            time.sleep(2)
        result["deployments_ready_after_seconds"] = time.monotonic() - t0
        print(f"all ready {result['deployments_ready_after_seconds']:.1f} s later", flush=True)
    finally:
        api.close()
        fleet.down()
    args.out.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
