"""The Helm chart renders what the operator needs, and nothing it does not (no cluster needed).

Rendering uses the real helm binary (the testbed's pinned build); the operator's command line is
checked by parsing the rendered arguments with the real ``frugal`` CLI, and the settings
ConfigMap by loading it with the operator's own settings loader.
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import BaseModel

from frugal import __version__
from frugal.cli import app
from frugal.settings import Settings, load_settings
from support.chart import (
    BUNDLE,
    CHART,
    CI_VALUES,
    NAMESPACED,
    REPO,
    container_args,
    find,
    helm,
    helm_path,
    kubectl_path,
    one,
    pod_specs,
    run,
    template,
    template_process,
    value_sets,
)

SETS = value_sets()
DEFAULT_ELECTION = yaml.safe_load((CHART / "values.yaml").read_text())["operator"]["leaderElection"]
RECOMMENDED = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
)


@pytest.fixture(scope="module", params=sorted(SETS))
def rendered(request) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    values = SETS[request.param]
    return request.param, values, template(values)


# --- chart metadata, CRDs, bundle -------------------------------------------------------------


def test_chart_version_is_the_package_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == chart["appVersion"] == project["version"] == __version__


def test_chart_crds_are_byte_identical_to_the_repository_crds() -> None:
    ours = {p.name: p.read_bytes() for p in (CHART / "crds").iterdir()}
    theirs = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    assert sorted(ours) == sorted(theirs), "run scripts/gen-bundle.sh"
    for name, data in theirs.items():
        assert ours[name] == data, f"charts/frugal/crds/{name} differs; run scripts/gen-bundle.sh"


def test_bundle_is_in_sync_with_the_chart() -> None:
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "gen-bundle.sh"), "--check"],
        capture_output=True,
        text=True,
        env={**os.environ, "HELM": helm_path()},
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_bundle_holds_namespace_crds_and_the_default_chart() -> None:
    docs = [d for d in yaml.safe_load_all(BUNDLE.read_text()) if d]
    assert docs[0]["kind"] == "Namespace"
    assert docs[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    crds = {d["metadata"]["name"] for d in find(docs, "CustomResourceDefinition")}
    assert crds == {
        "inferenceendpoints.frugal.dev",
        "routingpolicies.frugal.dev",
        "cachepolicies.frugal.dev",
    }
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    # The documented uninstall (`-l helm.sh/chart`) removes everything but CRDs and Namespace.
    chart_objects = {(d["kind"], d["metadata"]["name"]) for d in template()}
    labelled = {
        (d["kind"], d["metadata"]["name"])
        for d in docs
        if "helm.sh/chart" in (d["metadata"].get("labels") or {})
    }
    assert labelled == chart_objects
    assert set(kinds) == chart_objects | {("Namespace", "frugal-system")} | {
        ("CustomResourceDefinition", n) for n in crds
    }


def test_kustomize_base_is_the_bundle_and_the_ha_overlay_builds() -> None:
    kubectl = kubectl_path()
    base = run([kubectl, "kustomize", "manifests/kustomize/base"]).stdout
    bundle = [d for d in yaml.safe_load_all(BUNDLE.read_text()) if d]

    def keyed(docs):
        return {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}

    # kustomize orders by kind; the objects are the bundle's, unchanged.
    assert keyed(d for d in yaml.safe_load_all(base) if d) == keyed(bundle)

    overlay = [
        d
        for d in yaml.safe_load_all(
            run([kubectl, "kustomize", "manifests/kustomize/overlays/ha"]).stdout
        )
        if d
    ]
    operator = one(overlay, "Deployment", "frugal-operator")
    assert operator["spec"]["replicas"] == 2
    assert operator["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "--leader-elect" in operator["spec"]["template"]["spec"]["containers"][0]["args"]
    one(overlay, "PodDisruptionBudget", "frugal-operator")
    (settings,) = [
        d for d in find(overlay, "ConfigMap") if d["metadata"]["name"].startswith("frugal-")
    ]
    volume = operator["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
    assert volume == settings["metadata"]["name"] != "frugal-settings"
    load_settings(_write(settings["data"]["settings.yaml"]))


def _write(text: str) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "settings.yaml"
    path.write_text(text)
    return path


# --- every value set ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SETS))
def test_helm_lint_strict(name: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(SETS[name]))
    out = helm("lint", "--strict", str(CHART), "--values", str(values), check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_object_carries_the_recommended_labels(rendered) -> None:
    _, _, docs = rendered
    for doc in docs:
        labels = doc["metadata"].get("labels") or {}
        missing = [k for k in RECOMMENDED if k not in labels]
        assert not missing, f"{doc['kind']}/{doc['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/version"] == __version__


def test_pods_meet_the_restricted_pod_security_standard(rendered) -> None:
    _, _, docs = rendered
    for name, spec in pod_specs(docs).items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not spec.get("hostNetwork"), name
        assert not spec.get("hostPID"), name
        assert all("hostPath" not in v for v in spec.get("volumes", [])), name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert c["resources"]["requests"], name
            assert c["resources"]["limits"], name
            # A read-only root needs a writable /tmp.
            assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), name


def test_operator_arguments_parse_with_the_frugal_cli(rendered) -> None:
    """Every rendered flag exists in `frugal operator` and its value parses."""
    name, values, docs = rendered
    args = container_args(docs, "frugal-operator")
    assert args[0] == "operator"
    command = typer.main.get_command(app).commands["operator"]
    known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    flags = {a.split("=", 1)[0] for a in args[1:] if a.startswith("-")}
    unknown = flags - known
    if unknown == {"--metrics-port"}:
        pytest.skip(
            f"{name}: operator.metrics.enabled renders --metrics-port, which `frugal operator` "
            "does not have yet"
        )
    assert not unknown, f"`frugal operator` has no {sorted(unknown)}"
    ctx = command.make_context("operator", list(args[1:]))
    assert str(ctx.params["settings_file"]) == "/etc/frugal/settings.yaml"
    election = {**DEFAULT_ELECTION, **values.get("operator", {}).get("leaderElection", {})}
    assert ctx.params["leader_elect"] is election["enabled"]
    if election["enabled"]:
        assert ctx.params["lease_name"] == "frugal-operator"
        assert ctx.params["lease_duration"] == election["leaseDurationSeconds"]
        assert ctx.params["renew_deadline"] == election["renewDeadlineSeconds"]
        assert ctx.params["retry_period"] == election["retryPeriodSeconds"]
    env = {e["name"]: e for e in pod_specs(docs)["frugal-operator"]["containers"][0]["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert sorted(ctx.params["namespace"] or []) == sorted(values.get("watchNamespaces", []))
    spec = pod_specs(docs)["frugal-operator"]
    container = spec["containers"][0]
    (health,) = [p for p in container["ports"] if p["name"] == "health"]
    assert ctx.params["liveness"] == f"http://0.0.0.0:{health['containerPort']}/healthz"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/etc/frugal"] == "settings"


def test_settings_configmap_loads_as_operator_settings(rendered) -> None:
    _, values, docs = rendered
    cm = one(docs, "ConfigMap", "frugal-settings")
    data = yaml.safe_load(cm["data"]["settings.yaml"])
    expected = {"profile": "plain", **values.get("settings", {})}
    if values.get("gateway", {}).get("enabled"):
        # The chart tells the operator where the gateway's ConfigMaps are.
        expected["gateway"] = {
            "configNamespace": "frugal-system",
            "configMap": "frugal-gateway",
            "baseConfigMap": "frugal-gateway-base",
        }
    assert data == expected
    settings = load_settings(_write(cm["data"]["settings.yaml"]))
    assert settings.profile.value == data["profile"]
    # The checksum rolls the operator when the settings change.
    pod = one(docs, "Deployment", "frugal-operator")["spec"]["template"]
    assert len(pod["metadata"]["annotations"]["checksum/settings"]) == 64


def test_no_service_account_can_read_secrets(rendered) -> None:
    """Secrets reach the gateway as kubelet-mounted files, never through the API."""
    _, values, docs = rendered
    for role in find(docs, "ClusterRole") + find(docs, "Role"):
        for rule in role["rules"]:
            assert "secrets" not in rule["resources"], role["metadata"]["name"]
    named = values.get("gateway", {}).get("secretNames", [])
    if not values.get("gateway", {}).get("enabled"):
        return
    spec = pod_specs(docs)["frugal-gateway"]
    mounted = {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    assert mounted == set(named)
    paths = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert {f"/etc/frugal-gateway-secrets/{n}" for n in named} <= paths


def test_rbac_grants_only_what_the_operator_uses(rendered) -> None:
    """No wildcard, no pods/exec, no RBAC or namespace writes, no CRD writes."""
    _, _, docs = rendered
    for role in find(docs, "ClusterRole") + find(docs, "Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"]
            assert "*" not in rule["resources"]
            assert "*" not in rule["apiGroups"]
            assert "rbac.authorization.k8s.io" not in rule["apiGroups"]
            if "customresourcedefinitions" in rule["resources"]:
                assert set(rule["verbs"]) <= {"list", "watch"}
            if "pods" in rule["resources"]:
                assert set(rule["verbs"]) <= {"get", "list", "watch", "patch"}
            assert "nodes" not in rule["resources"]
            assert not {"pods/exec", "pods/log"} & set(rule["resources"])
            if "namespaces" in rule["resources"]:
                assert rule["verbs"] == ["list", "watch"]


def test_operator_rules_cover_every_kind_it_writes() -> None:
    """What operator/frugal/controller writes (children, status, events, its Lease) is granted."""
    from frugal.controller.children import CHILD_KINDS

    docs = template()
    rules = one(docs, "ClusterRole", "frugal-operator-cluster")["rules"]

    def allowed(group: str, resource: str, verb: str) -> bool:
        return any(
            group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
            for r in rules
        )

    plural = {
        "Deployment": "deployments",
        "Service": "services",
        "PodDisruptionBudget": "poddisruptionbudgets",
    }
    for api_version, kind in CHILD_KINDS:
        group = api_version.split("/")[0] if "/" in api_version else ""
        for verb in ("list", "patch", "create", "delete"):
            assert allowed(group, plural[kind], verb), (kind, verb)
    for res in ("inferenceendpoints", "routingpolicies"):
        for verb in ("get", "list", "watch", "patch"):
            assert allowed("frugal.dev", res, verb)
        assert allowed("frugal.dev", f"{res}/status", "patch")
    assert allowed("", "events", "create")
    assert allowed("", "pods", "watch")  # the spot-interruption index
    # The Lease: read and renewed by name, in the release namespace only.
    (lease_role,) = find(docs, "Role", "frugal-operator-leader-election")
    assert lease_role["metadata"]["namespace"] == "frugal-system"
    by_name, create = lease_role["rules"]
    assert by_name == {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["frugal-operator"],
        "verbs": ["get", "update"],
    }
    assert create["verbs"] == ["create"]
    assert "resourceNames" not in create
    (binding,) = find(docs, "RoleBinding", "frugal-operator-leader-election")
    assert binding["subjects"][0]["name"] == "frugal"
    assert not any("coordination.k8s.io" in r["apiGroups"] for r in rules)


def test_operator_may_write_only_the_gateway_configmap() -> None:
    """frugal.controller.gateways reads the base ConfigMap and applies the rendered one."""
    docs = template({"gateway": {"enabled": True}})
    role = one(docs, "Role", "frugal-operator-gateway-config")
    assert role["metadata"]["namespace"] == "frugal-system"
    named, create = role["rules"]
    assert named["resourceNames"] == ["frugal-gateway", "frugal-gateway-base"]
    assert named["verbs"] == ["get", "patch"]
    assert create == {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}
    assert not find(template(), "Role", "frugal-operator-gateway-config")
    cluster = [r for d in find(docs, "ClusterRole") for r in d["rules"]]
    assert not [r for r in cluster if "configmaps" in r["resources"]]


def test_karpenter_profile_grants_what_the_node_pool_controller_needs() -> None:
    """controller/nodepools.py: release do-not-disrupt on pods; with manage, own the pools."""

    def rules(values):
        docs = template(values)
        return [r for d in find(docs, "ClusterRole", "frugal-operator-cluster") for r in d["rules"]]

    def pods_verbs(values):
        return next(r["verbs"] for r in rules(values) if "pods" in r["resources"])

    assert "patch" not in pods_verbs({})
    assert "patch" in pods_verbs({"settings": {"profile": "karpenter"}})
    off = {"settings": {"profile": "karpenter", "nodePools": {"protectLoading": False}}}
    assert "patch" not in pods_verbs(off)
    assert not [
        r for r in rules({"settings": {"profile": "karpenter"}}) if "nodepools" in r["resources"]
    ]
    manage = {"settings": {"profile": "karpenter", "nodePools": {"manage": True}}}
    (pools,) = [r for r in rules(manage) if "nodepools" in r["resources"]]
    assert pools["apiGroups"] == ["karpenter.sh"]
    assert set(pools["verbs"]) == {"get", "list", "watch", "create", "patch", "delete"}
    (classes,) = [r for r in rules(manage) if "ec2nodeclasses" in r["resources"]]
    assert classes["apiGroups"] == ["karpenter.k8s.aws"]
    # Cluster-scoped kinds: granted by the ClusterRole even when namespaces are limited.
    limited = {**manage, "watchNamespaces": ["team-a"]}
    assert [r for r in rules(limited) if "nodepools" in r["resources"]]


# --- particular value sets -------------------------------------------------------------------


def test_defaults_render_one_operator_and_nothing_optional() -> None:
    docs = template()
    operator = one(docs, "Deployment", "frugal-operator")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    assert operator["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"ghcr.io/frugal-dev/frugal:{__version__}"
    )
    assert "--leader-elect" in container_args(docs, "frugal-operator")
    assert {d["kind"] for d in docs} == {
        "ServiceAccount",
        "ConfigMap",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
    }
    assert not [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com")]


def test_ha_runs_two_electing_replicas_with_rolling_updates_and_a_pdb() -> None:
    docs = template(SETS["ha"])
    operator = one(docs, "Deployment", "frugal-operator")
    assert operator["spec"]["replicas"] == 2
    assert operator["spec"]["strategy"]["type"] == "RollingUpdate"
    assert operator["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    args = container_args(docs, "frugal-operator")
    assert "--leader-elect" in args
    assert "--lease-duration=20" in args  # ci/ha-values.yaml
    assert one(docs, "PodDisruptionBudget", "frugal-operator")["spec"]["maxUnavailable"] == 1
    affinity = operator["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert affinity["preferredDuringSchedulingIgnoredDuringExecution"]


def test_watch_namespaces_use_roles_and_no_cluster_wide_writes() -> None:
    docs = template(SETS["namespaced"])
    assert sorted(
        a.split("=", 1)[1]
        for a in container_args(docs, "frugal-operator")
        if a.startswith("--namespace")
    ) == sorted(NAMESPACED)
    cluster_rules = [r for d in find(docs, "ClusterRole") for r in d["rules"]]
    for rule in cluster_rules:
        writes = set(rule["verbs"]) - {"get", "list", "watch"}
        aggregated = "frugal.dev" in rule["apiGroups"]  # the view/edit aggregation for users
        assert not writes or aggregated, rule
    # The operator's one ClusterRole only lets kopf observe CRDs and namespaces; the gateway
    # has none.
    crds, namespaces = one(docs, "ClusterRole", "frugal-operator-cluster")["rules"]
    assert crds == {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["list", "watch"],
    }
    assert namespaces == {
        "apiGroups": [""],
        "resources": ["namespaces"],
        "verbs": ["list", "watch"],
    }
    assert not find(docs, "ClusterRole", "frugal-gateway")
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in find(docs, "Role")}
    assert roles == {
        (ns, n) for ns in NAMESPACED for n in ("frugal-operator", "frugal-gateway")
    } | {
        ("frugal-system", "frugal-operator-gateway-config"),
        ("frugal-system", "frugal-operator-leader-election"),
    }
    bindings = {
        (d["metadata"]["namespace"], d["roleRef"]["name"]) for d in find(docs, "RoleBinding")
    }
    assert roles == bindings
    for role in find(docs, "Role", "frugal-operator"):
        assert not any("coordination.k8s.io" in r["apiGroups"] for r in role["rules"])


def test_gateway_renders_deployment_service_pdb_and_base_config() -> None:
    values = SETS["gateway"]
    docs = template(values)
    gateway = one(docs, "Deployment", "frugal-gateway")
    spec = gateway["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["image"] == f"ghcr.io/frugal-dev/frugal:{__version__}"
    assert spec["serviceAccountName"] == "frugal-gateway"
    # The gateway mounts the ConfigMap the operator renders, not the chart's base.
    (config,) = [v for v in spec["volumes"] if v["name"] == "config"]
    assert config["configMap"]["name"] == "frugal-gateway"
    assert not find(docs, "ConfigMap", "frugal-gateway")  # owned by the operator, not Helm
    base = one(docs, "ConfigMap", "frugal-gateway-base")
    assert yaml.safe_load(base["data"]["config.yaml"]) == values["gateway"]["config"]
    service = one(docs, "Service", "frugal-gateway")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert one(docs, "PodDisruptionBudget", "frugal-gateway")["spec"]["maxUnavailable"] == 1
    (rule,) = one(docs, "ClusterRole", "frugal-gateway")["rules"]
    assert rule == {
        "apiGroups": ["frugal.dev"],
        "resources": ["inferenceendpoints"],
        "verbs": ["patch"],
    }


def test_gateway_arguments_parse_with_the_frugal_cli() -> None:
    """`frugal gateway` accepts the rendered arguments."""
    docs = template(SETS["gateway"])
    args = container_args(docs, "frugal-gateway")
    assert args[0] == "gateway"
    command = typer.main.get_command(app).commands["gateway"]
    ctx = command.make_context("gateway", list(args[1:]))
    assert str(ctx.params["config"]) == "/etc/frugal-gateway/config.yaml"
    container = pod_specs(docs)["frugal-gateway"]["containers"][0]
    assert ctx.params["port"] == container["ports"][0]["containerPort"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/etc/frugal-gateway"] == "config"


def test_gateway_base_config_is_a_valid_gateway_configuration() -> None:
    """The operator merges the base with the cluster's policies; the gateway must accept it."""
    from frugal.controller.gateways import gateway_config
    from frugal.gateway.config import parse_config

    for values in SETS.values():
        if not values.get("gateway", {}).get("enabled"):
            continue
        base = yaml.safe_load(
            one(template(values), "ConfigMap", "frugal-gateway-base")["data"]["config.yaml"]
        )
        parse_config(gateway_config({}, {}, {}, base or {}))


def test_values_schema_gateway_config_follows_the_gateway_model() -> None:
    from frugal.gateway.config import GatewayConfig

    schema = json.loads((CHART / "values.schema.json").read_text())
    config = schema["properties"]["gateway"]["properties"]["config"]
    rendered_by_operator = {"policies", "upstreams"}
    assert set(config["properties"]) == set(_model_keys(GatewayConfig)) - rendered_by_operator
    assert config["additionalProperties"] is False


def test_monitoring_objects_render_only_when_enabled() -> None:
    docs = template(SETS["monitoring"])
    monitors = {
        (d["kind"], d["metadata"]["name"])
        for d in docs
        if d["apiVersion"] == "monitoring.coreos.com/v1"
    }
    assert monitors == {
        ("ServiceMonitor", "frugal-gateway"),
        ("ServiceMonitor", "frugal-operator"),
        ("PodMonitor", "frugal-engines"),
        ("PrometheusRule", "frugal"),
    }
    dashboard = one(docs, "ConfigMap", "frugal-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    json.loads(dashboard["data"]["frugal-fleet.json"])
    one(docs, "ConfigMap", "frugal-kube-state-metrics")
    binding = one(docs, "ClusterRoleBinding", "frugal-kube-state-metrics")
    assert binding["subjects"][0]["namespace"] == "monitoring"


def test_network_policies_allow_probes_metrics_and_gateway_traffic() -> None:
    docs = template(SETS["networkpolicy"])
    operator = one(docs, "NetworkPolicy", "frugal-operator")
    assert operator["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert operator["spec"]["ingress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    egress_ports = {p["port"] for r in operator["spec"]["egress"] for p in r.get("ports", [])}
    assert {53, 443, 6443, 9090} <= egress_ports
    gateway = one(docs, "NetworkPolicy", "frugal-gateway")
    assert gateway["spec"]["ingress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert not find(template(SETS["gateway"]), "NetworkPolicy")


def test_image_digest_and_tag_overrides() -> None:
    digest = "sha256:" + "a" * 64
    docs = template({"image": {"digest": digest}, "gateway": {"enabled": True}})
    for spec in pod_specs(docs).values():
        assert spec["containers"][0]["image"] in {
            f"ghcr.io/frugal-dev/frugal@{digest}",
            f"ghcr.io/frugal-dev/frugal:{__version__}",
        }
    assert pod_specs(docs)["frugal-operator"]["containers"][0]["image"].endswith(digest)
    docs = template({"image": {"repository": "registry.example.com/frugal", "tag": "dev"}})
    assert pod_specs(docs)["frugal-operator"]["containers"][0]["image"] == (
        "registry.example.com/frugal:dev"
    )


# --- the schema refuses bad values, naming the field --------------------------------------------

BAD_VALUES = [
    ({"operator": {"replicas": "two"}}, "/operator/replicas", "want integer"),
    ({"operator": {"strategy": "BlueGreen"}}, "/operator/strategy", "value must be one of"),
    ({"operator": {"logFormat": "xml"}}, "/operator/logFormat", "value must be one of"),
    ({"operator": {"bogus": 1}}, "/operator", "'bogus' not allowed"),
    ({"bogus": 1}, "at ''", "'bogus' not allowed"),
    ({"settings": {"profile": "openshift"}}, "/settings/profile", "value must be one of"),
    (
        {"settings": {"prometheus": {"ur1": "http://x"}}},
        "/settings/prometheus",
        "'ur1' not allowed",
    ),
    (
        {"settings": {"gpuOverrides": {"l4": {"spot": -1}}}},
        "/settings/gpuOverrides/l4/spot",
        "exclusiveMinimum",
    ),
    (
        {"settings": {"gpuOverrides": {"l4": {"spott": 1}}}},
        "/settings/gpuOverrides/l4",
        "'spott' not allowed",
    ),
    (
        {"settings": {"reservations": [{"name": "Pool_1", "gpuType": "l4", "gpus": 2}]}},
        "/settings/reservations/0/name",
        "does not match pattern",
    ),
    (
        {"settings": {"reservations": [{"name": "p"}]}},
        "/settings/reservations/0",
        "missing properties",
    ),
    ({"settings": {"engine": {"cpuPerGpu": 4}}}, "/settings/engine/cpuPerGpu", "want string"),
    ({"settings": {"peeringLifetimeSeconds": 60}}, "/settings", "'peeringLifetimeSeconds' not"),
    (
        {"settings": {"nodePools": {"weights": {"spot": 0}}}},
        "/settings/nodePools/weights/spot",
        "minimum",
    ),
    (
        {"settings": {"nodePools": {"nodeClass": {"amiAlias": "ubuntu@latest"}}}},
        "/settings/nodePools/nodeClass/amiAlias",
        "does not match pattern",
    ),
    ({"settings": {"nodePools": {"mange": True}}}, "/settings/nodePools", "'mange' not allowed"),
    (
        {"operator": {"leaderElection": {"retryPeriodSeconds": 0}}},
        "/operator/leaderElection/retryPeriodSeconds",
        "exclusiveMinimum",
    ),
    (
        {"settings": {"loops": {"scaleIntervalSeconds": 0}}},
        "/settings/loops/scaleIntervalSeconds",
        "exclusiveMinimum",
    ),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", "value must be one of"),
    ({"image": {"digest": "latest"}}, "/image/digest", "does not match pattern"),
    ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0", "does not match pattern"),
    ({"gateway": {"enabled": "yes"}}, "/gateway/enabled", "want boolean"),
    ({"gateway": {"secretNames": ["UPPER"]}}, "/gateway/secretNames/0", "does not match pattern"),
    ({"gateway": {"config": {"policies": []}}}, "/gateway/config", "'policies' not allowed"),
    (
        {"gateway": {"service": {"type": "Ingress"}}},
        "/gateway/service/type",
        "value must be one of",
    ),
    ({"gateway": {"port": 70000}}, "/gateway/port", "maximum"),
    (
        {"ha": {"enabled": True}, "operator": {"leaderElection": {"enabled": False}}},
        "/operator/leaderElection/enabled",
        "value must be true",
    ),
    (
        {"monitoring": {"serviceMonitor": {"interval": "soon"}}},
        "/monitoring/serviceMonitor/interval",
        "does not match pattern",
    ),
    ({"monitoring": {"grafana": {}}}, "/monitoring", "'grafana' not allowed"),
    (
        {"networkPolicy": {"egress": {"apiServerPorts": ["https"]}}},
        "/networkPolicy/egress/apiServerPorts/0",
        "want integer",
    ),
]


@pytest.mark.parametrize(("values", "where", "why"), BAD_VALUES, ids=[w for _, w, _ in BAD_VALUES])
def test_schema_refuses_bad_values_naming_the_field(values, where: str, why: str) -> None:
    out = template_process(values)
    assert out.returncode != 0, f"accepted {values}"
    assert where in out.stderr, out.stderr
    assert why in out.stderr, out.stderr
    assert "values don't meet the specifications of the schema" in out.stderr


def test_template_refuses_replicas_without_leader_election() -> None:
    standalone = {"enabled": False}
    out = template_process(
        {"operator": {"replicas": 2, "leaderElection": standalone, "strategy": "RollingUpdate"}}
    )
    assert out.returncode != 0
    assert "operator.replicas > 1 requires operator.leaderElection.enabled=true" in out.stderr
    out = template_process(
        {"operator": {"leaderElection": standalone, "strategy": "RollingUpdate"}}
    )
    assert "RollingUpdate requires operator.leaderElection.enabled=true" in out.stderr
    out = template_process(
        {"operator": {"leaderElection": {"leaseDurationSeconds": 10, "renewDeadlineSeconds": 10}}}
    )
    assert "leaseDurationSeconds must exceed renewDeadlineSeconds" in out.stderr
    out = template_process({"operator": {"replicas": 2}})
    assert "needs operator.strategy=RollingUpdate" in out.stderr


def test_ci_value_files_are_what_the_tests_render() -> None:
    names = {p.stem.removesuffix("-values") for p in CI_VALUES.glob("*.yaml")}
    assert names <= set(SETS)
    assert {"default", "gateway", "ha", "namespaced", "monitoring", "networkpolicy"} <= names


# --- values.schema.json follows operator/frugal/settings.py ------------------------------------


def _model_keys(model: type[BaseModel]) -> dict[str, Any]:
    return {f.alias or n: f for n, f in model.model_fields.items()}


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _compare(schema: dict[str, Any], model: type[BaseModel], where: str) -> list[str]:
    problems = []
    fields = _model_keys(model)
    props = schema.get("properties", {})
    if schema.get("additionalProperties", True) is not False:
        problems.append(f"{where}: the schema should refuse unknown keys")
    for key in sorted(set(fields) - set(props)):
        problems.append(f"{where}.{key}: in {model.__name__} but not in values.schema.json")
    for key in sorted(set(props) - set(fields)):
        problems.append(f"{where}.{key}: in values.schema.json but not in {model.__name__}")
    for key in sorted(set(fields) & set(props)):
        nested = _nested_model(fields[key].annotation)
        sub = props[key]
        if nested is None or key in ("gpuOverrides", "nodePools"):
            continue
        if sub.get("type") == "array":
            sub = sub["items"]
        problems += _compare(sub, nested, f"{where}.{key}")
    return problems


def test_values_schema_node_pools_is_generated_from_the_settings_model() -> None:
    """``make crds`` writes it (scripts/gen-values-schema.py); a model change fails here."""
    from frugal.api.schema import embeddable_json_schema
    from frugal.render.nodepools import NodePoolSettings

    schema = json.loads((CHART / "values.schema.json").read_text())
    node_pools = dict(schema["properties"]["settings"]["properties"]["nodePools"])
    node_pools.pop("description")
    generated = embeddable_json_schema(NodePoolSettings)
    generated.pop("description")
    assert node_pools == generated, "values.schema.json is out of date: run `make crds`"


def test_values_schema_settings_follow_the_settings_model() -> None:
    from frugal.catalog.gpus import GpuType

    schema = json.loads((CHART / "values.schema.json").read_text())
    settings = schema["properties"]["settings"]
    problems = _compare(settings, Settings, "settings")
    overrides = settings["properties"]["gpuOverrides"]["additionalProperties"]["properties"]
    assert set(overrides) == set(_model_keys(GpuType)) - {"name"}
    assert not problems, "\n".join(problems)
    profiles = settings["properties"]["profile"]["enum"]
    from frugal.catalog.profiles import ProfileName

    assert sorted(profiles) == sorted(p.value for p in ProfileName)


def test_every_documented_value_is_in_the_schema() -> None:
    """values.yaml keys are all described by the schema (and the defaults validate)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(values: dict[str, Any], node: dict[str, Any], where: str) -> None:
        for key, value in values.items():
            props = node.get("properties", {})
            assert key in props, f"{where}.{key} is not in values.schema.json"
            if isinstance(value, dict) and props[key].get("properties"):
                walk(value, props[key], f"{where}.{key}")

    walk(defaults, schema, "")


def test_schema_accepts_the_example_settings() -> None:
    example = yaml.safe_load((REPO / "manifests/settings/karpenter-aws.yaml").read_text())
    docs = template({"settings": example})
    cm = one(docs, "ConfigMap", "frugal-settings")
    assert yaml.safe_load(cm["data"]["settings.yaml"]) == example


def test_cli_parse_refuses_unknown_flags() -> None:
    """Guard: the parse above is click's own, so a renamed flag fails here, not in a cluster."""
    command = typer.main.get_command(app).commands["operator"]
    with pytest.raises(Exception, match="No such option"):
        command.make_context("operator", ["--no-such-flag"])
