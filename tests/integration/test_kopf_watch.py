"""kopf's watch streams as the operator installs them, against the real API server."""

from __future__ import annotations

import json
from typing import Any

import kopf
import pytest

from frugal.controller.operator import login
from support.operator import running_operator
from support.wait import wait_for

pytestmark = pytest.mark.cluster


def config_map(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"lean": "yes"}},
        "data": {"k": "v"},
    }


def test_listed_and_watched_objects_reach_kopf_without_managed_fields(cluster, namespace) -> None:
    """Handlers and indexes see objects without managedFields, whether listed or watched."""
    cluster.apply(config_map(namespace, "listed"))
    seen: dict[str, list[str]] = {}
    indexed: dict[str, list[str]] = {}
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(login)

    @kopf.index("", "v1", "configmaps", labels={"lean": "yes"}, registry=registry)
    def by_name(name: str, meta: Any, **_: Any) -> dict[str, Any]:
        indexed[name] = sorted(meta)
        return {name: True}

    @kopf.on.event("", "v1", "configmaps", labels={"lean": "yes"}, registry=registry)
    def record(name: str, body: Any, **_: Any) -> None:
        seen[name] = sorted(body["metadata"])

    with running_operator(str(cluster.kubeconfig), [namespace], registry=registry):
        wait_for(lambda: "listed" in seen, what="the listed ConfigMap handled")
        cluster.apply(config_map(namespace, "watched"))
        wait_for(lambda: "watched" in seen, what="the watched ConfigMap handled")

    # The API server does send managedFields for both (the test would pass vacuously if not).
    for name in ("listed", "watched"):
        raw = cluster.kubectl(
            "get", "configmap", name, "-n", namespace, "-o", "json", "--show-managed-fields"
        )
        assert json.loads(raw)["metadata"]["managedFields"]
    for handled in (seen, indexed):
        assert "managedFields" not in handled["listed"]
        assert "managedFields" not in handled["watched"]
    assert {"name", "namespace", "uid", "labels", "resourceVersion"} <= set(seen["watched"])
