"""The chart against the real API server: dry-run of every value set, install → upgrade →
uninstall with Helm, least-privilege RBAC, restricted Pod Security, and the real operator
running on the chart's ServiceAccount with the chart's arguments.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from frugal import kube
from support.chart import (
    BUNDLE,
    CHART,
    container_args,
    helm,
    install_stand_in_crds,
    one,
    template,
    value_sets,
)
from support.wait import wait_for

pytestmark = pytest.mark.cluster
SETS = value_sets()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stand_ins(cluster) -> list[str]:
    """monitoring.coreos.com and argoproj.io kinds, where their real CRDs are absent."""
    return install_stand_in_crds(cluster.kubectl)


def dry_run(cluster, text: str, *args: str) -> list[str]:
    out = cluster.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "--field-manager=frugal-chart-test",
        *args,
        "-f",
        "-",
        input=text,
    )
    return [line for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("name", sorted(SETS))
def test_rendered_objects_pass_server_side_dry_run(cluster, stand_ins, namespace, name) -> None:
    values = SETS[name]
    for ns in values.get("watchNamespaces", []):
        cluster.ensure_namespace(ns)
    docs = template(values, namespace=namespace)
    applied = dry_run(cluster, yaml.safe_dump_all(docs))
    assert len(applied) == len(docs), applied
    assert all("serverside-applied (server dry run)" in line for line in applied), applied


def test_bundle_and_kustomize_overlay_pass_server_side_dry_run(cluster) -> None:
    cluster.ensure_namespace("frugal-system")
    docs = [d for d in yaml.safe_load_all(BUNDLE.read_text()) if d]
    assert len(dry_run(cluster, BUNDLE.read_text())) == len(docs)
    overlay = cluster.kubectl("kustomize", str(REPO / "manifests/kustomize/overlays/ha"))
    applied = dry_run(cluster, overlay)
    assert any("poddisruptionbudget.policy/frugal-operator" in line for line in applied)


# --- helm install → upgrade → uninstall -----------------------------------------------------------


def can(cluster, who: str, verb: str, resource: str, namespace: str | None = None) -> bool:
    """`kubectl auth can-i`; ``kind/name`` names an object, ``kind#sub`` a subresource."""
    resource, _, subresource = resource.partition("#")
    args = ["auth", "can-i", verb, resource, f"--as={who}"]
    args += [f"--subresource={subresource}"] if subresource else []
    args += ["--namespace", namespace] if namespace else []
    answer = cluster.kubectl(*args, check=False).strip().splitlines()
    return bool(answer) and answer[0] == "yes"


def exists(cluster, *args: str) -> bool:
    return bool(cluster.kubectl("get", *args, "-o", "name", "--ignore-not-found").strip())


def pods(cluster, namespace: str, component: str) -> list[str]:
    out = cluster.kubectl(
        "get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/component={component}",
        "-o", "name",
    )  # fmt: skip
    return out.split()


def test_helm_install_upgrade_uninstall(cluster, namespace: str) -> None:
    kubeconfig = cluster.kubeconfig
    # frugal's pods must be admitted where the restricted Pod Security Standard is enforced.
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    operator = f"system:serviceaccount:{namespace}:frugal"
    gateway = f"system:serviceaccount:{namespace}:frugal-gateway"
    other = f"t-{uuid.uuid4().hex[:8]}"
    cluster.ensure_namespace(other)
    try:
        out = helm("install", "frugal", str(CHART), "--namespace", namespace, kubeconfig=kubeconfig)
        # NOTES.txt: what to do next.
        assert f"kubectl -n {namespace} rollout status deploy/frugal-operator" in out.stdout
        assert "settings.prometheus.url is not set" in out.stdout
        assert "will never upgrade or delete them" in out.stdout
        for obj in (
            "deployment/frugal-operator",
            "serviceaccount/frugal",
            "configmap/frugal-settings",
        ):
            assert exists(cluster, "-n", namespace, obj), obj
        assert exists(cluster, "clusterrole/frugal-operator-cluster")
        # The ReplicaSet's pod passed admission (restricted Pod Security); it stays Pending
        # here because the testbed has no nodes.
        wait_for(lambda: pods(cluster, namespace, "operator"), what="the operator pod")

        # Least privilege: what the code needs, cluster-wide, and nothing else.
        for verb, resource in [
            ("watch", "inferenceendpoints.frugal.dev"),
            ("patch", "inferenceendpoints.frugal.dev"),
            ("patch", "inferenceendpoints.frugal.dev#status"),
            ("patch", "routingpolicies.frugal.dev#status"),
            ("list", "cachepolicies.frugal.dev"),
            ("create", "deployments.apps"),
            ("patch", "deployments.apps"),
            ("delete", "deployments.apps"),
            ("patch", "services"),
            ("delete", "poddisruptionbudgets.policy"),
            ("create", "events"),
            ("watch", "pods"),
            ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
        ]:
            assert can(cluster, operator, verb, resource, other), (verb, resource)
        for verb, resource in [
            ("get", "secrets"),
            ("list", "secrets"),
            ("create", "pods"),
            ("create", "pods#exec"),
            ("create", "clusterroles.rbac.authorization.k8s.io"),
            ("create", "rolebindings.rbac.authorization.k8s.io"),
            ("delete", "namespaces"),
            ("delete", "inferenceendpoints.frugal.dev"),
            ("create", "inferenceendpoints.frugal.dev"),
            ("patch", "customresourcedefinitions.apiextensions.k8s.io"),
            ("get", "configmaps"),
            ("list", "nodes"),
        ]:
            assert not can(cluster, operator, verb, resource, other), (verb, resource)
            assert not can(cluster, operator, verb, resource, namespace), (verb, resource)
        # The leader election Lease: by name, in the release namespace only.
        assert can(
            cluster, operator, "update", "leases.coordination.k8s.io/frugal-operator", namespace
        )
        assert can(cluster, operator, "create", "leases.coordination.k8s.io", namespace)
        assert not can(cluster, operator, "update", "leases.coordination.k8s.io/other", namespace)
        assert not can(cluster, operator, "create", "leases.coordination.k8s.io", other)

        # Upgrade: the gateway, with a Secret mounted (never readable through the API).
        helm(
            "upgrade", "frugal", str(CHART), "--namespace", namespace,
            "--set", "gateway.enabled=true", "--set", "gateway.secretNames={openai-api-key}",
            kubeconfig=kubeconfig,
        )  # fmt: skip
        for obj in (
            "deployment/frugal-gateway",
            "service/frugal-gateway",
            "poddisruptionbudget/frugal-gateway",
            "configmap/frugal-gateway-base",
            "role/frugal-operator-gateway-config",
        ):
            assert exists(cluster, "-n", namespace, obj), obj
        wait_for(lambda: pods(cluster, namespace, "gateway"), what="the gateway pods")
        assert can(cluster, gateway, "patch", "inferenceendpoints.frugal.dev", other)
        for verb, resource in [
            ("get", "secrets/openai-api-key"),
            ("list", "secrets"),
            ("get", "inferenceendpoints.frugal.dev"),
            ("patch", "inferenceendpoints.frugal.dev#status"),
            ("create", "pods"),
        ]:
            assert not can(cluster, gateway, verb, resource, namespace), (verb, resource)
        assert can(cluster, operator, "get", "configmaps/frugal-gateway", namespace)
        assert can(cluster, operator, "patch", "configmaps/frugal-gateway", namespace)
        assert can(cluster, operator, "create", "configmaps", namespace)
        assert not can(cluster, operator, "get", "configmaps/kube-root-ca.crt", namespace)
        assert not can(cluster, operator, "patch", "configmaps/frugal-gateway", other)
        settings = yaml.safe_load(
            cluster.kubectl(
                "get", "configmap", "frugal-settings", "-n", namespace,
                "-o", "jsonpath={.data.settings\\.yaml}",
            )
        )  # fmt: skip
        assert settings["gateway"]["configNamespace"] == namespace
        history = helm("history", "frugal", "-n", namespace, kubeconfig=kubeconfig).stdout
        assert "deployed" in history.splitlines()[-1]
        assert len(history.strip().splitlines()) == 3  # header + two revisions
    finally:
        helm("uninstall", "frugal", "--namespace", namespace, "--wait", kubeconfig=kubeconfig,
             check=False)  # fmt: skip

    assert not exists(cluster, "-n", namespace, "deployment/frugal-operator")
    assert not exists(cluster, "clusterrole/frugal-operator-cluster")
    assert not exists(cluster, "clusterrole/frugal-gateway")
    # Helm never deletes what it installed from crds/: the kinds and everyone's objects stay.
    for crd in ("inferenceendpoints.frugal.dev", "routingpolicies.frugal.dev"):
        assert exists(cluster, f"crd/{crd}")


# --- the operator itself, on the chart's ServiceAccount and arguments ---------------------------


def token_kubeconfig(cluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount (TokenRequest API)."""
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {"name": "sa", "context": {"cluster": admin["clusters"][0]["name"], "user": account}}
        ],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_args(args: list[str], settings: Path, port: int) -> list[str]:
    """The chart's container arguments, with the in-pod paths and port made local."""
    out = []
    for arg in args:
        if arg.startswith("--settings="):
            out.append(f"--settings={settings}")
        elif arg.startswith("--liveness="):
            out.append(f"--liveness=http://127.0.0.1:{port}/healthz")
        else:
            out.append(arg)
    return out


def healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
        return r.status == 200


def endpoint(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": "rbac-check", "namespace": namespace},
        "spec": {
            "model": {"uri": "hf://org/m", "servedName": "rbac-check", "parameters": 1e9},
            "capacity": {"preference": ["on-demand"]},
        },
    }


def test_operator_runs_on_the_charts_service_account(cluster, namespace, tmp_path) -> None:
    """`frugal operator` with the rendered arguments, authenticated as the chart's
    ServiceAccount (namespaced RBAC, gateway on): it reconciles, writes status and the
    gateway ConfigMap, puts no finalizer on the endpoint, and is never refused."""
    watched = f"t-{uuid.uuid4().hex[:10]}"
    cluster.ensure_namespace(watched)
    values = {"watchNamespaces": [watched], "gateway": {"enabled": True}}
    docs = template(values, namespace=namespace)
    settings_file = tmp_path / "settings.yaml"
    settings = yaml.safe_load(one(docs, "ConfigMap", "frugal-settings")["data"]["settings.yaml"])
    settings_file.write_text(yaml.safe_dump({**settings, "reconcileIntervalSeconds": 2}))
    port = free_port()
    args = local_args(container_args(docs, "frugal-operator"), settings_file, port)
    assert args[0] == "operator"
    assert "--leader-elect" in args  # the chart's default: it acts once it holds the Lease

    set_args = ["--set", f"watchNamespaces={{{watched}}}", "--set", "gateway.enabled=true"]
    helm("install", "frugal", str(CHART), "-n", namespace, *set_args, kubeconfig=cluster.kubeconfig)
    log = tmp_path / "operator.log"
    proc = None
    try:
        sa = token_kubeconfig(cluster, namespace, "frugal", tmp_path / "sa.kubeconfig")
        proc = subprocess.Popen(
            [sys.executable, "-m", "frugal.cli", *args],
            # What the downward API gives the pod: the Lease lives in the release namespace.
            env={**os.environ, "KUBECONFIG": str(sa), "POD_NAMESPACE": namespace},
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        wait_for(lambda: healthy(port), what="the liveness endpoint the probe uses")
        lease = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/frugal-operator"
        wait_for(
            lambda: kube.request(cluster.api, "GET", lease)["spec"].get("holderIdentity"),
            what="the operator to hold its Lease",
        )
        cluster.apply(endpoint(watched))
        wait_for(
            lambda: kube.get(cluster.api, "apps/v1", "Deployment", watched, "rbac-check-on-demand"),
            what="the endpoint's Deployment",
        )
        wait_for(
            lambda: (
                cluster.get("InferenceEndpoint", watched, "rbac-check")
                .get("status", {})
                .get("phase")
            ),
            what="the endpoint's status",
        )
        gateway_cm = wait_for(
            lambda: kube.get(cluster.api, "v1", "ConfigMap", namespace, "frugal-gateway"),
            what="the gateway ConfigMap the operator renders",
        )
        # Written with the operator's own Role (get the base, create/patch the rendered one).
        assert yaml.safe_load(gateway_cm["data"]["config.yaml"])["wake"] == {"kubernetes": True}

        # The gateway's ServiceAccount may wake an endpoint (the frugal.dev/wake annotation).
        from frugal.gateway.wake import KubeWaker

        gw = token_kubeconfig(cluster, namespace, "frugal-gateway", tmp_path / "gw.kubeconfig")
        import kubernetes

        api = kubernetes.config.new_client_from_config(config_file=str(gw))
        KubeWaker(api).patch("rbac-check", watched)
        annotations = cluster.get("InferenceEndpoint", watched, "rbac-check")["metadata"]
        assert "frugal.dev/wake" in annotations["annotations"]

        # No finalizer (the periodic loops are not kopf timers): deletion never waits on us.
        meta = cluster.get("InferenceEndpoint", watched, "rbac-check")["metadata"]
        assert "frugal.dev/finalizer" not in meta.get("finalizers", [])
        cluster.delete("InferenceEndpoint", watched, "rbac-check")
        wait_for(
            lambda: (
                kube.get(
                    cluster.api, "frugal.dev/v1alpha1", "InferenceEndpoint", watched, "rbac-check"
                )
                is None
            ),
            what="the endpoint to be deleted",
        )
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        helm("uninstall", "frugal", "-n", namespace, kubeconfig=cluster.kubeconfig, check=False)
    output = log.read_text()
    refused = [line for line in output.splitlines() if "Forbidden" in line or "forbidden" in line]
    assert not refused, "\n".join(refused)
