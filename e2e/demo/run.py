"""The demo: the paper's customer-support case running live on a simulated GPU fleet.

A compressed day of Banking77 traffic goes through frugal's gateway to engine simulators
standing in for the vLLM pods; frugal's operator places, scales and reroutes on what Prometheus
sees. Along the way spot capacity is reclaimed and the small tier's quality dips. The terminal
shows it live; the summary goes to ``.demo/summary.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import json
import math
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from demo.stack import ENGINES, RESERVATION, Stack
from demo.traffic import Stream, drive
from frugal import kube
from frugal.api.endpoint import InferenceEndpointSpec
from frugal.placement.sizing import fit_gpu
from frugal.render.gateway import render_gateway_config
from frugal.settings import Settings
from testbed.client import Cluster
from testbed.controlplane import REPO, bin_dir

EXAMPLES = REPO / "manifests" / "examples"
NAMESPACES = ("support", "dev")
SUPPORT_KEY, DEV_KEY = "demo-support-key", "demo-dev-key"


def demo_manifests() -> list[dict[str, Any]]:
    """The shipped examples, with timings compressed so that a day fits in minutes."""
    docs = [
        d
        for name in ("customer-support.yaml", "dev-scale-to-zero.yaml")
        for d in yaml.safe_load_all((EXAMPLES / name).read_text())
    ]
    out = []
    for doc in copy.deepcopy(docs):
        spec = doc["spec"]
        if doc["kind"] == "InferenceEndpoint":
            spec.setdefault("scaling", {}).update(coldStartBudget="60s")
            if spec["scaling"].get("minReplicas", 1) == 0:
                spec["scaling"]["idleAfter"] = "20s"
            if doc["metadata"]["name"] == "support-medium":
                # Two replicas: one on spot (maxShare 0.5), one on the on-demand floor, so that
                # the spot reclamation has something to take.
                spec["scaling"]["minReplicas"] = 2
        elif doc["kind"] == "RoutingPolicy":
            # Steps spaced wider than the quality measurement's lag, so weight does not
            # overshoot while the gauges catch up with a dip or a recovery.
            spec["autoReroute"].update(interval="3s", cooldown="15s", hysteresis=0.01)
            # Every fresh answer is compared: in a compressed day the 10 s quality window holds
            # few of them once the cache serves most requests, and at half of them the small
            # tier's measured quality (0.96 nominal, against an objective of 0.95) wandered
            # below the objective after the recovery often enough to hide the move back.
            spec["shadow"] = {"sampleRate": 1.0, "referenceTier": "large"}
        elif doc["kind"] == "CachePolicy":
            spec["backend"] = {"type": "memory"}
        out.append(doc)
    return out


def operator_settings(prometheus: str) -> dict[str, Any]:
    return {
        "profile": "karpenter",
        "reconcileIntervalSeconds": 5,
        "reservations": [{"name": RESERVATION, "gpuType": "l4", "gpus": 2}],
        "engine": {"cpuPerGpu": "4", "memoryPerGpu": "16Gi"},
        "prometheus": {"url": prometheus, "qualityWindow": "10s"},
        "loops": {
            "scaleIntervalSeconds": 2,
            "rerouteTickSeconds": 2,
            "scaleDownStabilisationSeconds": 10,
            "spotUnschedulableGraceSeconds": 5,
        },
    }


class Demo:
    def __init__(self, workdir: Path, minutes: float, hours: float = 24.0) -> None:
        self.workdir = workdir
        self.stack = Stack(workdir)
        self.hours = hours
        self.seconds_per_hour = minutes * 60 / hours
        self.console = Console()
        self.events: list[dict[str, Any]] = []
        self.cost_usd = 0.0
        self.hour = 0.0
        self.streams = [
            Stream("support-assistant", peak_rps=12.0, api_key=SUPPORT_KEY),
            Stream(
                "dev-assistant",
                peak_rps=0.6,
                api_key=DEV_KEY,
                active=lambda h: 9 <= h < 10 or 15 <= h < 16,
            ),
        ]
        self.cluster: Cluster | None = None
        self.gateway_config = workdir / "gateway.yaml"
        self.seen: dict[str, dict[str, Any]] = {}
        self.routing_decisions: list[dict[str, Any]] = []
        self.misplaced = Counter()

    # --- set-up ------------------------------------------------------------------------------

    def start(self) -> None:
        say = self.console.log
        state = self.stack.up(say)
        self.cluster = Cluster(Path(state.kubeconfig), str(bin_dir("kubernetes") / "kubectl"))
        for ns in NAMESPACES:
            self.cluster.ensure_namespace(ns)
        say("starting the frugal operator")
        self.stack.start_operator(operator_settings(state.prometheus))
        say("applying manifests/examples (the paper's customer-support case, a dev endpoint)")
        for doc in demo_manifests():
            self.cluster.apply(doc, manager="demo-gitops")
        self.sync_gateway_config()
        say("starting the frugal gateway")
        self.stack.start_gateway(self.gateway_config)

    def sync_gateway_config(self) -> None:
        """What the operator renders into the gateway's ConfigMap, pointed at the simulators."""
        assert self.cluster is not None
        engines = self.stack.state.engines
        configs = []
        for ns in NAMESPACES:
            objs = {
                kind: self._list(kind, ns)
                for kind in ("InferenceEndpoint", "RoutingPolicy", "CachePolicy")
            }
            configs.append(
                render_gateway_config(
                    ns,
                    objs["RoutingPolicy"],
                    objs["CachePolicy"],
                    objs["InferenceEndpoint"],
                    resolve=lambda ie: engines.get(ie["metadata"]["name"]),
                )
            )
        merged = {
            "namespace": "support",
            "policies": [p for c in configs for p in c["policies"]],
            "upstreams": {k: v for c in configs for k, v in c["upstreams"].items()},
            "wake": {"kubernetes": True},
            # A short quality memory, so that a dip and a recovery show within a compressed day.
            # No false-hit sampling: the engine simulator answers every wording differently by
            # design, so each verified semantic hit would count as false.
            "limits": {"qualityWindow": 10, "falseHitSampleRate": 0},
            "tenants": [
                {
                    "name": "support-team",
                    "apiKeys": [SUPPORT_KEY],
                    "cost": {
                        "team": "customer-support",
                        "project": "helpdesk",
                        "environment": "prod",
                    },
                },
                {
                    "name": "dev-team",
                    "apiKeys": [DEV_KEY],
                    "cost": {"team": "ml-platform", "project": "sandbox", "environment": "dev"},
                },
            ],
        }
        text = yaml.safe_dump(merged, sort_keys=False)
        if not self.gateway_config.exists() or self.gateway_config.read_text() != text:
            tmp = self.gateway_config.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(self.gateway_config)

    def _list(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        assert self.cluster is not None
        path = kube.resource_path("frugal.dev/v1alpha1", kind, namespace)
        items = kube.request(self.cluster.api, "GET", path)["items"]
        for item in items:
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", "frugal.dev/v1alpha1")
        return items

    # --- the day -----------------------------------------------------------------------------

    def on_hour(self, hour: float) -> None:
        h = int(hour)
        if h == 6:
            self._event("spot reclaimed", "every spot node is taken back")
            self.stack.fleet.delete_pool("spot")
        if h == 11:
            self._event("quality dip", "the small tier starts answering worse")
            self._sim_quality("support-small", 0.75)
        if h == 15:
            self._event("quality recovered", "the small tier is back to normal")
            self._sim_quality("support-small", 0.96)

    def _sim_quality(self, endpoint: str, quality: float) -> None:
        url = self.stack.state.engines[endpoint] + "/sim/config"
        req = urllib.request.Request(
            url,
            data=json.dumps({"quality": quality}).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()

    def _event(self, what: str, detail: str) -> None:
        self.events.append({"hour": round(self.hour, 1), "event": what, "detail": detail})

    async def run(self) -> dict[str, Any]:
        traffic = asyncio.create_task(
            drive(
                self.stack.state.gateway,
                self.streams,
                hours=self.hours,
                seconds_per_hour=self.seconds_per_hour,
                on_hour=self.on_hour,
            )
        )
        started = time.monotonic()
        last = started
        with Live(self.view(), console=self.console, refresh_per_second=2, transient=False) as live:
            while not traffic.done():
                await asyncio.sleep(1)
                now = time.monotonic()
                self.hour = (now - started) / self.seconds_per_hour
                endpoints = await asyncio.to_thread(self._endpoints)
                self._observe(endpoints)
                hourly = sum(
                    (e.get("status", {}).get("cost") or {}).get("hourlyUSD") or 0 for e in endpoints
                )
                self.cost_usd += hourly * (now - last) / self.seconds_per_hour
                last = now
                await asyncio.to_thread(self.sync_gateway_config)
                live.update(self.view(endpoints))
        await traffic
        return await asyncio.to_thread(self.summary)

    def _observe(self, endpoints: list[dict[str, Any]]) -> None:
        """Remember what the summary needs: readiness, zero and wake, pools, reroutes."""
        for e in endpoints:
            name = e["metadata"]["name"]
            st = e.get("status", {})
            seen = self.seen.setdefault(
                name,
                {
                    "everReady": False,
                    "wentToZero": False,
                    "woke": False,
                    "maxOnCapacity": Counter(),
                },
            )
            if st.get("phase") == "Serving":
                seen["everReady"] = True
                if seen["wentToZero"]:
                    seen["woke"] = True
            if st.get("phase") == "ScaledToZero":
                seen["wentToZero"] = True
            reps = st.get("replicas") or {}
            for ct, key in (("reserved", "reserved"), ("spot", "spot"), ("on-demand", "onDemand")):
                seen["maxOnCapacity"][ct] = max(seen["maxOnCapacity"][ct], reps.get(key, 0))
        decision = (self._routing().get("status") or {}).get("lastDecision")
        if decision and (
            not self.routing_decisions or self.routing_decisions[-1]["time"] != decision["time"]
        ):
            self.routing_decisions.append({**decision, "hour": round(self.hour, 1)})
        if int(self.hour * 4) % 8 == 0:
            self._check_pods()

    def _check_pods(self) -> None:
        """Count pods running on a node of another capacity type than their Deployment's."""
        assert self.cluster is not None
        nodes = {
            n["metadata"]["name"]: n["metadata"]["labels"]
            for n in kube.request(self.cluster.api, "GET", "/api/v1/nodes")["items"]
        }
        for ns in NAMESPACES:
            pods = kube.request(
                self.cluster.api,
                "GET",
                f"/api/v1/namespaces/{ns}/pods",
                query=[("labelSelector", "frugal.dev/endpoint")],
            )["items"]
            for pod in pods:
                node = nodes.get(pod["spec"].get("nodeName") or "")
                if node and node.get("karpenter.sh/capacity-type") != pod["metadata"]["labels"].get(
                    "frugal.dev/capacity-type"
                ):
                    self.misplaced[pod["metadata"]["labels"]["frugal.dev/endpoint"]] += 1

    def _quality_retention(self, by_tier: Counter) -> float | None:
        """Traffic-weighted quality of the answers versus the reference tier, over the day."""
        window = f"{max(int(self.hours * self.seconds_per_hour), 60)}s"
        total = sum(by_tier.values())
        if not total:
            return None
        retained = 0.0
        for tier, count in by_tier.items():
            promql = (
                f'avg_over_time(frugal_gateway_quality_ratio{{policy="support",'
                f'tier="{tier}"}}[{window}])'
            )
            url = f"{self.stack.state.prometheus}/api/v1/query?" + urllib.parse.urlencode(
                {"query": promql}
            )
            with urllib.request.urlopen(url, timeout=10) as r:
                result = json.loads(r.read())["data"]["result"]
            quality = float(result[0]["value"][1]) if result else 1.0 if tier == "large" else None
            if quality is None:
                return None
            retained += count / total * quality
        return round(retained, 4)

    def _endpoints(self) -> list[dict[str, Any]]:
        return [e for ns in NAMESPACES for e in self._list("InferenceEndpoint", ns)]

    # --- presentation ------------------------------------------------------------------------

    def view(self, endpoints: list[dict[str, Any]] | None = None) -> Group:
        table = Table(title=f"frugal demo — hour {self.hour:4.1f} of {self.hours:.0f}")
        for col in ("endpoint", "phase", "GPU", "reserved", "spot", "on-demand", "ready", "$/h"):
            table.add_column(col)
        for e in endpoints or []:
            st = e.get("status", {})
            reps = st.get("replicas", {})
            table.add_row(
                e["metadata"]["name"],
                st.get("phase", "-"),
                (st.get("gpu") or {}).get("type", "-"),
                str(reps.get("reserved", 0)),
                str(reps.get("spot", 0)),
                str(reps.get("onDemand", 0)),
                reps.get("summary", "-"),
                f"{(st.get('cost') or {}).get('hourlyUSD', 0):.2f}",
            )
        support = self.streams[0].stats
        rp = self._routing()
        totals = Table.grid(padding=(0, 2))
        totals.add_row("weights", (rp.get("status") or {}).get("weightsSummary", "-"))
        decision = (rp.get("status") or {}).get("lastDecision") or {}
        totals.add_row("last reroute", decision.get("reason", "-"))
        hits = support.by_cache.get("exact", 0) + support.by_cache.get("semantic", 0)
        totals.add_row(
            "cache hit rate", f"{hits / max(support.ok, 1):.0%} ({dict(support.by_cache)})"
        )
        totals.add_row(
            "requests",
            f"{support.sent} sent, {support.failed} failed, tiers {dict(support.by_tier)}",
        )
        totals.add_row("$ so far", f"{self.cost_usd:,.2f}")
        return Group(table, totals)

    def _routing(self) -> dict[str, Any]:
        items = self._list("RoutingPolicy", "support") if self.cluster else []
        return items[0] if items else {}

    def summary(self) -> dict[str, Any]:
        assert self.cluster is not None
        endpoints = self._endpoints()
        support, dev = (s.stats for s in self.streams)
        baseline = baseline_cost(self.hours, peak_rps=self.streams[0].peak_rps * 1.9)
        events = []
        for ns in NAMESPACES:
            for ev in kube.request(self.cluster.api, "GET", f"/api/v1/namespaces/{ns}/events")[
                "items"
            ]:
                if ev["involvedObject"]["kind"] in ("InferenceEndpoint", "RoutingPolicy"):
                    events.append(
                        {
                            "object": ev["involvedObject"]["name"],
                            "reason": ev["reason"],
                            "message": ev["message"],
                            "type": ev["type"],
                            "count": ev.get("count", 1),
                        }
                    )
        reasons = Counter(e["reason"] for e in events)
        return {
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "simulatedHours": self.hours,
            "costUSD": round(self.cost_usd, 2),
            "baselineCostUSD": round(baseline, 2),
            "savingPercent": round(100 * (1 - self.cost_usd / baseline), 1) if baseline else None,
            "requests": {"support": _stats(support), "dev": _stats(dev)},
            "qualityRetention": self._quality_retention(support.by_tier),
            "endpoints": {
                e["metadata"]["name"]: {
                    "phase": e.get("status", {}).get("phase"),
                    "replicas": e.get("status", {}).get("replicas"),
                    "gpu": (e.get("status", {}).get("gpu") or {}).get("type"),
                    "spot": e.get("status", {}).get("spot"),
                    **self.seen.get(e["metadata"]["name"], {}),
                    "misplacedPods": self.misplaced[e["metadata"]["name"]],
                }
                for e in endpoints
            },
            "routing": (self._routing().get("status") or {}),
            "routingDecisions": self.routing_decisions,
            "scenario": self.events,
            "decisions": reasons,
            "events": events,
        }


def _stats(stats) -> dict[str, Any]:
    return {
        "sent": stats.sent,
        "ok": stats.ok,
        "failed": stats.failed,
        "errors": {str(k): v for k, v in stats.errors.items()},
        "byTier": dict(stats.by_tier),
        "byCache": dict(stats.by_cache),
        "p50Seconds": stats.percentile(0.5),
        "p95Seconds": stats.percentile(0.95),
    }


def baseline_cost(hours: float, peak_rps: float) -> float:
    """Always-on, frontier-only, on-demand: the large tier sized for the peak, all day."""
    docs = [d for d in demo_manifests() if d["metadata"]["name"] == "support-large"]
    spec = InferenceEndpointSpec.model_validate(docs[0]["spec"])
    settings = Settings()
    fit = fit_gpu(spec, settings.catalog(), settings.engine.default_max_model_len)
    assert fit.gpu is not None
    large = next(e for e in ENGINES if e.endpoint == "support-large")
    seconds_per_request = large.ttft_seconds + 40 / large.tokens_per_second
    replicas = max(1, math.ceil(peak_rps * seconds_per_request / spec.scaling.target_in_flight))
    return replicas * fit.count * fit.gpu.on_demand * hours


def main(minutes: float, keep: bool, out: Path) -> dict[str, Any]:
    workdir = out.parent
    workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(workdir, minutes)
    try:
        demo.start()
        summary = asyncio.run(demo.run())
        out.write_text(json.dumps(summary, indent=2, default=str))
        demo.console.print_json(
            data={
                k: summary[k]
                for k in (
                    "costUSD",
                    "baselineCostUSD",
                    "savingPercent",
                    "requests",
                    "scenario",
                    "decisions",
                )
            },
            default=str,
        )
        demo.console.log(f"summary written to {out}")
        if keep:
            demo.console.log(
                f"cluster kept: export KUBECONFIG={demo.stack.state.kubeconfig}; "
                "`make demo-down` stops everything"
            )
        return summary
    finally:
        if not keep:
            with contextlib.suppress(Exception):
                demo.stack.down(quiet=True)
