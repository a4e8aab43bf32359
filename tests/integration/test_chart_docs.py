"""docs/install.md's command sequences, run as written against the testbed's API server.

Each block marked ``<!-- test: NAME -->`` runs as one bash script (``set -euo pipefail``) in a
scratch folder that links to the repository's charts/, crds/ and manifests/, with the testbed's
helm and kubectl first on PATH and KUBECONFIG pointing at the test cluster. Commands that wait
for pods to run (``rollout status``) are skipped: the testbed has no nodes. Everything else
must succeed, and what it did is checked afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from support.chart import REPO, helm_path, install_stand_in_crds, kubectl_path
from support.wait import wait_for

pytestmark = pytest.mark.cluster
DOC = REPO / "docs" / "install.md"
BLOCK = re.compile(r"<!-- test: (?P<name>[\w-]+) -->\s*```sh\n(?P<body>.*?)```", re.S)
NEEDS_RUNNING_PODS = ("rollout status",)


def blocks() -> dict[str, str]:
    return {m["name"]: m["body"] for m in BLOCK.finditer(DOC.read_text())}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for name in ("charts", "crds", "manifests"):
        (tmp_path / name).symlink_to(REPO / name)
    return tmp_path


def run_block(cluster, name: str, workdir: Path) -> str:
    lines = [
        f": skipped in the testbed: {line.strip()}"
        if any(s in line for s in NEEDS_RUNNING_PODS)
        else line
        for line in blocks()[name].splitlines()
    ]
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
    path = os.pathsep.join(
        [str(Path(helm_path()).parent), str(Path(kubectl_path()).parent), os.environ["PATH"]]
    )
    out = subprocess.run(
        ["bash", "-c", script],
        cwd=workdir,
        env={**os.environ, "PATH": path, "KUBECONFIG": str(cluster.kubeconfig)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, f"docs block {name!r} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def exists(cluster, *args: str) -> bool:
    return bool(cluster.kubectl("get", *args, "-o", "name", "--ignore-not-found").strip())


def namespace_gone(cluster, name: str) -> None:
    if exists(cluster, f"namespace/{name}"):
        cluster.kubectl("delete", "namespace", name, "--wait=true", "--timeout=120s")


def test_every_sequence_in_the_docs_is_tested() -> None:
    assert set(blocks()) == {
        "kubectl-install",
        "kustomize-install",
        "kubectl-uninstall",
        "helm-install",
        "helm-upgrade",
        "helm-uninstall",
        "argocd",
    }


def test_kubectl_install_kustomize_and_uninstall(cluster, workdir: Path) -> None:
    namespace_gone(cluster, "frugal-system")
    try:
        run_block(cluster, "kubectl-install", workdir)
        assert exists(cluster, "-n", "frugal-system", "deployment/frugal-operator")
        labels = json.loads(cluster.kubectl("get", "namespace", "frugal-system", "-o", "json"))[
            "metadata"
        ]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        # The restricted namespace admits the operator's pod (Pending: no nodes here).
        wait_for(
            lambda: cluster.kubectl("get", "pods", "-n", "frugal-system", "-o", "name").strip(),
            what="the operator pod",
        )

        run_block(cluster, "kustomize-install", workdir)
        deployment = json.loads(
            cluster.kubectl("get", "deploy/frugal-operator", "-n", "frugal-system", "-o", "json")
        )
        assert deployment["spec"]["replicas"] == 2
        assert exists(cluster, "-n", "frugal-system", "poddisruptionbudget/frugal-operator")
    finally:
        run_block(cluster, "kubectl-uninstall", workdir)
    assert not exists(cluster, "namespace/frugal-system")
    assert not exists(cluster, "clusterrole/frugal-operator-cluster")
    assert not exists(cluster, "clusterrolebinding/frugal-operator-cluster")
    assert exists(cluster, "crd/inferenceendpoints.frugal.dev")  # kept on purpose


def test_helm_install_upgrade_uninstall_as_documented(cluster, workdir: Path) -> None:
    namespace_gone(cluster, "frugal-system")
    try:
        run_block(cluster, "helm-install", workdir)
        assert exists(cluster, "-n", "frugal-system", "deployment/frugal-operator")
        assert exists(cluster, "-n", "frugal-system", "deployment/frugal-gateway")
        settings = cluster.kubectl(
            "get", "configmap", "frugal-settings", "-n", "frugal-system",
            "-o", "jsonpath={.data.settings\\.yaml}",
        )  # fmt: skip
        assert "profile: karpenter" in settings

        out = run_block(cluster, "helm-upgrade", workdir)
        assert "cachepolicies.frugal.dev serverside-applied" in out
        revisions = re.findall(r"^(\d+)\s+\t", out, re.M)  # `helm history`'s table
        assert revisions == ["1", "2"]
        assert "Upgrade complete" in out.splitlines()[-1]
    finally:
        run_block(cluster, "helm-uninstall", workdir)
    assert not exists(cluster, "namespace/frugal-system")
    assert not exists(cluster, "clusterrole/frugal-operator-cluster")
    assert exists(cluster, "crd/inferenceendpoints.frugal.dev")


def test_argocd_sequence(cluster, workdir: Path) -> None:
    """Argo CD itself does not run here: its Application kind is a stand-in CRD when absent."""
    if exists(cluster, "-n", "argocd", "configmap/argocd-cm"):
        pytest.skip("a real Argo CD is installed in this cluster; not touching its argocd-cm")
    install_stand_in_crds(cluster.kubectl)
    cluster.ensure_namespace("argocd")
    run_block(cluster, "argocd", workdir)
    try:
        cm = json.loads(
            cluster.kubectl("get", "configmap", "argocd-cm", "-n", "argocd", "-o", "json")
        )
        assert "resource.customizations.health.frugal.dev_InferenceEndpoint" in cm["data"]
        for app in ("frugal", "frugal-endpoints"):
            assert exists(cluster, "-n", "argocd", f"applications.argoproj.io/{app}")
    finally:
        for app in ("frugal", "frugal-endpoints"):
            # Argo CD's resources finalizer is only ever removed by Argo CD.
            cluster.kubectl(
                "patch", f"applications.argoproj.io/{app}", "-n", "argocd", "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}', check=False,
            )  # fmt: skip
            cluster.kubectl(
                "delete", f"applications.argoproj.io/{app}", "-n", "argocd", "--ignore-not-found",
                check=False,
            )  # fmt: skip
        cluster.kubectl("delete", "configmap", "argocd-cm", "-n", "argocd", check=False)
