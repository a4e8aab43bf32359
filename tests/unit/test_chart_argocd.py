"""Argo CD: the health checks run in a real Lua interpreter on the status frugal writes.

Argo CD hands a health script the live object as the Lua table ``obj`` and reads back
``{status, message}``. The samples here are produced by the operator's own status functions
(frugal.controller.status, frugal.controller.loops), so a change to what the operator writes
shows up here. Argo CD embeds gopher-lua (Lua 5.1); the scripts avoid anything newer, which the
last test checks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from frugal.api.base import CapacityType
from frugal.controller.loops import _signals_condition
from frugal.controller.status import Observed, condition, endpoint_status
from support.chart import ARGOCD, REPO, health_scripts, lua_health

NOW = "2026-01-05T10:00:00Z"
GPU = {"type": "l4", "count": 1, "reason": "cheapest GPU that fits"}
COST = {"hourlyUSD": 0.72, "source": "static"}


def placement(total: int, *, code: str = "Placed", spot: int | None = None) -> dict[str, Any]:
    spot = total if spot is None else spot
    out: dict[str, Any] = {
        "desired": {"total": total, "reserved": 0, "spot": spot, "onDemand": total - spot},
        "placed": {"code": code, "message": f"{code}: test"},
    }
    if code in ("Placed", "ReservationFull"):
        out |= {"gpu": GPU, "cost": COST}
    return out


def endpoint(
    status_placement: dict[str, Any] | None,
    ready: int = 0,
    *,
    generation: int = 1,
    observed_generation: int | None = None,
    extra_conditions: list[dict[str, Any]] = (),
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": "chat", "namespace": "support", "generation": generation},
        "spec": {"model": {"uri": "hf://x/y", "servedName": "chat"}},
    }
    if status_placement is None:
        return obj
    total = status_placement["desired"]["total"]
    observed = [Observed(CapacityType.SPOT, total, ready)] if total else []
    status = endpoint_status(
        name="chat",
        namespace="support",
        generation=observed_generation if observed_generation is not None else generation,
        placement=status_placement,
        observed=observed,
        previous={},
        url="http://chat.support.svc:8000/v1",
        now=NOW,
    )
    status["conditions"] += list(extra_conditions)
    status["kopf"] = {"progress": {}}
    obj["status"] = status
    return obj


def budget(exceeded: bool) -> dict[str, Any]:
    return condition(
        "BudgetExceeded",
        exceeded,
        "OverHourlyBudget" if exceeded else "WithinBudget",
        "$0.72/h against an hourly budget of $0.50/h (144%)" if exceeded else "within budget",
        previous=[],
        now=NOW,
        generation=1,
    )


ENDPOINT_CASES = {
    "new, no status yet": (endpoint(None), "Progressing", "Waiting for the frugal operator"),
    "serving": (endpoint(placement(2), ready=2), "Healthy", "AllReplicasReady: 2/2 ready"),
    "serving over budget": (
        endpoint(placement(1), ready=1, extra_conditions=[budget(True)]),
        "Healthy",
        "OverHourlyBudget: $0.72/h against an hourly budget",
    ),
    "serving within budget": (
        endpoint(placement(1), ready=1, extra_conditions=[budget(False)]),
        "Healthy",
        "1/1 ready",
    ),
    "scaled to zero": (endpoint(placement(0), ready=0), "Suspended", "Scaled to zero"),
    "pods starting": (endpoint(placement(2), ready=0), "Progressing", "NoReplicaReady"),
    "some replicas lost": (endpoint(placement(3), ready=1), "Degraded", "1/3 ready"),
    "no GPU fits": (endpoint(placement(1, code="NoGpuFits")), "Degraded", "NoGpuFits"),
    "reservation pool unknown": (
        endpoint(placement(1, code="UnknownReservation")),
        "Degraded",
        "UnknownReservation",
    ),
    "reservation full but placed elsewhere": (
        endpoint(placement(1, code="ReservationFull"), ready=1),
        "Healthy",
        "1/1 ready",
    ),
    "spec changed, not yet reconciled": (
        endpoint(placement(1), ready=1, generation=3, observed_generation=2),
        "Progressing",
        "not yet reconciled",
    ),
}


@pytest.mark.parametrize("case", list(ENDPOINT_CASES))
def test_inference_endpoint_health(case: str, tmp_path: Path) -> None:
    obj, status, message = ENDPOINT_CASES[case]
    got_status, got_message = lua_health(health_scripts()["InferenceEndpoint"], obj, tmp_path)
    assert (got_status, case) == (status, case)
    assert message.lower() in got_message.lower(), got_message


def test_messages_pass_through_unchanged(tmp_path: Path) -> None:
    """Condition messages reach Argo CD as they are (non-ASCII, quotes, newlines)."""
    obj = endpoint(placement(1, code="NoGpuFits"))
    message = 'no GPU fits 70 GB — "h100" is €2.99/h\nsee events'
    for c in obj["status"]["conditions"]:
        if c["type"] == "Placed":
            c["message"] = message
    status, got = lua_health(health_scripts()["InferenceEndpoint"], obj, tmp_path)
    assert (status, got) == ("Degraded", f"NoGpuFits: {message}")


def test_endpoint_samples_are_what_the_operator_writes() -> None:
    """Guard: the phases the samples cover are every phase endpoint_status produces."""
    phases = {
        obj.get("status", {}).get("phase")
        for obj, _, _ in ENDPOINT_CASES.values()
        if "status" in obj
    }
    assert phases == {"Pending", "Serving", "ScaledToZero", "Degraded"}


def policy(
    weights: dict[str, int] | None,
    *,
    signals_error: str | None = None,
    generation: int = 1,
    observed_generation: int = 1,
    ready: bool | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "RoutingPolicy",
        "metadata": {"name": "chat", "namespace": "support", "generation": generation},
        "spec": {"modelName": "chat"},
    }
    if weights is None:
        return obj
    conditions = [_signals_condition({}, signals_error, NOW, observed_generation)]
    if ready is not None:
        conditions.append(
            condition(
                "Ready",
                ready,
                "TiersReady" if ready else "NoTierAvailable",
                "tiers ready" if ready else "no tier can serve",
                previous=[],
                now=NOW,
                generation=observed_generation,
            )
        )
    obj["status"] = {
        "weights": weights,
        "weightsSummary": ",".join(f"{k}={v}" for k, v in weights.items()),
        "conditions": conditions,
        "observedGeneration": observed_generation,
    }
    return obj


POLICY_CASES = {
    "new": (policy(None), "Progressing", "Waiting for the frugal operator"),
    "weights set": (policy({"small": 70, "large": 30}), "Healthy", "small=70,large=30"),
    "signals absent, holding weights": (
        policy({"small": 70, "large": 30}, signals_error="no Prometheus URL configured"),
        "Healthy",
        "signals absent",
    ),
    "not ready": (policy({"small": 100}, ready=False), "Degraded", "no tier can serve"),
    "spec changed": (
        policy({"small": 100}, generation=2, observed_generation=1),
        "Progressing",
        "not yet reconciled",
    ),
    "no weights yet": (policy({}), "Progressing", "Waiting for tier weights"),
}


@pytest.mark.parametrize("case", list(POLICY_CASES))
def test_routing_policy_health(case: str, tmp_path: Path) -> None:
    obj, status, message = POLICY_CASES[case]
    got_status, got_message = lua_health(health_scripts()["RoutingPolicy"], obj, tmp_path)
    assert (got_status, case) == (status, case)
    assert message.lower() in got_message.lower(), got_message


def cache(conditions: list[tuple[str, bool, str]] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "CachePolicy",
        "metadata": {"name": "faq", "namespace": "support", "generation": 1},
        "spec": {"targetRef": {"kind": "RoutingPolicy", "name": "chat"}},
    }
    if conditions is None:
        return obj
    obj["status"] = {
        "hitRate": {"exact": 0.2, "semantic": 0.1, "total": 0.3},
        "conditions": [
            condition(
                t, ok, t + ("True" if ok else "False"), msg, previous=[], now=NOW, generation=1
            )
            for t, ok, msg in conditions
        ],
        "observedGeneration": 1,
    }
    return obj


CACHE_CASES = {
    "new": (cache(None), "Progressing", "Waiting for the cache"),
    "ready": (cache([("Ready", True, "cache serving")]), "Healthy", "cache serving"),
    "semantic suspended": (
        cache([("Ready", True, "exact cache serving"), ("SemanticSuspended", True, "false hits")]),
        "Healthy",
        "semantic cache suspended",
    ),
    "backend down": (cache([("Ready", False, "redis unreachable")]), "Degraded", "redis"),
}


@pytest.mark.parametrize("case", list(CACHE_CASES))
def test_cache_policy_health(case: str, tmp_path: Path) -> None:
    obj, status, message = CACHE_CASES[case]
    got_status, got_message = lua_health(health_scripts()["CachePolicy"], obj, tmp_path)
    assert (got_status, case) == (status, case)
    assert message.lower() in got_message.lower(), got_message


def test_health_keys_name_every_kind_as_argo_cd_expects() -> None:
    """Argo CD looks up resource.customizations.health.<group>_<Kind>."""
    kinds = set()
    for path in (REPO / "crds").glob("frugal.dev_*.yaml"):
        crd = yaml.safe_load(path.read_text())
        kinds.add(crd["spec"]["names"]["kind"])
    assert set(health_scripts()) == kinds


def test_scripts_stay_within_lua_5_1() -> None:
    """gopher-lua is Lua 5.1: no goto, integer division, bitwise operators or utf8 library."""
    newer = re.compile(r"\bgoto\b|//|~=\s*nil\s*&|\butf8\.|\btable\.move\b|<<|>>|\bmath\.type\b")
    for kind, script in health_scripts().items():
        code = "\n".join(line.split("--", 1)[0] for line in script.splitlines())
        assert not newer.search(code), kind
        assert " & " not in code, kind
        assert " | " not in code, kind


# --- the Application manifests -------------------------------------------------------------


def applications() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(ARGOCD.rglob("*.yaml")):
        docs += [
            d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "Application"
        ]
    return docs


def test_applications_point_at_paths_that_exist() -> None:
    apps = {a["metadata"]["name"]: a for a in applications()}
    assert {"frugal", "frugal-endpoints"} <= set(apps)
    for app in apps.values():
        source = app["spec"]["source"]
        assert app["metadata"]["namespace"] == "argocd"
        if "path" in source:
            assert (REPO / source["path"]).is_dir(), source["path"]
            include = source.get("directory", {}).get("include")
            if include:
                assert (REPO / source["path"] / include).is_file(), include
        else:
            assert source["chart"] == "frugal"
    chart = yaml.safe_load((REPO / "charts/frugal/Chart.yaml").read_text())
    helm_repo = [a for a in applications() if "chart" in a["spec"]["source"]]
    assert [a["spec"]["source"]["targetRevision"] for a in helm_repo] == [chart["version"]]


def test_app_of_apps_has_one_child_per_example_in_its_namespace() -> None:
    children = [
        a for a in applications() if a["spec"]["source"].get("path") == "manifests/examples"
    ]
    examples = sorted((REPO / "manifests" / "examples").glob("*.yaml"))
    assert sorted(c["spec"]["source"]["directory"]["include"] for c in children) == [
        p.name for p in examples
    ]
    for child in children:
        path = REPO / "manifests/examples" / child["spec"]["source"]["directory"]["include"]
        namespaces = {d["metadata"]["namespace"] for d in yaml.safe_load_all(path.read_text()) if d}
        assert namespaces == {child["spec"]["destination"]["namespace"]}


def test_chart_application_values_pass_the_chart_schema() -> None:
    from support.chart import template

    for app in applications():
        helm = app["spec"]["source"].get("helm")
        if helm:
            template(helm.get("valuesObject", {}))
            assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
