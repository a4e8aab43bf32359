"""The GitOps contract: what Argo CD applies, the operator never takes over.

The examples are applied with server-side apply as field manager ``argocd-controller``, the
operator reconciles them, and the same manifests are applied again *without* force: a field the
operator had written would be a conflict. The managed fields must also show the operator owning
nothing that the GitOps manager owns.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from frugal import kube
from frugal.settings import Settings
from support.operator import running_operator
from support.wait import wait_for

pytestmark = pytest.mark.cluster
EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
GITOPS = "argocd-controller"


def docs(namespace: str) -> list[dict]:
    out = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            doc = copy.deepcopy(doc)  # noqa: PLW2901
            doc["metadata"]["namespace"] = namespace
            out.append(doc)
    return out


def leaves(fields: dict, prefix: str = "") -> set[str]:
    """Paths of a managedFields fieldsV1 tree ("f:spec.f:model.f:uri", ...)."""
    out = set()
    for key, sub in fields.items():
        path = f"{prefix}.{key}" if prefix else key
        if key == ".":
            continue
        out.add(path)
        if isinstance(sub, dict):
            out |= leaves(sub, path)
    return out


def test_the_operator_never_writes_what_gitops_owns(cluster, namespace) -> None:
    settings = Settings.model_validate(
        {
            "reconcileIntervalSeconds": 1,
            "reservations": [
                {"name": "support-l4", "gpuType": "l4", "gpus": 4},
                {"name": "search-l40s", "gpuType": "l40s", "gpus": 4},
            ],
        }
    )
    objects = docs(namespace)
    with running_operator(str(cluster.kubeconfig), [namespace], settings):
        for doc in objects:
            kube.apply(cluster.api, doc, GITOPS)
        for doc in objects:
            if doc["kind"] != "CachePolicy":
                wait_for(
                    lambda d=doc: (
                        cluster.get(d["kind"], namespace, d["metadata"]["name"])
                        .get("status", {})
                        .get("observedGeneration")
                    ),
                    what=f"{doc['kind']} {doc['metadata']['name']} reconciled",
                )
        # The same manifests again, without force: any field taken over would conflict (409).
        for doc in objects:
            kube.apply(cluster.api, doc, GITOPS, force=False)
        for doc in objects:
            live = cluster.get(doc["kind"], namespace, doc["metadata"]["name"])
            managed = live["metadata"]["managedFields"]
            ours = set().union(
                *(leaves(m.get("fieldsV1", {})) for m in managed if m["manager"] == GITOPS)
            )
            assert any(p.startswith("f:spec") for p in ours)
            for entry in managed:
                if entry["manager"] == GITOPS:
                    continue
                taken = leaves(entry.get("fieldsV1", {})) & ours
                assert not taken, f"{entry['manager']} also owns {sorted(taken)[:5]}"
                if entry.get("subresource") != "status":
                    assert not any(
                        p.startswith("f:spec") for p in leaves(entry.get("fieldsV1", {}))
                    ), entry["manager"]
