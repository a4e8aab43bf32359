"""Fleet scale: 10 → 100 → 1,000 InferenceEndpoints on a 500-node simulated GPU fleet.

Real components: a KWOK fleet (etcd, kube-apiserver, controller-manager, scheduler, kwok) with
500 fake GPU nodes in reserved, spot and on-demand Karpenter pools of L4 and L40S nodes, and
``frugal operator`` as its own process (so its RSS and CPU, read from /proc, are its own),
watching one namespace per size, with the gateway ConfigMap rendered from 50 RoutingPolicies.

Per size, measured:
- convergence: objects applied at once (8 client threads) → every endpoint placed, every child
  applied, every endpoint Serving (pods scheduled and Ready on the fake nodes), every policy
  with weights and the gateway ConfigMap holding every policy;
- reconcile latency: a spec change (``engine.maxModelLen``) → every Deployment of that endpoint
  carries the new argument (seen on a watch), 50 changes spaced 0.2 s;
- API requests per reconcile (the operator's ``frugal_api_requests_total`` over
  ``frugal_reconciles_total``), and the API server's own count of requests on frugal's kinds;
- steady state: a second operator process with shortened timers (``--steady-*``) over a
  converged fleet; writes counted by the operator (``frugal_api_writes_total``) and by the API
  server (writes to InferenceEndpoints and RoutingPolicies, which only the operator makes);
- operator RSS (peak) and CPU (seconds, and % of one core per phase).

Usage: PYTHONPATH=e2e:tests .venv/bin/python bench/bench_scale.py [--sizes 10,100,1000]
Results: bench/results/scale.json and bench/results/scale.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "e2e"), str(REPO / "tests"), str(REPO / "bench")]

import kubernetes  # noqa: E402
import yaml  # noqa: E402
from kubernetes.client import ApiClient  # noqa: E402
from scale_exporter import Exporter, FleetCollector  # noqa: E402
from scale_fleet import (  # noqa: E402
    Sampler,
    endpoint_doc,
    expected_children,
    policy_doc,
    policy_name,
    proc_cpu_seconds,
    start_operator,
)

from frugal import kube  # noqa: E402
from frugal.render.gateway import CONFIG_KEY  # noqa: E402
from frugal.render.labels import ENDPOINT_LABEL  # noqa: E402
from support.process import OperatorProcess, total  # noqa: E402
from testbed.controlplane import free_port  # noqa: E402
from testbed.fleet import Fleet, karpenter_pools, process_rss  # noqa: E402
from testbed.prom import Prometheus  # noqa: E402

RESULTS = REPO / "bench" / "results"
NODES = {
    "reserved_l4": 100,
    "spot_l4": 100,
    "spot_l40s": 50,
    "on_demand_l4": 150,
    "on_demand_l40s": 100,
}
# Four GPUs per node: 2,000 GPUs for up to 1,000 endpoints of one replica each.
INSTANCE_TYPES = {"l4": "g6.12xlarge", "l40s": "g6e.12xlarge"}
BENCH_MANAGER = "frugal-bench"
IDLE_AFTER = 30
CLUSTER_QPS = 200
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY", "UPDATE", "CREATE", "DELETECOLLECTION"}


class ScaleFleet(Fleet):
    """The KWOK fleet with a service range that holds a Service per endpoint.

    kube-apiserver's default range is a /24: 254 Services, fewer than the endpoints here.
    """

    def _write_config(self, *args: Any, **kwargs: Any) -> None:
        super()._write_config(*args, **kwargs)
        config = yaml.safe_load(self.config_file.read_text())
        patches = config.setdefault("componentsPatches", [])
        patches.append(
            {
                "name": "kube-apiserver",
                "extraArgs": [{"key": "service-cluster-ip-range", "value": "10.96.0.0/16"}],
            }
        )
        # Their client-side rate limits (20 and 50 requests/s by default) alone take minutes to
        # create and bind a thousand ReplicaSets and Pods; raised, as large clusters do.
        for component in ("kube-controller-manager", "kube-scheduler"):
            patches.append(
                {
                    "name": component,
                    "extraArgs": [
                        {"key": "kube-api-qps", "value": str(CLUSTER_QPS)},
                        {"key": "kube-api-burst", "value": str(2 * CLUSTER_QPS)},
                    ],
                }
            )
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))


def operator_settings(
    namespace: str, reconcile: float, scale: float, reroute: float, prometheus: str | None = None
) -> dict:
    settings: dict[str, Any] = {
        "profile": "karpenter",
        "reservations": [{"name": "reserved", "gpuType": "l4", "gpus": 400}],
        "reconcileIntervalSeconds": reconcile,
        "loops": {"scaleIntervalSeconds": scale, "rerouteTickSeconds": reroute},
        "gateway": {"configNamespace": namespace},
    }
    if prometheus:
        settings["prometheus"] = {"url": prometheus, "qualityWindow": "30s"}
    return settings


def api_client(kubeconfig: Path) -> ApiClient:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=config)
    config.connection_pool_maxsize = 16
    return ApiClient(config)


def list_items(api: ApiClient, api_version: str, kind: str, ns: str, **query: str) -> list[dict]:
    path = kube.resource_path(api_version, kind, ns)
    return kube.request(api, "GET", path, query=list(query.items()), timeout=120)["items"]


def apiserver_requests(fleet: Fleet) -> Counter:
    """apiserver_request_total by (verb, resource), for the kinds the operator touches."""
    text = fleet.kubectl("get", "--raw", "/metrics").stdout
    out: Counter = Counter()
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(text):
        if fam.name != "apiserver_request":
            continue
        for s in fam.samples:
            if s.name != "apiserver_request_total":
                continue
            res = s.labels.get("resource", "")
            if res in {
                "inferenceendpoints",
                "routingpolicies",
                "deployments",
                "services",
                "poddisruptionbudgets",
                "configmaps",
                "events",
            }:
                out[(s.labels.get("verb", ""), res, s.labels.get("subresource", ""))] += s.value
    return out


def apiserver_latency(fleet: Fleet) -> dict[str, tuple[float, float]]:
    """(seconds, count) of the API server's own request latency for the writes that dominate
    convergence, and of its ClusterIP allocator."""
    from prometheus_client.parser import text_string_to_metric_families

    text = fleet.kubectl("get", "--raw", "/metrics").stdout
    wanted = {
        ("APPLY", "deployments", ""): "apply Deployment",
        ("APPLY", "services", ""): "apply Service",
        ("APPLY", "poddisruptionbudgets", ""): "apply PodDisruptionBudget",
        ("PATCH", "inferenceendpoints", "status"): "patch InferenceEndpoint status",
        ("GET", "inferenceendpoints", ""): "get InferenceEndpoint",
    }
    out: dict[str, list[float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if fam.name == "apiserver_request_duration_seconds":
                key = (s.labels.get("verb"), s.labels.get("resource"), s.labels.get("subresource"))
                name = wanted.get(key)  # type: ignore[arg-type]
            elif fam.name == "kube_apiserver_clusterip_allocator_allocation_duration_seconds":
                name = "ClusterIP allocation"
            else:
                continue
            if name is None or not s.name.endswith(("_sum", "_count")):
                continue
            slot = out.setdefault(name, [0.0, 0.0])
            slot[0 if s.name.endswith("_sum") else 1] += s.value
    return {k: (v[0], v[1]) for k, v in out.items()}


def latency_between(before: dict, after: dict) -> dict[str, dict[str, float]]:
    out = {}
    for name, (total_s, count) in after.items():
        s0, c0 = before.get(name, (0.0, 0.0))
        if count - c0 > 0:
            out[name] = {"mean_ms": 1000 * (total_s - s0) / (count - c0), "count": count - c0}
    return out


class DeploymentWatch(threading.Thread):
    """When each Deployment first carried each ``--max-model-len`` value (monotonic time)."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        super().__init__(daemon=True)
        self.apps = kubernetes.client.AppsV1Api(api)
        self.namespace = namespace
        self.seen: dict[tuple[str, str], float] = {}
        self.names: dict[str, set[str]] = {}
        """endpoint → the names of its Deployments (one per capacity type holding replicas)."""
        self.ready = threading.Event()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            listing = self.apps.list_namespaced_deployment(
                self.namespace, label_selector=ENDPOINT_LABEL
            )
            for dep in listing.items:
                self._record(dep)
            self.ready.set()
            w = kubernetes.watch.Watch()
            try:
                for event in w.stream(
                    self.apps.list_namespaced_deployment,
                    self.namespace,
                    label_selector=ENDPOINT_LABEL,
                    resource_version=listing.metadata.resource_version,
                    timeout_seconds=60,
                ):
                    if self._stop_event.is_set():
                        break
                    self._record(event["object"])
            except Exception:
                time.sleep(0.5)

    def _record(self, dep: Any) -> None:
        now = time.monotonic()
        endpoint = (dep.metadata.labels or {}).get(ENDPOINT_LABEL)
        if endpoint:
            self.names.setdefault(endpoint, set()).add(dep.metadata.name)
        args = dep.spec.template.spec.containers[0].args or []
        if "--max-model-len" in args:
            value = args[args.index("--max-model-len") + 1]
            self.seen.setdefault((dep.metadata.name, value), now)

    def stop(self) -> None:
        self._stop_event.set()


class EndpointWatch(threading.Thread):
    """Every endpoint's generation and status, kept current by a watch.

    The convergence milestones were polled with a LIST of every endpoint every 2 s: at 1,000
    endpoints 4 MB of JSON serialised by the API server each time, load a production cluster
    does not have, on the same two cores as the operator. A watch costs the API server one
    serialisation per change, shared with the operator's own watch.
    """

    def __init__(self, api: ApiClient, namespace: str) -> None:
        super().__init__(daemon=True)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.namespace = namespace
        self.objects: dict[str, tuple[int | None, dict[str, Any]]] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        args = ("frugal.dev", "v1alpha1", self.namespace, "inferenceendpoints")
        while not self._stop_event.is_set():
            try:
                listing = self.custom.list_namespaced_custom_object(*args)
                for obj in listing["items"]:
                    self._record(obj)
                w = kubernetes.watch.Watch()
                for event in w.stream(
                    self.custom.list_namespaced_custom_object,
                    *args,
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=60,
                ):
                    if self._stop_event.is_set():
                        break
                    if event["type"] == "DELETED":
                        self.objects.pop(event["object"]["metadata"]["name"], None)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        self._record(event["object"])
            except Exception:
                time.sleep(0.5)

    def _record(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[meta["name"]] = (meta.get("generation"), obj.get("status") or {})

    def stop(self) -> None:
        self._stop_event.set()


def count_items(api: ApiClient, api_version: str, kind: str, ns: str) -> int:
    """How many objects of a kind the namespace holds, without listing them (limit=1 and the
    API server's remainingItemCount; a full list where it does not say)."""
    path = kube.resource_path(api_version, kind, ns)
    page = kube.request(api, "GET", path, query=[("limit", "1")])
    meta = page.get("metadata") or {}
    if not meta.get("continue"):
        return len(page.get("items") or [])
    if meta.get("remainingItemCount") is not None:
        return len(page["items"]) + int(meta["remainingItemCount"])
    return len(list_items(api, api_version, kind, ns))


def apply_all(api: ApiClient, docs: list[dict]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda d: kube.apply(api, d, BENCH_MANAGER), docs))


def converge(  # noqa: PLR0917 - one call site
    api: ApiClient,
    watch: EndpointWatch,
    ns: str,
    endpoints: list[dict],
    policies: list[dict],
    t0: float,
    timeout: float,
) -> dict[str, float]:
    """Seconds from ``t0`` to each milestone of convergence.

    Endpoints are followed by a watch (started before ``t0`` by the caller); children are
    counted. Every Deployment, Service and PodDisruptionBudget in the namespace is a child.
    """
    want_children = sum(expected_children(d) for d in endpoints)
    milestones: dict[str, float] = {}
    deadline = t0 + timeout
    while len(milestones) < 5 and time.monotonic() < deadline:
        now = time.monotonic() - t0
        ies = list(watch.objects.values())
        if (
            "placed" not in milestones
            and len(ies) == len(endpoints)
            and all(
                s.get("observedGeneration") == generation
                and (s.get("placement") or {}).get("placed", {}).get("code")
                in ("Placed", "ReservationFull")
                for generation, s in ies
            )
        ):
            milestones["placed"] = now
        if (
            "serving" not in milestones
            and len(ies) == len(endpoints)
            and all(s.get("phase") == "Serving" for _, s in ies)
        ):
            milestones["serving"] = now
        if "children" not in milestones:
            count = sum(
                count_items(api, v, k, ns)
                for v, k in (
                    ("apps/v1", "Deployment"),
                    ("v1", "Service"),
                    ("policy/v1", "PodDisruptionBudget"),
                )
            )
            if count == want_children:
                milestones["children"] = now
        if "policies" not in milestones:
            rps = list_items(api, "frugal.dev/v1alpha1", "RoutingPolicy", ns)
            if len(rps) == len(policies) and all(
                (r.get("status") or {}).get("weights") for r in rps
            ):
                milestones["policies"] = now
        if "gateway" not in milestones:
            cm = kube.get(api, "v1", "ConfigMap", ns, "frugal-gateway") or {}
            config = yaml.safe_load((cm.get("data") or {}).get(CONFIG_KEY, "") or "") or {}
            if len(config.get("policies") or []) == len(policies) and len(
                config.get("upstreams") or {}
            ) >= min(len(endpoints), 3 * len(policies)):
                milestones["gateway"] = now
        time.sleep(1.0 if len(endpoints) < 500 else 2.0)
    milestones["converged"] = max(milestones.values()) if len(milestones) == 5 else float("nan")
    return milestones


def spec_change_latency(
    api: ApiClient, ns: str, endpoints: list[dict], watch: DeploymentWatch, changes: int
) -> list[float]:
    """Seconds from a spec change to every Deployment of that endpoint carrying it."""
    sent: list[tuple[str, list[str], str, float]] = []
    for k in range(changes):
        doc = endpoints[(k * 7919) % len(endpoints)]
        name = doc["metadata"]["name"]
        value = str(2048 + 16 * (k + 1))
        path = kube.resource_path("frugal.dev/v1alpha1", "InferenceEndpoint", ns, name)
        kube.request(
            api,
            "PATCH",
            path,
            body={"spec": {"engine": {"maxModelLen": int(value)}}},
            content_type="application/merge-patch+json",
        )
        at = time.monotonic()
        deps = sorted(watch.names.get(name, ()))
        sent.append((name, deps, value, at))
        time.sleep(0.2)
    deadline = time.monotonic() + 120
    latencies = []
    for _name, deps, value, at in sent:
        while time.monotonic() < deadline and not all((d, value) in watch.seen for d in deps):
            time.sleep(0.1)
        if deps and all((d, value) in watch.seen for d in deps):
            latencies.append(max(watch.seen[(d, value)] for d in deps) - at)
        else:
            latencies.append(float("inf"))
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def writes_of(counts: Counter) -> float:
    """Writes to the frugal kinds (only the operator and this benchmark write them)."""
    return sum(
        v
        for (verb, res, _sub), v in counts.items()
        if verb in WRITE_VERBS and res in {"inferenceendpoints", "routingpolicies"}
    )


def steady_interval(n: int, args: argparse.Namespace) -> float:
    return max(1.0, n / args.steady_rate)


def run_size(fleet: Fleet, api: ApiClient, n: int, args: argparse.Namespace) -> dict[str, Any]:
    ns = f"scale-{n}-{int(time.time()) % 100000}"
    fleet.kubectl("create", "namespace", ns)
    endpoints = [endpoint_doc(ns, i) for i in range(n)]
    policies = [policy_doc(ns, j, n) for j in range(args.policies)]
    workdir = args.workdir / ns
    result: dict[str, Any] = {"endpoints": n, "policies": len(policies), "namespace": ns}

    # Phase 1: production timers; convergence from empty, then spec-change latency.
    op = start_operator(
        fleet.kubeconfig,
        ns,
        operator_settings(ns, reconcile=60, scale=15, reroute=10),
        workdir,
        command_prefix=args.prefix,
    )
    try:
        return _measure(fleet, api, n, args, op, endpoints, policies, result, workdir)
    finally:
        op.stop()


def _measure(  # noqa: PLR0915, PLR0917 - one call site
    fleet: Fleet,
    api: ApiClient,
    n: int,
    args: argparse.Namespace,
    op: OperatorProcess,
    endpoints: list[dict],
    policies: list[dict],
    result: dict[str, Any],
    workdir: Path,
) -> dict[str, Any]:
    ns = result["namespace"]
    sampler = Sampler(op.pid)
    sampler.start()
    time.sleep(2)
    endpoint_watch = EndpointWatch(api, ns)
    endpoint_watch.start()
    m0, a0, l0 = op.metrics(), apiserver_requests(fleet), apiserver_latency(fleet)
    t0 = time.monotonic()
    apply_all(api, endpoints + policies)
    result["apply_seconds"] = time.monotonic() - t0
    milestones = converge(api, endpoint_watch, ns, endpoints, policies, t0, args.timeout)
    endpoint_watch.stop()
    t1 = time.monotonic()
    m1, a1 = op.metrics(), apiserver_requests(fleet)
    result["convergence_apiserver_latency"] = latency_between(l0, apiserver_latency(fleet))
    result["convergence"] = milestones
    result["convergence_cpu_seconds"] = sampler.cpu_between(t0, t1)
    reconciles = total(m1, "frugal_reconciles_total") - total(m0, "frugal_reconciles_total")
    requests = total(m1, "frugal_api_requests_total") - total(m0, "frugal_api_requests_total")
    writes = total(m1, "frugal_api_writes_total") - total(m0, "frugal_api_writes_total")
    result["convergence_reconciles"] = reconciles
    result["convergence_requests"] = requests
    result["convergence_writes"] = writes
    result["convergence_requests_per_reconcile"] = requests / reconciles if reconciles else None
    result["convergence_apiserver"] = {"/".join(k): v for k, v in sorted((a1 - a0).items()) if v}
    print(f"  n={n}: converged {milestones}", flush=True)

    watch = DeploymentWatch(api, ns)
    watch.start()
    watch.ready.wait(60)
    time.sleep(1)
    latencies = spec_change_latency(api, ns, endpoints, watch, args.changes)
    watch.stop()
    result["latency"] = {
        "n": len(latencies),
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
        "mean": statistics.fmean(latencies),
    }
    print(f"  n={n}: latency {result['latency']}", flush=True)
    # Idle at production timers: what a converged fleet costs.
    time.sleep(5)
    i0, mi0 = time.monotonic(), op.metrics()
    time.sleep(args.idle)
    i1, mi1 = time.monotonic(), op.metrics()
    result["idle_cpu_percent"] = 100 * sampler.cpu_between(i0, i1) / (i1 - i0)
    result["idle_reconciles"] = total(mi1, "frugal_reconciles_total") - total(
        mi0, "frugal_reconciles_total"
    )
    idle_requests = total(mi1, "frugal_api_requests_total") - total(
        mi0, "frugal_api_requests_total"
    )
    result["idle_requests"] = idle_requests
    result["steady_requests_per_reconcile"] = (
        idle_requests / result["idle_reconciles"] if result["idle_reconciles"] else None
    )
    result["peak_rss_mb"] = sampler.peak_rss() / 2**20
    result["rss_end_mb"] = sampler.samples[-1][1] / 2**20
    sampler.stop()
    op.stop()

    # Phase 2: shortened timers over the converged fleet; nothing should be written.
    steady = start_operator(
        fleet.kubeconfig,
        ns,
        operator_settings(
            ns,
            reconcile=steady_interval(n, args),
            scale=steady_interval(n, args) / 4,
            reroute=2,
        ),
        workdir,
    )
    try:
        _steady(fleet, n, args, steady, result)
    finally:
        steady.stop()
    if args.reaction and n == max(args.size_list):
        try:
            result["reaction"] = reaction(fleet, api, n, args, endpoints, policies, ns, workdir)
        except Exception as err:  # the other figures are still worth keeping
            result["reaction"] = {"error": f"{type(err).__name__}: {err}"}
        print(f"  n={n}: reaction {result['reaction']}", flush=True)
    return result


def reaction(  # noqa: PLR0915, PLR0917 - one call site
    fleet: Fleet,
    api: ApiClient,
    n: int,
    args: argparse.Namespace,
    endpoints: list[dict],
    policies: list[dict],
    ns: str,
    workdir: Path,
) -> dict[str, Any]:
    """Production timers with live signals for every endpoint: from an idle endpoint and a
    quality dip to the applied decisions."""
    target = endpoints[1]["metadata"]["name"]
    path = kube.resource_path("frugal.dev/v1alpha1", "InferenceEndpoint", ns, target)
    kube.request(
        api,
        "PATCH",
        path,
        body={"spec": {"scaling": {"minReplicas": 0, "idleAfter": f"{IDLE_AFTER}s"}}},
        content_type="application/merge-patch+json",
    )
    tiers = {
        (p["metadata"]["name"], ns, t["name"]): q
        for p in policies
        for t, q in zip(p["spec"]["tiers"], (0.97, 0.98, 1.0), strict=True)
    }
    collector = FleetCollector([e["spec"]["model"]["servedName"] for e in endpoints], tiers)
    exporter = Exporter(collector, free_port())
    prom = Prometheus(workdir / "prometheus")
    prom.start()
    op: OperatorProcess | None = None
    try:
        prom.add_target(f"127.0.0.1:{exporter.port}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = prom.query("count(vllm:num_requests_running)")
            if got and int(float(got[0]["value"][1])) == n:
                break
            time.sleep(1)
        op = start_operator(
            fleet.kubeconfig,
            ns,
            operator_settings(ns, reconcile=60, scale=15, reroute=10, prometheus=prom.url),
            workdir,
        )
        sampler = Sampler(op.pid)
        sampler.start()
        # The restarted operator first lists and reconciles every endpoint (minutes at 1,000,
        # writing nothing while it lists): the experiment starts once that is over.
        resumed = wait_resumed(op, n, args.restart_timeout)
        settle = settle_writes(op, quiet=20, timeout=150)
        rp = kube.get(api, "frugal.dev/v1alpha1", "RoutingPolicy", ns, policy_name(0)) or {}
        before = ((rp.get("status") or {}).get("weights") or {}).get("small", 70)
        m0, t0 = op.metrics(), time.monotonic()
        collector.go_idle(target)
        t_idle = time.monotonic()
        collector.set_quality(policy_name(0), ns, "small", 0.5)
        t_dip = time.monotonic()
        seen: dict[str, float] = {}
        deadline = time.monotonic() + 240
        while len(seen) < 3 and time.monotonic() < deadline:
            now = time.monotonic()
            deps = list_items(
                api, "apps/v1", "Deployment", ns, labelSelector=f"{ENDPOINT_LABEL}={target}"
            )
            # At zero an endpoint has no Deployment left (render/endpoint.py).
            if "zero" not in seen and sum(d["spec"]["replicas"] for d in deps) == 0:
                seen["zero"] = now - t_idle
            rp = kube.get(api, "frugal.dev/v1alpha1", "RoutingPolicy", ns, policy_name(0)) or {}
            weights = (rp.get("status") or {}).get("weights") or {}
            if "reroute" not in seen and weights.get("small", before) < before:
                seen["reroute"] = now - t_dip
            if "reroute" in seen and "gateway" not in seen:
                cm = kube.get(api, "v1", "ConfigMap", ns, "frugal-gateway") or {}
                text = (cm.get("data") or {}).get(CONFIG_KEY, "")
                config = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
                mine = next(
                    (
                        p
                        for p in (config or {}).get("policies") or []
                        if p["metadata"]["name"] == policy_name(0)
                    ),
                    {},
                )
                if ((mine.get("status") or {}).get("weights") or {}).get("small", before) < before:
                    seen["gateway"] = now - t_dip
            time.sleep(0.5)
        t1 = time.monotonic()
        m1 = op.metrics()
        window = t1 - t0
        queries = total(m1, "frugal_prometheus_queries_total") - total(
            m0, "frugal_prometheus_queries_total"
        )
        out = {
            "idle_after_seconds": IDLE_AFTER,
            "scale_to_zero_seconds": seen.get("zero"),
            "scale_to_zero_beyond_idle_after": (
                seen["zero"] - IDLE_AFTER if "zero" in seen else None
            ),
            "reroute_decision_seconds": seen.get("reroute"),
            "reroute_in_gateway_config_seconds": seen.get("gateway"),
            "resume_seconds": resumed,
            "settle_seconds": settle,
            "small_weight_before_dip": before,
            "window_seconds": window,
            "prometheus_queries_per_second": queries / window,
            "prometheus_query_errors": total(m1, "frugal_prometheus_queries_total", result="error")
            - total(m0, "frugal_prometheus_queries_total", result="error"),
            "writes_in_window": {
                f"{dict(lab).get('verb')}/{dict(lab).get('kind')}": m1[(name, lab)]
                - m0.get((name, lab), 0)
                for (name, lab) in m1
                if name == "frugal_api_writes_total" and m1[(name, lab)] != m0.get((name, lab), 0)
            },
            "cpu_percent": 100 * sampler.cpu_between(t0, t1) / window,
            "peak_rss_mb": sampler.peak_rss() / 2**20,
        }
        sampler.stop()
        return out
    finally:
        if op is not None:
            op.stop()
        prom.stop()
        exporter.stop()


def wait_resumed(op: OperatorProcess, n: int, timeout: float) -> float | None:
    """Seconds from the process's start until it reconciled ``n`` endpoints, None on timeout.

    From the spawn, not from when this is called: a small fleet is reconciled before its
    metrics are first read (at 100 endpoints an earlier version reported 3 ms).
    """
    while time.monotonic() - op.started_at < timeout:
        with contextlib.suppress(OSError):  # metrics port not up yet
            if total(op.metrics(), "frugal_reconciles_total") >= n:
                return time.monotonic() - op.started_at
        time.sleep(0.2)
    return None


def settle_writes(op: OperatorProcess, quiet: float, timeout: float) -> float:
    """Seconds until the operator wrote nothing for ``quiet`` seconds (its start-up burst)."""
    start = time.monotonic()
    last = total(op.metrics(), "frugal_api_writes_total")
    last_change = time.monotonic()
    while time.monotonic() - start < timeout:
        time.sleep(1)
        now = total(op.metrics(), "frugal_api_writes_total")
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change >= quiet:
            break
    return time.monotonic() - start


def _steady(
    fleet: Fleet, n: int, args: argparse.Namespace, steady: OperatorProcess, result: dict
) -> None:
    sampler = Sampler(steady.pid)
    sampler.start()
    # The restart first: until every endpoint was reconciled once (the resume burst), so the
    # steady window counts timer passes over a converged fleet, not the initial listing.
    ra0 = apiserver_requests(fleet)
    resumed = wait_resumed(steady, n, args.restart_timeout)
    restarted = steady.metrics()
    result["restart"] = {
        "seconds_to_every_endpoint_reconciled": resumed,
        # From the process's start, as the time is: the sampler starts once the metrics answer.
        "peak_rss_mb": process_rss(steady.pid, "VmHWM") / 2**20,
        "cpu_seconds": proc_cpu_seconds(steady.pid),
        "operator_writes": total(restarted, "frugal_api_writes_total"),
        "apiserver_writes_frugal_kinds": writes_of(apiserver_requests(fleet) - ra0),
    }
    print(f"  n={n}: restart {result['restart']}", flush=True)
    s0, sa0 = restarted, apiserver_requests(fleet)
    st0 = time.monotonic()
    time.sleep(args.steady)
    s1, sa1 = steady.metrics(), apiserver_requests(fleet)
    st1 = time.monotonic()
    window = st1 - st0
    result["steady"] = {
        "seconds": window,
        "reconcile_interval": steady_interval(n, args),
        "scale_interval": steady_interval(n, args) / 4,
        "reconciles": total(s1, "frugal_reconciles_total") - total(s0, "frugal_reconciles_total"),
        "reconcile_passes": (
            total(s1, "frugal_reconciles_total") - total(s0, "frugal_reconciles_total")
        )
        / n,
        "operator_writes": total(s1, "frugal_api_writes_total")
        - total(s0, "frugal_api_writes_total"),
        "operator_writes_by": {
            f"{dict(lab).get('verb')}/{dict(lab).get('kind')}": s1[(name, lab)]
            - s0.get((name, lab), 0)
            for (name, lab) in s1
            if name == "frugal_api_writes_total" and s1[(name, lab)] != s0.get((name, lab), 0)
        },
        "requests": total(s1, "frugal_api_requests_total") - total(s0, "frugal_api_requests_total"),
        "apiserver_writes_frugal_kinds": writes_of(sa1 - sa0),
        "cpu_percent": 100 * sampler.cpu_between(st0, st1) / window,
        "peak_rss_mb": sampler.peak_rss() / 2**20,
    }
    passes = result["steady"]["reconcile_passes"]
    result["steady"]["hour_equivalent_minutes"] = passes  # one pass per minute in production
    sampler.stop()
    print(f"  n={n}: steady {result['steady']}", flush=True)


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| endpoints | converged (s) | placed (s) | all Serving (s) | spec change → children "
        "p50 / p99 (s) | requests / reconcile, converging | requests / reconcile, converged | "
        "writes over timer passes | peak RSS (MB) | CPU to converge (s) | CPU idle (% of a core) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c, lat, st = r["convergence"], r["latency"], r["steady"]
        rpr = r["convergence_requests_per_reconcile"] or 0
        srpr = st["requests"] / st["reconciles"] if st["reconciles"] else float("nan")
        rows.append(
            f"| {r['endpoints']} | {c['converged']:.1f} | {c.get('placed', float('nan')):.1f} | "
            f"{c.get('serving', float('nan')):.1f} | {lat['p50']:.2f} / {lat['p99']:.2f} | "
            f"{rpr:.1f} | {srpr:.2f} | {st['operator_writes']:.0f} over "
            f"{st['reconcile_passes']:.0f} | "
            f"{max(r['peak_rss_mb'], st['peak_rss_mb']):.0f} | "
            f"{r['convergence_cpu_seconds']:.1f} | {r['idle_cpu_percent']:.1f} |"
        )
    return "\n".join(rows)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["endpoints"] for r in results]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    series = [
        ("convergence (s)", [r["convergence"]["converged"] for r in results], 120),
        ("reconcile p99 (s)", [r["latency"]["p99"] for r in results], 2),
        (
            "peak RSS (MB)",
            [max(r["peak_rss_mb"], r["steady"]["peak_rss_mb"]) for r in results],
            250,
        ),
        ("CPU to converge (s)", [r["convergence_cpu_seconds"] for r in results], None),
    ]
    for ax, (title, values, target) in zip(axes, series, strict=True):
        ax.plot(sizes, values, marker="o")
        if target is not None:
            ax.axhline(target, color="red", linestyle="--", linewidth=1, label="target")
            ax.legend()
        ax.set_xscale("log")
        ax.set_xlabel("InferenceEndpoints")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--policies", type=int, default=50)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--idle", type=float, default=20, help="idle window at default timers")
    parser.add_argument("--steady", type=float, default=45, help="steady window, seconds")
    parser.add_argument(
        "--steady-rate",
        type=float,
        default=100,
        help="steady-state timers run every max(1, n / rate) s (reconcile) and a quarter of that"
        " (scale), as in production (60 s and 15 s)",
    )
    parser.add_argument(
        "--restart-timeout",
        type=float,
        default=300,
        help="how long a restarted operator may take to reconcile every endpoint once",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path.home() / ".cache" / "frugal" / "bench-scale"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    parser.add_argument("--keep", action="store_true", help="leave the fleet running")
    parser.add_argument(
        "--prefix", default="", help="command prefix of the first operator, e.g. a profiler"
    )
    parser.add_argument(
        "--no-reaction",
        dest="reaction",
        action="store_false",
        help="skip the control-loop reaction at the largest size",
    )
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="only merge these result files into --out"
    )
    args = parser.parse_args()
    if args.merge:
        merge_reports(args.merge, args.out)
        return
    args.prefix = args.prefix.split()
    sizes = [int(s) for s in args.sizes.split(",")]
    args.size_list = sizes

    fleet = ScaleFleet(args.workdir / "fleet", name="frugal-scale")
    t = time.monotonic()
    pools = karpenter_pools(**NODES, instance_types=INSTANCE_TYPES, reserved_pool="reserved")
    fleet.up(pools, crds=REPO / "crds", timeout=300)
    print(f"fleet of {sum(NODES.values())} nodes up in {time.monotonic() - t:.0f}s", flush=True)
    api = api_client(fleet.kubeconfig)
    results: list[dict[str, Any]] = []
    try:
        for n in sizes:
            results.append(run_size(fleet, api, n, args))
            write_report(results, args.out)  # what is measured is kept if a later size fails
    finally:
        api.close()
        if not args.keep:
            fleet.down()
    print(table(results))


def write_report(results: list[dict[str, Any]], out: Path) -> None:
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "nodes": sum(NODES.values()),
        "results": sorted(results, key=lambda r: r["endpoints"]),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    plot(report["results"], out.with_suffix(".png"))


def merge_reports(paths: list[Path], out: Path) -> None:
    """One table and one plot from the results of separate runs (one size per run)."""
    results = [r for p in paths for r in json.loads(p.read_text())["results"]]
    write_report(results, out)
    print(table(sorted(results, key=lambda r: r["endpoints"])))


if __name__ == "__main__":
    main()
