"""The chart's alerts, dashboard and kube-state-metrics config are valid and read real series.

promtool (Debian's prometheus package) checks the rules and runs alert unit tests on sample
series; every metric name the alerts and the dashboard use must be one that frugal's operator,
its gateway, vLLM (as the engine simulator exports it) or kube-state-metrics with this chart's
custom-resource config actually produces; every status path that config reads must exist in the
CRDs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.chart import CHART, REPO, one, template, value_sets

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed: run `make deps` (Debian's prometheus)"
)
METRIC = re.compile(r"\b(frugal_[a-z0-9_]*[a-z0-9]|vllm:[a-z0-9_:]+|kube_[a-z0-9_]+)\b")
KSM_STANDARD = {"kube_deployment_status_replicas_available"}
"""kube-state-metrics' own series the alerts use (not from the custom-resource config)."""


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return template(value_sets()["monitoring"])


@pytest.fixture(scope="module")
def rules(docs) -> dict[str, Any]:
    return one(docs, "PrometheusRule", "frugal")["spec"]


@pytest.fixture(scope="module")
def dashboard(docs) -> dict[str, Any]:
    return json.loads(one(docs, "ConfigMap", "frugal-dashboard")["data"]["frugal-fleet.json"])


def ksm_config() -> dict[str, Any]:
    return yaml.safe_load((CHART / "files" / "kube-state-metrics.yaml").read_text())


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, check=False)


# --- which series exist -------------------------------------------------------------------------


def _exported(metrics: list[Any]) -> set[str]:
    """Series names prometheus_client exports for these metric objects."""
    names = set()
    for metric in metrics:
        for family in metric.describe():
            base, kind = family.name, family.type
            if kind == "counter":
                names |= {f"{base}_total", f"{base}_created"}
            elif kind == "histogram":
                names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
            else:
                names.add(base)
    return names


def gateway_series() -> set[str]:
    from frugal.gateway.metering import Metrics

    metrics = Metrics()
    return _exported(list(metrics.registry._collector_to_names))


def operator_series() -> set[str]:
    from frugal.controller import metrics

    return _exported([metrics.RECONCILES, metrics.WRITES, metrics.RECONCILE_SECONDS])


def vllm_series() -> set[str]:
    """vLLM's names, as the engine simulator (which mirrors vLLM's exporter) defines them."""
    source = (REPO / "operator" / "frugal" / "enginesim" / "metrics.py").read_text()
    names = set()
    for name in re.findall(r'"(vllm:[a-z_:]+)"', source):
        names |= {name, f"{name}_total", f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def ksm_series() -> set[str]:
    names = set()
    for res in ksm_config()["spec"]["resources"]:
        names |= {f"{res['metricNamePrefix']}_{m['name']}" for m in res["metrics"]}
    return names


def known_series() -> set[str]:
    return gateway_series() | operator_series() | vllm_series() | ksm_series() | KSM_STANDARD


LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def names_in(expr: str) -> set[str]:
    """Series names in a PromQL expression (not label names)."""
    found = set()
    # {__name__=~"frugal_(inferenceendpoint|routingpolicy)_status_condition"}
    for prefix, alts, suffix in re.findall(r'__name__=~"(\w+)\(([\w|]+)\)(\w+)"', expr):
        found |= {f"{prefix}{alt}{suffix}" for alt in alts.split("|")}
    bare = LABEL_LISTS.sub(" ", re.sub(r"\{[^}]*\}", " ", expr))
    return found | set(METRIC.findall(bare))


def test_gateway_and_operator_metrics_are_discovered() -> None:
    """Guard for the checks below: the sources of series names are not empty."""
    assert {"frugal_gateway_cost_usd_total", "frugal_gateway_waiting"} <= gateway_series()
    assert "frugal_reconciles_total" in operator_series()
    assert "vllm:num_requests_running" in vllm_series()
    assert "frugal_inferenceendpoint_cost_hourly_usd" in ksm_series()


def test_alerts_use_only_series_that_exist(rules) -> None:
    known = known_series()
    for group in rules["groups"]:
        for rule in group["rules"]:
            used = names_in(rule["expr"])
            assert used, rule["alert"]
            assert used <= known, f"{rule['alert']}: unknown series {sorted(used - known)}"


def test_dashboard_uses_only_series_that_exist(dashboard) -> None:
    known = known_series()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            used = names_in(target["expr"])
            assert used, panel["title"]
            assert used <= known, f"{panel['title']}: unknown series {sorted(used - known)}"
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            assert names_in(var["query"]["query"]) <= known


# --- promtool -----------------------------------------------------------------------------------


@needs_promtool
def test_rules_pass_promtool_check(rules, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    out = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
def test_dashboard_queries_are_valid_promql(dashboard, tmp_path: Path) -> None:
    """Grafana's variables substituted, each query must parse (checked as a recording rule)."""
    subst = {
        "$__rate_interval": "5m",
        "$__range": "1h",
        "$namespace": ".*",
        "$team": ".*",
    }
    recording = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in subst.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, expr
            recording.append({"record": f"dashboard:panel_{panel['id']}", "expr": expr})
    assert len(recording) >= 15
    groups = {"groups": [{"name": "dashboard", "rules": recording}]}
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump(groups))
    out = promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


IE = "frugal_inferenceendpoint_status_condition"


def alert_tests() -> list[dict[str, Any]]:
    """Sample series (one sample a minute) and the alerts they must (and must not) fire."""
    a = {"namespace": "dev", "name": "a"}
    b = {"namespace": "dev", "name": "b"}
    return [
        {
            "interval": "1m",
            "input_series": [
                _series(IE, {**a, "type": "BudgetExceeded", "reason": "OverBudget"}, "1x40"),
                _series(IE, {**b, "type": "BudgetExceeded", "reason": "WithinBudget"}, "0x40"),
                # a: not Ready and not at zero → alert; b: at zero → no alert.
                _series(IE, {**a, "type": "Ready", "reason": "NoReplicaReady"}, "0x40"),
                _series(IE, {**a, "type": "ScaledToZero", "reason": "HasReplicas"}, "0x40"),
                _series(IE, {**b, "type": "Ready", "reason": "ScaledToZero"}, "0x40"),
                _series(IE, {**b, "type": "ScaledToZero", "reason": "ScaledToZero"}, "1x40"),
                _series(IE, {**a, "type": "Placed", "reason": "Placed"}, "1x40"),
                _series(IE, {**b, "type": "Placed", "reason": "NoGpuFits"}, "0x40"),
                _series(
                    "frugal_routingpolicy_status_condition",
                    {
                        "namespace": "support",
                        "name": "chat",
                        "type": "SignalsAvailable",
                        "reason": "SignalsAbsent",
                        "customresource_kind": "RoutingPolicy",
                    },
                    "0x40",
                ),
                _series("frugal_gateway_waiting", {"namespace": "dev", "endpoint": "a"}, "2x40"),
            ],
            "alert_rule_test": [
                {
                    "eval_time": "20m",
                    "alertname": "FrugalBudgetExceeded",
                    "exp_alerts": [{"exp_labels": {**a, "severity": "warning"}}],
                },
                {
                    "eval_time": "20m",
                    "alertname": "FrugalEndpointNotReady",
                    "exp_alerts": [{"exp_labels": {**a, "severity": "warning"}}],
                },
                {
                    "eval_time": "20m",
                    "alertname": "FrugalEndpointNotPlaced",
                    "exp_alerts": [{"exp_labels": {**b, "severity": "warning"}}],
                },
                {
                    "eval_time": "20m",
                    "alertname": "FrugalSignalsStale",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "namespace": "support",
                                "name": "chat",
                                "customresource_kind": "RoutingPolicy",
                                "severity": "warning",
                            }
                        }
                    ],
                },
                {
                    "eval_time": "20m",
                    "alertname": "FrugalGatewayHoldingRequests",
                    "exp_alerts": [
                        {"exp_labels": {"namespace": "dev", "endpoint": "a", "severity": "warning"}}
                    ],
                },
                # Not yet: the alerts wait their `for`.
                {"eval_time": "5m", "alertname": "FrugalBudgetExceeded", "exp_alerts": []},
                {"eval_time": "5m", "alertname": "FrugalEndpointNotReady", "exp_alerts": []},
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                # Weights flip every minute for an hour: oscillation; a steady policy does not.
                _series(
                    "frugal_routingpolicy_weight_percent",
                    {"namespace": "support", "name": "flappy", "tier": "small"},
                    " ".join(["60 40"] * 45),
                ),
                _series(
                    "frugal_routingpolicy_weight_percent",
                    {"namespace": "support", "name": "steady", "tier": "small"},
                    "70x90",
                ),
                _series(
                    "frugal_reconciles_total",
                    {"namespace": "frugal-system", "kind": "InferenceEndpoint", "result": "ok"},
                    "0+10x60",
                ),
                _series(
                    "frugal_reconciles_total",
                    {"namespace": "frugal-system", "kind": "InferenceEndpoint", "result": "error"},
                    "0+5x60",
                ),
                _series(
                    "kube_deployment_status_replicas_available",
                    {"namespace": "frugal-system", "deployment": "frugal-operator"},
                    "0x30",
                ),
            ],
            "alert_rule_test": [
                {
                    "eval_time": "70m",
                    "alertname": "FrugalRerouteOscillation",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "namespace": "support",
                                "name": "flappy",
                                "severity": "warning",
                            }
                        }
                    ],
                },
                {
                    "eval_time": "30m",
                    "alertname": "FrugalReconcileErrors",
                    "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
                },
                {
                    "eval_time": "15m",
                    "alertname": "FrugalOperatorDown",
                    "exp_alerts": [{"exp_labels": {"severity": "critical"}}],
                },
            ],
        },
    ]


VALUES = {
    "FrugalReconcileErrors": "33.33%",
}
"""What ``{{ $value | humanizePercentage }}`` renders to in the samples above."""


def _expected_annotations(rules: dict[str, Any], tests: list[dict[str, Any]]) -> None:
    """Fill exp_annotations: the rule's templates with the alert's labels (and value)."""
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    for test in tests:
        for case in test["alert_rule_test"]:
            rule = by_name[case["alertname"]]
            for alert in case["exp_alerts"]:
                out = {}
                for key, template_text in rule["annotations"].items():
                    text = template_text.replace(
                        "{{ $value | humanizePercentage }}", VALUES.get(case["alertname"], "?")
                    )
                    for label, value in alert["exp_labels"].items():
                        text = text.replace(f"{{{{ $labels.{label} }}}}", value)
                    assert "{{" not in text, text
                    out[key] = text
                alert["exp_annotations"] = out


@needs_promtool
def test_alerts_fire_on_sample_series(rules, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    cases = alert_tests()
    _expected_annotations(rules, cases)
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": cases}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    out = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_operator_alert_only_with_operator_metrics() -> None:
    spec = one(template({"monitoring": {"prometheusRule": {"enabled": True}}}), "PrometheusRule")[
        "spec"
    ]
    alerts = {r["alert"] for g in spec["groups"] for r in g["rules"]}
    assert "FrugalReconcileErrors" not in alerts
    assert "FrugalGatewayErrors" not in alerts  # no gateway either
    assert {"FrugalBudgetExceeded", "FrugalOperatorDown", "FrugalRerouteOscillation"} <= alerts


# --- kube-state-metrics custom-resource config ----------------------------------------------------


def _crd_schema(kind: str) -> dict[str, Any]:
    for path in (REPO / "crds").glob("frugal.dev_*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    raise KeyError(kind)


def _walk(schema: dict[str, Any], path: list[str], where: str) -> dict[str, Any]:
    node = schema
    for part in path:
        if node.get("type") == "array":
            node = node["items"]
        props = node.get("properties") or {}
        assert part in props, f"{where}: {'.'.join(path)} is not in the CRD (at {part!r})"
        node = props[part]
    return node


def test_kube_state_metrics_paths_exist_in_the_crds() -> None:
    config = ksm_config()
    assert config["kind"] == "CustomResourceStateMetrics"
    kinds = set()
    for res in config["spec"]["resources"]:
        gvk = res["groupVersionKind"]
        assert (gvk["group"], gvk["version"]) == ("frugal.dev", "v1alpha1")
        kinds.add(gvk["kind"])
        schema = _crd_schema(gvk["kind"])
        for label, path in res.get("labelsFromPath", {}).items():
            if path[0] != "metadata":
                _walk(schema, path, f"{gvk['kind']} label {label}")
        for metric in res["metrics"]:
            each = metric["each"]
            spec = each[each["type"].lower().replace("stateset", "stateSet")]
            base = spec.get("path", [])
            node = _walk(schema, base, f"{gvk['kind']} {metric['name']}") if base else schema
            element = node.get("items", node)
            for label, rel in spec.get("labelsFromPath", {}).items():
                if base:
                    _walk(element, rel, f"{gvk['kind']} {metric['name']} label {label}")
                else:
                    _walk(schema, rel, f"{gvk['kind']} {metric['name']} label {label}")
            if "valueFrom" in spec:
                _walk(element, spec["valueFrom"], f"{gvk['kind']} {metric['name']} value")
            if each["type"] == "StateSet" and "enum" in node:
                assert set(spec["list"]) == set(node["enum"])
    assert kinds == {"InferenceEndpoint", "RoutingPolicy", "CachePolicy"}


def test_phase_stateset_lists_every_phase() -> None:
    from typing import get_args

    from frugal.api.base import Phase

    (ie,) = [
        r
        for r in ksm_config()["spec"]["resources"]
        if r["groupVersionKind"]["kind"] == "InferenceEndpoint"
    ]
    (phase,) = [m for m in ie["metrics"] if m["name"] == "status_phase"]
    assert phase["each"]["stateSet"]["list"] == list(get_args(Phase))
