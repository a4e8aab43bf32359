"""Shell: bring an endpoint's children in line with what was rendered, writing only changes.

Each rendered child carries a hash of its content; a child whose live hash matches is left
alone, so a reconcile that changes nothing writes nothing (and, given the operator's watch of
the children, reads nothing either). Children of the endpoint that are
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
    kept: list[str] = field(default_factory=list)
    """Children already as rendered."""

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


@dataclass(frozen=True)
class LiveChild:
    """What a reconcile needs to know of a live child: where it is, who owns it, its hash."""

    api_version: str
    kind: str
    namespace: str
    name: str
    owner_uid: str | None
    hash: str | None


def _as_live(obj: dict[str, Any]) -> LiveChild:
    meta = obj["metadata"]
    return LiveChild(
        obj["apiVersion"],
        obj["kind"],
        meta["namespace"],
        meta["name"],
        controller_uid(meta),
        (meta.get("annotations") or {}).get(HASH_ANNOTATION),
    )


def controller_uid(meta: Any) -> str | None:
    """The uid of the object's controller (its owner reference with controller: true)."""
    refs = meta.get("ownerReferences") or []
    return next((r.get("uid") for r in refs if r.get("controller")), None)


def sync_children(
    api: ApiClient,
    owner: Owner,
    rendered: list[dict[str, Any]],
    field_manager: str,
    live: dict[str, LiveChild] | None = None,
) -> SyncResult:
    """Apply what changed and delete what is no longer rendered.

    ``live`` is the endpoint's children as the operator's watches see them; without it they
    are listed from the API server (three requests).
    """
    result = SyncResult()
    if live is None:
        live = {k: _as_live(obj) for k, obj in list_children(api, owner).items()}
    for obj in rendered:
        key = _key(obj)
        current = live.get(key)
        want = obj["metadata"]["annotations"][HASH_ANNOTATION]
        if current is not None and current.hash == want:
            result.kept.append(key)
            continue
        kube.apply(api, obj, field_manager)
        result.applied.append(key)
    for key, child in live.items():
        if key in result.kept or key in result.applied:
            continue
        path = kube.resource_path(child.api_version, child.kind, child.namespace, child.name)
        try:
            kube.request(api, "DELETE", path, query=[("propagationPolicy", "Background")])
        except ApiException as err:
            if err.status != 404:
                raise
        result.deleted.append(key)
    return result
