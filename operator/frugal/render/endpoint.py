"""(endpoint, placement, settings) → the child objects the operator applies.

One Deployment per capacity type that has replicas, a Service over all of them, and a
PodDisruptionBudget once two replicas or more are placed. A type without replicas gets no
Deployment, and an endpoint scaled to zero has none: at 1,000 endpoints the zero-replica
Deployments were half of all Deployments, each an apply, a ReplicaSet and a stream of status
updates for the API server and a watched object in the operator's memory. Moving replicas to
another type creates that type's Deployment and deletes the emptied one (its pods still get
their grace period). A budget of one unavailable pod over a single replica permits every
eviction, so it would protect nothing at the same cost: an endpoint gets one with its second
replica.

Node selectors and tolerations come from the platform profile, so the scheduler — not hope —
puts each pod on the capacity the plan chose; node affinity on the profile's GPU-count label
puts it on the smallest node that holds it (render/affinity.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from frugal.api.base import API_VERSION, CapacityType
from frugal.api.endpoint import InferenceEndpointSpec
from frugal.placement.plan import EndpointPlan
from frugal.render.affinity import gpu_count_affinity
from frugal.render.engine import MODEL_ROOT, pvc_claim, vllm_args
from frugal.render.labels import CAPACITY_LABEL, ENDPOINT_LABEL, endpoint_labels
from frugal.render.nodepools import loading_annotations
from frugal.settings import Settings

HASH_ANNOTATION = "frugal.dev/rendered-hash"
CACHE_DIR = "/cache"
STARTUP_PROBE_PERIOD = 10


@dataclass(frozen=True)
class Owner:
    """The endpoint that owns the children (for ownerReferences and names)."""

    name: str
    namespace: str
    uid: str


MIN_REPLICAS_FOR_PDB = 2
"""``maxUnavailable: 1`` only keeps a replica serving through a drain when there are two."""


def deployment_name(endpoint: str, capacity: CapacityType) -> str:
    return f"{endpoint}-{capacity.value}"


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceEndpoint",
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def with_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """Stamp the object with a hash of its content, so a no-op reconcile can skip the write."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
    obj["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = digest
    return obj


def render_endpoint(
    owner: Owner, spec: InferenceEndpointSpec, plan: EndpointPlan, settings: Settings
) -> list[dict[str, Any]]:
    """Every child object of the endpoint, in apply order."""
    if not plan.fit.fits:
        return []
    labels = endpoint_labels(owner.name, spec.cost_allocation)
    children = [
        _deployment(owner, spec, plan, settings, ctype=ctype, labels=labels)
        for ctype in deployed_types(spec, plan)
    ]
    children.append(_service(owner, labels, settings.engine.port))
    if plan.split.placed >= MIN_REPLICAS_FOR_PDB:
        children.append(_pdb(owner, labels))
    return [with_hash(c) for c in children]


def deployed_types(spec: InferenceEndpointSpec, plan: EndpointPlan) -> list[CapacityType]:
    """The capacity types that get a Deployment (those with replicas), in preference order."""
    return [ctype for ctype in spec.capacity.preference if plan.split.count(ctype) > 0]


def _meta(owner: Owner, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(owner)],
    }


def _deployment(
    owner: Owner,
    spec: InferenceEndpointSpec,
    plan: EndpointPlan,
    settings: Settings,
    *,
    ctype: CapacityType,
    labels: dict[str, str],
) -> dict[str, Any]:
    selector = {ENDPOINT_LABEL: owner.name, CAPACITY_LABEL: ctype.value}
    pod_labels = {**labels, CAPACITY_LABEL: ctype.value}
    reservation = spec.capacity.reservation if ctype is CapacityType.RESERVED else None
    assert plan.fit.gpu is not None
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(owner, deployment_name(owner.name, ctype), pod_labels),
        "spec": {
            "replicas": plan.split.count(ctype),
            "selector": {"matchLabels": selector},
            # One extra pod at a time, never one fewer: a model server that is replaced must
            # keep serving until its successor has loaded the weights.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "revisionHistoryLimit": 3,
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(settings.engine.port),
                        "prometheus.io/path": "/metrics",
                        **loading_annotations(spec, settings),
                    },
                },
                "spec": _pod_spec(
                    spec, plan, settings, ctype=ctype, reservation=reservation, selector=selector
                ),
            },
        },
    }


def _pod_spec(
    spec: InferenceEndpointSpec,
    plan: EndpointPlan,
    settings: Settings,
    *,
    ctype: CapacityType,
    reservation: str | None,
    selector: dict[str, str],
) -> dict[str, Any]:
    engine = settings.engine
    profile = settings.platform
    gpus = plan.fit.count
    pod: dict[str, Any] = {
        # A Service named like an env prefix (e.g. "vllm") would inject VLLM_PORT=tcp://...,
        # which vLLM refuses at start-up; the engine needs no service links at all.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 120,
        "nodeSelector": profile.node_selector(ctype, plan.fit.gpu.name, reservation),
        "tolerations": profile.tolerations(ctype),
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector},
            }
        ],
        "securityContext": _pod_security(engine.run_as_user),
        "containers": [_container(spec, plan, settings, gpus)],
        "volumes": _volumes(spec, settings, gpus),
    }
    if profile.gpu_count_label:
        pod["affinity"] = {"nodeAffinity": gpu_count_affinity(profile.gpu_count_label, gpus)}
    if engine.scheduler_name:
        pod["schedulerName"] = engine.scheduler_name
    return pod


def _pod_security(run_as_user: int | None) -> dict[str, Any]:
    ctx: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if run_as_user is not None:
        ctx.update(runAsNonRoot=True, runAsUser=run_as_user, runAsGroup=0, fsGroup=0)
    return ctx


def _container(
    spec: InferenceEndpointSpec, plan: EndpointPlan, settings: Settings, gpus: int
) -> dict[str, Any]:
    engine = settings.engine
    port = engine.port
    cpu = spec.resources.cpu or str(int(float(engine.cpu_per_gpu) * gpus))
    memory = spec.resources.memory or _scale_quantity(engine.memory_per_gpu, gpus)
    env = [
        {"name": "HOME", "value": f"{CACHE_DIR}/home"},
        {"name": "HF_HOME", "value": f"{CACHE_DIR}/huggingface"},
        {"name": "VLLM_CACHE_ROOT", "value": f"{CACHE_DIR}/vllm"},
        {"name": "XDG_CACHE_HOME", "value": CACHE_DIR},
        # Torch looks the user up by name; an arbitrary UID has no passwd entry.
        {"name": "USER", "value": "vllm"},
        {"name": "LOGNAME", "value": "vllm"},
    ]
    if engine.hf_token_secret:
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": engine.hf_token_secret, "key": "HF_TOKEN"}},
            }
        )
    env += [{"name": e.name, "value": e.value} for e in spec.engine.env]
    mounts = [
        {"name": "cache", "mountPath": CACHE_DIR},
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    claim = pvc_claim(spec.model.uri)
    if claim:
        mounts.append({"name": "weights", "mountPath": f"{MODEL_ROOT}/{claim}", "readOnly": True})
    health = {"path": "/health", "port": "http"}
    return {
        "name": "vllm",
        "image": spec.engine.image or engine.image_for(spec.engine.quantization),
        "args": vllm_args(spec, gpus, port),
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": env,
        "resources": {
            "requests": {"cpu": str(cpu), "memory": str(memory), "nvidia.com/gpu": str(gpus)},
            "limits": {"memory": str(memory), "nvidia.com/gpu": str(gpus)},
        },
        # vLLM only accepts connections once the weights are loaded; the start-up probe gives
        # it the endpoint's cold-start budget, and liveness starts counting only after that.
        "startupProbe": {
            "httpGet": health,
            "periodSeconds": STARTUP_PROBE_PERIOD,
            "failureThreshold": _startup_failures(spec),
        },
        "readinessProbe": {"httpGet": health, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": health, "periodSeconds": 15, "failureThreshold": 4},
        # Let the Service stop routing before vLLM starts draining.
        "lifecycle": {"preStop": {"sleep": {"seconds": 10}}},
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _startup_failures(spec: InferenceEndpointSpec) -> int:
    from frugal.api.base import parse_duration

    budget = parse_duration(spec.scaling.cold_start_budget).total_seconds()
    return max(int(budget // STARTUP_PROBE_PERIOD), 30)


def _volumes(spec: InferenceEndpointSpec, settings: Settings, gpus: int) -> list[dict]:
    engine = settings.engine
    cache: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": engine.model_cache_claim}}
        if engine.model_cache_claim
        else {"emptyDir": {"sizeLimit": engine.model_cache_size}}
    )
    volumes = [
        {"name": "cache", **cache},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": engine.shm_size}},
        {"name": "tmp", "emptyDir": {}},
    ]
    claim = pvc_claim(spec.model.uri)
    if claim:
        volumes.append(
            {"name": "weights", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
    return volumes


def _service(owner: Owner, labels: dict[str, str], port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, owner.name, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": {ENDPOINT_LABEL: owner.name},
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _pdb(owner: Owner, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(owner, owner.name, labels),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {ENDPOINT_LABEL: owner.name}},
            # A pod that never became ready must not block node drains.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def _scale_quantity(quantity: str, factor: int) -> str:
    """'24Gi' × 2 → '48Gi' (integer quantities with a binary or decimal suffix)."""
    digits = quantity.rstrip("KMGTPEikmgtpe")
    return f"{int(digits) * factor}{quantity[len(digits) :]}"


def service_url(owner: Owner, port: int) -> str:
    return f"http://{owner.name}.{owner.namespace}.svc:{port}/v1"
