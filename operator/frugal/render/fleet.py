"""``frugal render``: the children of every endpoint in some files, placed as the operator would.

Placement is computed across all endpoints in the files together (reservation pools are
shared), exactly as the operator computes it across all endpoints it watches. Objects of other
kinds in the files are ignored, so a whole manifests folder can be rendered.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from frugal.api.endpoint import InferenceEndpoint
from frugal.placement.plan import EndpointWish, initial_replicas, plan_fleet
from frugal.render.endpoint import Owner, render_endpoint
from frugal.settings import Settings


def _offline_uid(namespace: str, name: str) -> str:
    """A stable stand-in for the uid the API server would assign."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def render_files(
    files: list[Path], settings: Settings, default_namespace: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """(child manifests, problems found) for every InferenceEndpoint in ``files``."""
    sourced = [(str(path), doc) for path in files for doc in yaml.safe_load_all(path.read_text())]
    return render_documents(sourced, settings, default_namespace)


def render_documents(
    sourced: list[tuple[str, Any]], settings: Settings, default_namespace: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """(child manifests, problems found) for the InferenceEndpoints among (source, document)."""
    endpoints: list[InferenceEndpoint] = []
    problems: list[str] = []
    for source, raw in sourced:
        if not raw or raw.get("kind") != "InferenceEndpoint":
            continue
        meta = {"namespace": default_namespace, **raw.get("metadata", {})}
        try:
            endpoints.append(InferenceEndpoint.model_validate({**raw, "metadata": meta}))
        except ValidationError as err:
            name = meta.get("name", "?")
            problems.append(f"{source}: InferenceEndpoint {name}: {err}")
    keyed = {f"{e.metadata.namespace}/{e.metadata.name}": e for e in endpoints}
    wishes = [EndpointWish(k, e.spec, initial_replicas(e.spec)) for k, e in keyed.items()]
    plans = plan_fleet(wishes, settings)
    docs: list[dict[str, Any]] = []
    for key, endpoint in keyed.items():
        plan = plans[key]
        if not plan.placed:
            problems.append(f"{key}: {plan.code}: {plan.message}")
        meta = endpoint.metadata
        assert meta.namespace is not None
        owner = Owner(meta.name, meta.namespace, _offline_uid(meta.namespace, meta.name))
        docs.extend(render_endpoint(owner, endpoint.spec, plan, settings))
    return docs, problems
