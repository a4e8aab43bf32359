"""A small, cluster-agnostic handle on a Kubernetes API server for tests and e2e scenarios.

It works the same against the loopback testbed, the KWOK fleet or a kind cluster: all it needs
is a kubeconfig.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client import ApiClient, ApiException

from frugal import kube
from frugal.api.base import GROUP, VERSION

PLURALS = {
    "InferenceEndpoint": "inferenceendpoints",
    "RoutingPolicy": "routingpolicies",
    "CachePolicy": "cachepolicies",
}


@dataclass
class Cluster:
    """Kubeconfig, an API client and the commands tests use against one cluster."""

    kubeconfig: Path
    kubectl_path: str = field(default_factory=lambda: shutil.which("kubectl") or "kubectl")
    api: ApiClient = field(init=False)

    def __post_init__(self) -> None:
        self.api = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        self.core = kubernetes.client.CoreV1Api(self.api)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> str:
        out = subprocess.run(
            [self.kubectl_path, "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            input=input,
            check=False,
        )
        if check and out.returncode:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {out.stderr}")
        return out.stdout if check else out.stdout + out.stderr

    def ensure_namespace(self, name: str) -> None:
        try:
            self.core.create_namespace({"metadata": {"name": name}})
        except ApiException as err:
            if err.status != 409:
                raise

    def apply(
        self, obj: dict[str, Any], manager: str = "frugal-tests", dry_run: bool = False
    ) -> dict[str, Any]:
        """Server-side apply of one object; returns what the server stored."""
        return kube.apply(self.api, obj, manager, dry_run=dry_run)

    def create(self, obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        meta = obj["metadata"]
        return self.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            meta["namespace"],
            PLURALS[obj["kind"]],
            obj,
            dry_run="All" if dry_run else None,
            field_validation="Strict",
        )

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[kind], name
        )

    def delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS[kind], name
            )
        except ApiException as err:
            if err.status != 404:
                raise
