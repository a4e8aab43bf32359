"""CustomResourceDefinitions of the three kinds, generated from the pydantic models.

``frugal crds`` writes these to ``crds/``; a test fails when the files differ from what the
models generate, so the YAML can never drift from the code that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from frugal.api.base import GROUP, VERSION, cel
from frugal.api.cache import CachePolicy, CachePolicySpec, CachePolicyStatus
from frugal.api.endpoint import InferenceEndpoint, InferenceEndpointSpec, InferenceEndpointStatus
from frugal.api.routing import RoutingPolicy, RoutingPolicySpec, RoutingPolicyStatus
from frugal.api.schema import structural_schema

CATEGORY = "frugal"
# Children are named <name>-<capacity-type> (e.g. -on-demand) and must stay DNS labels.
MAX_NAME_LENGTH = 48


@dataclass(frozen=True)
class Kind:
    """What a CRD needs beyond the schema: names and the columns of ``kubectl get``."""

    model: type[BaseModel]
    spec: type[BaseModel]
    status: type[BaseModel]
    plural: str
    short_name: str
    columns: list[dict[str, Any]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.model.__name__

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _col(name: str, path: str, type_: str = "string", description: str = "", **extra: Any) -> dict:
    return {"name": name, "type": type_, "jsonPath": path, "description": description, **extra}


_AGE = _col("Age", ".metadata.creationTimestamp", "date", "Time since creation")

KINDS: tuple[Kind, ...] = (
    Kind(
        InferenceEndpoint,
        InferenceEndpointSpec,
        InferenceEndpointStatus,
        plural="inferenceendpoints",
        short_name="ie",
        columns=[
            _col("Phase", ".status.phase", description="Pending, Serving, ScaledToZero, Degraded"),
            _col("GPU", ".status.gpu.type", description="GPU type chosen"),
            _col("Ready", ".status.replicas.summary", description="Ready/desired replicas"),
            _col("Spot", ".status.replicas.spot", "integer", "Replicas on spot"),
            _col("Reserved", ".status.replicas.reserved", "integer", "Replicas on reserved"),
            _col("OnDemand", ".status.replicas.onDemand", "integer", "Replicas on on-demand"),
            _col("$/h", ".status.cost.hourlyUSD", "number", "US dollars per hour"),
            _col("Model", ".spec.model.servedName", description="Served model name", priority=1),
            _AGE,
        ],
    ),
    Kind(
        RoutingPolicy,
        RoutingPolicySpec,
        RoutingPolicyStatus,
        plural="routingpolicies",
        short_name="rp",
        columns=[
            _col("Model", ".spec.modelName", description="Virtual model name clients call"),
            _col("Weights", ".status.weightsSummary", description="Effective weight per tier"),
            _col("Last Reroute", ".status.lastRerouteTime", "date", "When weights last changed"),
            _AGE,
        ],
    ),
    Kind(
        CachePolicy,
        CachePolicySpec,
        CachePolicyStatus,
        plural="cachepolicies",
        short_name="cpol",
        columns=[
            _col("Target", ".spec.targetRef.name", description="RoutingPolicy or endpoint"),
            _col("Hit Rate", ".status.hitRate.total", "number", "Fraction answered from cache"),
            _col("Saved $", ".status.estimatedSavedUSD", "number", "US dollars saved"),
            _AGE,
        ],
    ),
)


def _root_schema(kind: Kind) -> dict[str, Any]:
    status = structural_schema(kind.status)
    # kopf keeps handler progress and results in status; the schema must not prune them.
    status["x-kubernetes-preserve-unknown-fields"] = True
    return {
        "type": "object",
        "description": (kind.model.__doc__ or "").strip(),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version: frugal.dev/v1alpha1."},
            "kind": {"type": "string", "description": f"Kind: {kind.kind}."},
            "metadata": {"type": "object"},
            "spec": structural_schema(kind.spec),
            "status": status,
        },
        "x-kubernetes-validations": [
            cel(
                f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
                f"metadata.name must be at most {MAX_NAME_LENGTH} characters "
                "(frugal appends suffixes to name child objects)",
            )
        ],
    }


def crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition manifest of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {"app.kubernetes.io/name": "frugal", "app.kubernetes.io/part-of": "frugal"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": [kind.short_name],
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": kind.columns,
                    "schema": {"openAPIV3Schema": _root_schema(kind)},
                }
            ],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """File name → CRD manifest, for every kind."""
    return {f"{GROUP}_{k.plural}.yaml": crd(k) for k in KINDS}
