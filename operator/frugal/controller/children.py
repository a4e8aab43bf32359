"""Shell: bring an endpoint's children in line with what was rendered, writing only changes.

Each rendered child carries a hash of its content; a child whose live hash matches is left
alone, so a reconcile that changes nothing makes reads only. Children of the endpoint that are
no longer rendered (a capacity type dropped from the preference) are deleted; only objects
whose controller reference is this endpoint are ever touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient, ApiException

from frugal import kube
from frugal.render.endpoint import HASH_ANNOTATION, Owner
from frugal.render.labels import ENDPOINT_LABEL

CHILD_KINDS = (("apps/v1", "Deployment"), ("v1", "Service"), ("policy/v1", "PodDisruptionBudget"))


@dataclass
class SyncResult:
    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    live: dict[str, dict[str, Any]] = field(default_factory=dict)
    """kind/name → the child as it is now (after any write)."""

    @property
    def writes(self) -> int:
        return len(self.applied) + len(self.deleted)


def _key(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _owned_by(obj: dict[str, Any], owner: Owner) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("uid") == owner.uid and r.get("controller") for r in refs)


def list_children(api: ApiClient, owner: Owner) -> dict[str, dict[str, Any]]:
    """kind/name → every live child controlled by the endpoint."""
    found: dict[str, dict[str, Any]] = {}
    selector = [("labelSelector", f"{ENDPOINT_LABEL}={owner.name}")]
    for api_version, kind in CHILD_KINDS:
        path = kube.resource_path(api_version, kind, owner.namespace)
        items = kube.request(api, "GET", path, query=selector).get("items", [])
        for item in items:
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
            if _owned_by(item, owner):
                found[f"{kind}/{item['metadata']['name']}"] = item
    return found


def sync_children(
    api: ApiClient, owner: Owner, rendered: list[dict[str, Any]], field_manager: str
) -> SyncResult:
    result = SyncResult()
    live = list_children(api, owner)
    for obj in rendered:
        key = _key(obj)
        current = live.get(key)
        want = obj["metadata"]["annotations"][HASH_ANNOTATION]
        have = (current or {}).get("metadata", {}).get("annotations", {}).get(HASH_ANNOTATION)
        if current is not None and have == want:
            result.live[key] = current
            continue
        result.live[key] = kube.apply(api, obj, field_manager)
        result.applied.append(key)
    for key, obj in live.items():
        if key in result.live:
            continue
        meta = obj["metadata"]
        path = kube.resource_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        try:
            kube.request(api, "DELETE", path, query=[("propagationPolicy", "Background")])
        except ApiException as err:
            if err.status != 404:
                raise
        result.deleted.append(key)
    return result
