"""(GPU pools in use, settings) → Karpenter NodePools and EC2NodeClasses.

With the Karpenter profile and ``nodePools.manage: true`` frugal provisions the node pools its
placement needs instead of asking a platform team to pre-create them:

- one NodePool per GPU type and capacity type in use, ``<prefix>-<gpu>-spot`` and
  ``<prefix>-<gpu>-on-demand``, on one shared EC2NodeClass ``<prefix>``;
- one NodePool per reservation pool in use, *named after the reservation pool* (frugal selects
  reserved nodes by ``karpenter.sh/nodepool`` = the reservation's name), on an EC2NodeClass of
  the same name whose ``capacityReservationSelectorTerms`` select the pool's EC2 capacity
  reservations (by id from settings or discovery, else by the tag
  ``frugal.dev/reservation: <pool>``).

Every pool requires its capacity type (``karpenter.sh/capacity-type``) and its GPU
(``karpenter.k8s.aws/instance-gpu-name``, narrowed to the catalog's instance families or
types), carries the ``nvidia.com/gpu`` NoSchedule taint, and is weighted so that reserved wins
over spot over on-demand. Disruption suits model servers: ``WhenEmpty`` consolidation only (a
node serving a loaded model is never consolidated to repack it), a delay before an empty node
goes, and budgets that replace at most one GPU node at a time. Limits cap the GPUs per pool.

Pools are shared by endpoints, so they carry no ownerReferences: they are labelled
``app.kubernetes.io/managed-by: frugal`` and the controller deletes only frugal-managed pools
that no endpoint (and no pod) needs any more. Pure: the same uses and settings always render
the same objects, byte for byte (a changed NodePool template makes Karpenter replace every node
of the pool as drifted, so stability matters).

Field names and CEL rules follow the CRDs of Karpenter v1.14.1 (karpenter.sh/v1,
karpenter.k8s.aws/v1); tests apply every rendered object to a real API server with those CRDs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

from frugal.api.base import LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN, CapacityType, parse_duration
from frugal.catalog.profiles import PROFILES, ProfileName
from frugal.render.labels import MANAGED_BY

if TYPE_CHECKING:
    from frugal.api.endpoint import InferenceEndpointSpec
    from frugal.catalog.gpus import GpuType
    from frugal.placement.plan import EndpointPlan
    from frugal.settings import ReservationPool, Settings

NODEPOOL_API = "karpenter.sh/v1"
EC2NODECLASS_API = "karpenter.k8s.aws/v1"
EC2NODECLASS_GROUP = "karpenter.k8s.aws"
CAPACITY_TYPE_KEY = "karpenter.sh/capacity-type"
NODEPOOL_KEY = "karpenter.sh/nodepool"
GPU_NAME_KEY = "karpenter.k8s.aws/instance-gpu-name"
INSTANCE_FAMILY_KEY = "karpenter.k8s.aws/instance-family"
INSTANCE_TYPE_KEY = "node.kubernetes.io/instance-type"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}

COMPONENT_KEY = "app.kubernetes.io/component"
NODE_POOL_COMPONENT = "node-pool"
NODE_CLASS_COMPONENT = "node-class"
GPU_TYPE_LABEL = "frugal.dev/gpu-type"
CAPACITY_LABEL = "frugal.dev/capacity-type"
RESERVATION_LABEL = "frugal.dev/reservation"
RESERVATION_TAG = "frugal.dev/reservation"
"""Default EC2 tag that marks which reservation pool a capacity reservation belongs to."""

DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
LOADING_ANNOTATION = "frugal.dev/loading"
"""Marks a do-not-disrupt annotation as frugal's own, set while the model loads."""

_NODE_LABELS = {"kubernetes.io/hostname", GPU_TYPE_LABEL, CAPACITY_LABEL, RESERVATION_LABEL}

MANAGED_SELECTOR = "app.kubernetes.io/managed-by=frugal"
"""Label selector of everything frugal manages (narrowed by component when listing)."""

_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Patterns copied from the Karpenter v1.14.1 CRDs, so bad settings fail when loaded, not at apply.
_KARPENTER_DURATION = r"^([0-9]+(s|m|h))+$"
_KARPENTER_DURATION_OR_NEVER = r"^(([0-9]+(s|m|h))+|Never)$"
_BUDGET_NODES = r"^((100|[0-9]{1,2})%|[0-9]+)$"
_BUDGET_DURATION = r"^((([0-9]+(h|m))|([0-9]+h[0-9]+m))(0s)?)$"
_VOLUME_SIZE = r"^[1-9][0-9]{0,4}(Gi|G)$"

Duration = Annotated[str, StringConstraints(pattern=_KARPENTER_DURATION)]
DurationOrNever = Annotated[str, StringConstraints(pattern=_KARPENTER_DURATION_OR_NEVER)]
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY_PATTERN, max_length=316)]
LabelValue = Annotated[str, StringConstraints(pattern=LABEL_VALUE_PATTERN, max_length=63)]
TagKey = Annotated[str, StringConstraints(min_length=1, max_length=128)]
TagValue = Annotated[str, StringConstraints(min_length=1, max_length=256)]


# --- settings ---------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class PoolWeights(_Model):
    """Karpenter NodePool weights (1-100, higher wins): reserved over spot over on-demand."""

    reserved: int = Field(default=100, ge=1, le=100)
    spot: int = Field(default=50, ge=1, le=100)
    on_demand: int = Field(default=10, ge=1, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> PoolWeights:
        if not self.reserved > self.spot > self.on_demand:
            raise ValueError("weights must make reserved > spot > on-demand")
        return self

    def of(self, capacity: CapacityType) -> int:
        return {
            CapacityType.RESERVED: self.reserved,
            CapacityType.SPOT: self.spot,
            CapacityType.ON_DEMAND: self.on_demand,
        }[capacity]


class DisruptionBudget(_Model):
    """One Karpenter disruption budget: at most ``nodes`` disrupted at once (for ``reasons``)."""

    nodes: str = Field(default="1", pattern=_BUDGET_NODES)
    """A count ("1") or a percentage ("10%") of the pool's nodes."""
    reasons: tuple[Literal["Empty", "Drifted", "Underutilized"], ...] = ()
    """Disruption reasons the budget applies to; empty means all."""
    schedule: str | None = None
    """Cron schedule when the budget is active (with ``duration``), e.g. "0 9 * * mon-fri"."""
    duration: str | None = Field(default=None, pattern=_BUDGET_DURATION)

    @model_validator(mode="after")
    def _window(self) -> DisruptionBudget:
        if (self.schedule is None) != (self.duration is None):
            raise ValueError("a disruption budget needs both schedule and duration, or neither")
        return self

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"nodes": self.nodes}
        if self.reasons:
            out["reasons"] = list(self.reasons)
        if self.schedule is not None:
            out["schedule"] = self.schedule
            out["duration"] = self.duration
        return out


class PoolDisruption(_Model):
    """How Karpenter may take GPU nodes away. Consolidation is always ``WhenEmpty``: a node
    that serves a loaded model is never drained just to repack it."""

    consolidate_after: DurationOrNever = "5m"
    """How long a spot or on-demand GPU node stays empty before it is removed (keeps a node
    warm across a short scale-to-zero, so a wake does not pay a new node's start-up)."""
    reserved_consolidate_after: DurationOrNever = "Never"
    """The same for reserved pools: capacity reservations bill whether used or not, so an empty
    reserved node costs nothing extra and is kept by default."""
    budgets: tuple[DisruptionBudget, ...] = (DisruptionBudget(nodes="1"),)
    """At most one GPU node of a pool disrupted (drift, emptiness) at a time by default."""
    expire_after: DurationOrNever = "720h"
    """Node lifetime; expiry is forceful (it ignores do-not-disrupt). "Never" disables it."""
    termination_grace_period: Duration | None = None
    """Upper bound of a node drain. Unset by default: when set, Karpenter also drifts nodes
    whose pods are still loading a model (pod-level do-not-disrupt then no longer blocks
    drift)."""


class NodeClassSettings(_Model):
    """Parameters of the EC2NodeClasses frugal renders (AWS)."""

    cluster_name: str | None = None
    """EKS cluster name; when set, the defaults below follow Karpenter's getting-started
    conventions (role KarpenterNodeRole-<cluster>, discovery tag karpenter.sh/discovery)."""
    role: str | None = None
    """IAM role of the nodes (Karpenter creates the instance profile)."""
    instance_profile: str | None = None
    """An existing instance profile instead of ``role``."""
    ami_alias: str = Field(default="al2023@latest", pattern=r"^(al2|al2023|bottlerocket)@.+$")
    """AMI family@version; Karpenter picks the NVIDIA variant for GPU instances. Pin a version
    (e.g. al2023@v20250715) in production: "latest" drifts every node on each AMI release."""
    subnet_selector_tags: dict[TagKey, TagValue] = Field(default_factory=dict)
    subnet_ids: tuple[Annotated[str, StringConstraints(pattern=r"^subnet-[0-9a-z]+$")], ...] = ()
    security_group_selector_tags: dict[TagKey, TagValue] = Field(default_factory=dict)
    security_group_ids: tuple[
        Annotated[str, StringConstraints(pattern=r"^sg-[0-9a-z]+$")], ...
    ] = ()
    volume_size: str = Field(default="300Gi", pattern=_VOLUME_SIZE)
    """Root (AL2/AL2023) or data (Bottlerocket) volume: images and downloaded weights live here."""
    volume_type: Literal["gp3", "gp2", "io1", "io2"] = "gp3"
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)
    """EC2 tags on every instance and volume (cost allocation in the AWS bill). Karpenter adds
    karpenter.sh/nodepool itself, so activating that tag splits spend per pool."""

    @model_validator(mode="after")
    def _check(self) -> NodeClassSettings:
        if self.role and self.instance_profile:
            raise ValueError("set nodeClass.role or nodeClass.instanceProfile, not both")
        restricted = {"eks:eks-cluster-name", "karpenter.sh/nodepool", "karpenter.sh/nodeclaim"}
        restricted.add("karpenter.k8s.aws/ec2nodeclass")
        bad = [k for k in self.tags if k in restricted or k.startswith("kubernetes.io/cluster")]
        if bad:
            raise ValueError(f"nodeClass.tags may not set Karpenter's own tags: {bad}")
        return self

    @property
    def effective_role(self) -> str | None:
        if self.role or self.instance_profile:
            return self.role
        return f"KarpenterNodeRole-{self.cluster_name}" if self.cluster_name else None

    def _discovery(self, tags: Mapping[str, str]) -> dict[str, str]:
        if tags:
            return dict(tags)
        return {"karpenter.sh/discovery": self.cluster_name} if self.cluster_name else {}

    def subnet_terms(self) -> list[dict[str, Any]]:
        terms: list[dict[str, Any]] = [{"id": i} for i in self.subnet_ids]
        tags = self._discovery(self.subnet_selector_tags)
        return terms + ([{"tags": tags}] if tags or not terms else [])

    def security_group_terms(self) -> list[dict[str, Any]]:
        terms: list[dict[str, Any]] = [{"id": i} for i in self.security_group_ids]
        tags = self._discovery(self.security_group_selector_tags)
        return terms + ([{"tags": tags}] if tags or not terms else [])

    def complete(self) -> list[str]:
        """What is missing for the API server to accept the EC2NodeClass."""
        missing = []
        if not (self.effective_role or self.instance_profile):
            missing.append("nodeClass.role (or instanceProfile, or clusterName)")
        if not (self.subnet_ids or self._discovery(self.subnet_selector_tags)):
            missing.append("nodeClass.subnetSelectorTags (or subnetIds, or clusterName)")
        if not (self.security_group_ids or self._discovery(self.security_group_selector_tags)):
            missing.append(
                "nodeClass.securityGroupSelectorTags (or securityGroupIds, or clusterName)"
            )
        return missing


class NodePoolSettings(_Model):
    """Karpenter node pools frugal provisions for its placement (``settings.nodePools``)."""

    manage: bool = False
    """Render and apply NodePools/EC2NodeClasses (Karpenter profile only)."""
    prefix: str = Field(default="frugal", pattern=_NAME, max_length=40)
    """Name prefix: pools <prefix>-<gpu>-spot / -on-demand, node class <prefix>."""
    instance_selection: Literal["families", "instance-types", "gpu-name"] = "families"
    """How a pool narrows the GPU beyond instance-gpu-name: "families" = the instance families
    of the catalog's instance types, every size (lets Karpenter pick a size whose CPU and
    memory fit the pod); "instance-types" = exactly the catalog's types; "gpu-name" = any
    instance type with that GPU."""
    max_gpus: int | None = Field(default=64, ge=0)
    """Limit on total GPUs per spot or on-demand pool (limits: nvidia.com/gpu); None: none."""
    gpu_limits: dict[str, int] = Field(default_factory=dict)
    """Per-pool GPU limits by "<gpu>" or "<gpu>/<capacity>" (e.g. {h100: 16, l4/spot: 32});
    the most specific wins. Reserved pools are limited to their reservation's GPUs."""
    weights: PoolWeights = Field(default_factory=PoolWeights)
    disruption: PoolDisruption = Field(default_factory=PoolDisruption)
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    """Extra labels on every pool and its nodes (cost allocation, e.g. cost-center)."""
    node_class: NodeClassSettings = Field(default_factory=NodeClassSettings)
    discover_reservations: bool = False
    """Find capacity reservation ids with describe_capacity_reservations (boto3, region from
    settings.aws) for reservation pools that list none."""
    reservation_tag: TagKey = RESERVATION_TAG
    """EC2 tag whose value names a capacity reservation's pool (discovery and the fallback
    selector of a reserved EC2NodeClass)."""
    protect_loading: bool = True
    """Pods carry karpenter.sh/do-not-disrupt while the model loads (removed once Ready, and
    expiring on its own after the start-up window)."""
    loading_margin_seconds: int = Field(default=600, ge=0)
    """Added to the start-up probe window for image pull and weight download."""

    @model_validator(mode="after")
    def _check(self) -> NodePoolSettings:
        for key in self.labels:
            domain = key.split("/", 1)[0] if "/" in key else ""
            if domain.endswith(("karpenter.sh", "karpenter.k8s.aws")) or key in _NODE_LABELS:
                raise ValueError(f"nodePools.labels: {key!r} is set by Karpenter or frugal")
        for key in self.gpu_limits:
            gpu, _, capacity = key.partition("/")
            if not gpu or (capacity and capacity not in {c.value for c in CapacityType}):
                raise ValueError(f"nodePools.gpuLimits: bad key {key!r} (<gpu> or <gpu>/<type>)")
        if self.manage and (missing := self.node_class.complete()):
            raise ValueError(f"nodePools.manage needs {', '.join(missing)}")
        return self


def node_pool_settings(settings: Settings) -> NodePoolSettings:
    """``settings.nodePools``, or the defaults while Settings has no such field."""
    return getattr(settings, "node_pools", None) or NodePoolSettings()


# --- what is in use ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolUse:
    """One node pool an endpoint (or a running pod) needs."""

    gpu_type: str
    """Catalog name of the GPU."""
    capacity: CapacityType
    reservation: str | None = None
    """Reservation pool name; set exactly for reserved capacity."""

    def __post_init__(self) -> None:
        if (self.capacity is CapacityType.RESERVED) != (self.reservation is not None):
            raise ValueError("a reservation is named exactly for reserved capacity")

    @property
    def sort_key(self) -> tuple[str, str, str]:
        return (self.gpu_type, self.capacity.value, self.reservation or "")


def endpoint_pool_uses(
    spec: InferenceEndpointSpec, plan: EndpointPlan, settings: Settings
) -> set[PoolUse]:
    """The pools one endpoint needs: every capacity type it may use, on the GPU it was given.

    By preference, not by today's replica count: a pool without pods costs nothing, and
    keeping it lets the spot loop or the autoscaler move replicas without waiting for a pool.
    Spot counts only when the endpoint's spot share can be above zero; reserved only with a
    configured reservation pool of the same GPU type.
    """
    from frugal.placement.split import spot_share

    gpu = plan.fit.gpu
    if gpu is None:
        return set()
    uses: set[PoolUse] = set()
    for capacity in spec.capacity.preference:
        if capacity is CapacityType.RESERVED:
            pool = settings.reservation(spec.capacity.reservation or "")
            if pool is not None and pool.gpu_type == gpu.name:
                uses.add(PoolUse(gpu.name, capacity, pool.name))
        elif capacity is CapacityType.SPOT:
            if spot_share(spec.capacity) > 0:
                uses.add(PoolUse(gpu.name, capacity))
        else:
            uses.add(PoolUse(gpu.name, capacity))
    return uses


def selector_pool_use(node_selector: Mapping[str, str], settings: Settings) -> PoolUse | None:
    """The pool a pod with this node selector runs on (or waits for), if frugal knows it.

    Running and pending pods keep their pool alive even when no plan asks for it any more
    (an endpoint whose new spec fits nowhere keeps its old pods; a rollout to another GPU
    still has old pods on the old one).
    """
    profile = PROFILES[ProfileName.KARPENTER]
    capacity_value = node_selector.get(CAPACITY_TYPE_KEY)
    gpu_value = node_selector.get(profile.gpu_label)
    if capacity_value not in {c.value for c in CapacityType} or not gpu_value:
        return None
    capacity = CapacityType(capacity_value)
    if capacity is CapacityType.RESERVED:
        name = node_selector.get(NODEPOOL_KEY)
        pool = settings.reservation(name or "")
        return PoolUse(pool.gpu_type, capacity, pool.name) if pool else None
    by_value = {profile.gpu_value(g): g for g in settings.catalog()}
    gpu = by_value.get(gpu_value)
    return PoolUse(gpu, capacity) if gpu else None


# --- names ------------------------------------------------------------------------------------


def pool_name(use: PoolUse, prefix: str = "frugal") -> str:
    """The NodePool's name: the reservation pool's own name for reserved capacity."""
    if use.reservation is not None:
        return use.reservation
    return f"{prefix}-{use.gpu_type}-{use.capacity.value}"


def node_class_name(use: PoolUse, prefix: str = "frugal") -> str:
    """Reserved pools get a class of their own (it selects their reservations)."""
    return use.reservation if use.reservation is not None else prefix


def _generated_names(settings: Settings, pools: NodePoolSettings) -> set[str]:
    return {pools.prefix} | {
        f"{pools.prefix}-{gpu}-{c.value}"
        for gpu in settings.catalog()
        for c in (CapacityType.SPOT, CapacityType.ON_DEMAND)
    }


def name_conflicts(settings: Settings, pools: NodePoolSettings | None = None) -> list[str]:
    """Reservation pools whose names collide with frugal's generated pool or class names."""
    generated = _generated_names(settings, pools or node_pool_settings(settings))
    return [
        f"reservation pool {p.name!r} has the name of a generated node pool or class"
        for p in settings.reservations
        if p.name in generated
    ]


# --- capacity reservations --------------------------------------------------------------------


class Reservation(Protocol):
    """What discovery needs of a capacity reservation (frugal.pricing.aws.CapacityReservation)."""

    id: str
    instance_type: str
    tags: Mapping[str, str]


def _family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def match_capacity_reservations(
    pool: ReservationPool,
    gpu: GpuType,
    found: Iterable[Reservation],
    tag: str = RESERVATION_TAG,
) -> tuple[str, ...]:
    """Ids of the discovered reservations that belong to ``pool``, sorted.

    Reservations tagged ``<tag>: <pool name>`` belong to that pool. Without any, untagged
    reservations of an instance family of the pool's GPU (from the catalog's instance types)
    are taken; a reservation tagged for another pool is never taken.
    """
    found = list(found)
    tagged = sorted(r.id for r in found if r.tags.get(tag) == pool.name)
    if tagged:
        return tuple(tagged)
    families = {_family(t) for t in gpu.instance_types}
    return tuple(
        sorted(r.id for r in found if tag not in r.tags and _family(r.instance_type) in families)
    )


def reservation_terms(
    pool: ReservationPool, ids: Sequence[str], tag: str = RESERVATION_TAG
) -> list[dict[str, Any]]:
    """capacityReservationSelectorTerms: by id when known, else by the pool's tag."""
    if ids:
        return [{"id": i} for i in sorted(set(ids))]
    return [{"tags": {tag: pool.name}}]


# --- rendering --------------------------------------------------------------------------------


def gpu_limit(use: PoolUse, pools: NodePoolSettings, settings: Settings) -> int | None:
    if use.reservation is not None:
        reservation = settings.reservation(use.reservation)
        return reservation.gpus if reservation else 0
    for key in (f"{use.gpu_type}/{use.capacity.value}", use.gpu_type):
        if key in pools.gpu_limits:
            return pools.gpu_limits[key]
    return pools.max_gpus


def _requirements(
    use: PoolUse, gpu: GpuType, pools: NodePoolSettings, settings: Settings
) -> list[dict[str, Any]]:
    profile = PROFILES[ProfileName.KARPENTER]
    capacity_value = profile.capacity_labels[use.capacity][CAPACITY_TYPE_KEY]
    reqs = [
        {"key": CAPACITY_TYPE_KEY, "operator": "In", "values": [capacity_value]},
        {"key": GPU_NAME_KEY, "operator": "In", "values": [profile.gpu_value(gpu.name)]},
    ]
    types = sorted(set(gpu.instance_types))
    if types and pools.instance_selection == "families":
        families = sorted({_family(t) for t in types})
        reqs.append({"key": INSTANCE_FAMILY_KEY, "operator": "In", "values": families})
    elif types and pools.instance_selection == "instance-types":
        reqs.append({"key": INSTANCE_TYPE_KEY, "operator": "In", "values": types})
    reqs += [
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
    ]
    return reqs


def _pool_labels(use: PoolUse, pools: NodePoolSettings) -> dict[str, str]:
    """Labels of the pool's nodes (cost allocation by GPU and capacity type, and extras)."""
    labels = {**pools.labels, GPU_TYPE_LABEL: use.gpu_type, CAPACITY_LABEL: use.capacity.value}
    if use.reservation is not None:
        labels[RESERVATION_LABEL] = use.reservation
    return labels


def _node_pool(
    use: PoolUse, gpu: GpuType, pools: NodePoolSettings, settings: Settings
) -> dict[str, Any]:
    disruption = pools.disruption
    node_labels = _pool_labels(use, pools)
    template_spec: dict[str, Any] = {
        "nodeClassRef": {
            "group": EC2NODECLASS_GROUP,
            "kind": "EC2NodeClass",
            "name": node_class_name(use, pools.prefix),
        },
        "requirements": _requirements(use, gpu, pools, settings),
        "taints": [dict(GPU_TAINT)],
        "expireAfter": disruption.expire_after,
    }
    if disruption.termination_grace_period:
        template_spec["terminationGracePeriod"] = disruption.termination_grace_period
    consolidate_after = (
        disruption.reserved_consolidate_after
        if use.capacity is CapacityType.RESERVED
        else disruption.consolidate_after
    )
    spec: dict[str, Any] = {
        "weight": pools.weights.of(use.capacity),
        "template": {"metadata": {"labels": node_labels}, "spec": template_spec},
        "disruption": {
            "consolidationPolicy": "WhenEmpty",
            "consolidateAfter": consolidate_after,
            "budgets": [b.wire() for b in disruption.budgets],
        },
    }
    limit = gpu_limit(use, pools, settings)
    if limit is not None:
        spec["limits"] = {GPU_RESOURCE: limit}
    return {
        "apiVersion": NODEPOOL_API,
        "kind": "NodePool",
        "metadata": {
            "name": pool_name(use, pools.prefix),
            "labels": {
                **node_labels,
                **MANAGED_BY,
                COMPONENT_KEY: NODE_POOL_COMPONENT,
            },
        },
        "spec": spec,
    }


def _node_class(
    name: str,
    pools: NodePoolSettings,
    *,
    reservation: ReservationPool | None = None,
    reservation_ids: Sequence[str] = (),
) -> dict[str, Any]:
    nc = pools.node_class
    device = "/dev/xvdb" if nc.ami_alias.startswith("bottlerocket@") else "/dev/xvda"
    ebs = {
        "volumeSize": nc.volume_size,
        "volumeType": nc.volume_type,
        "encrypted": True,
        "deleteOnTermination": True,
    }
    mapping: dict[str, Any] = {"deviceName": device, "ebs": ebs}
    if device == "/dev/xvda":
        mapping["rootVolume"] = True
    tags = {**nc.tags, **MANAGED_BY, "frugal.dev/node-class": name}
    labels = {**pools.labels, **MANAGED_BY, COMPONENT_KEY: NODE_CLASS_COMPONENT}
    spec: dict[str, Any] = {
        "amiSelectorTerms": [{"alias": nc.ami_alias}],
        "subnetSelectorTerms": nc.subnet_terms(),
        "securityGroupSelectorTerms": nc.security_group_terms(),
        "blockDeviceMappings": [mapping],
    }
    if nc.instance_profile:
        spec["instanceProfile"] = nc.instance_profile
    else:
        spec["role"] = nc.effective_role
    if reservation is not None:
        spec["capacityReservationSelectorTerms"] = reservation_terms(
            reservation, reservation_ids, pools.reservation_tag
        )
        tags[RESERVATION_TAG] = reservation.name
        labels[RESERVATION_LABEL] = reservation.name
    spec["tags"] = tags
    return {
        "apiVersion": EC2NODECLASS_API,
        "kind": "EC2NodeClass",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }


def render_node_pools(
    uses: Iterable[PoolUse],
    settings: Settings,
    *,
    pools: NodePoolSettings | None = None,
    reservation_ids: Mapping[str, Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """The EC2NodeClasses, then the NodePools, for the pools in use; in apply order.

    Empty unless the profile is Karpenter and ``manage`` is on. ``reservation_ids`` are
    discovered capacity reservation ids by reservation pool name; ids in settings win. Uses
    that cannot be served (unknown GPU, unknown reservation, a reservation whose name collides
    with a generated name) are left out; :func:`name_conflicts` reports the last kind.
    """
    from frugal.render.endpoint import with_hash

    pools = pools or node_pool_settings(settings)
    if settings.profile != ProfileName.KARPENTER or not pools.manage:
        return []
    catalog = settings.catalog()
    conflicts = _generated_names(settings, pools)
    discovered = reservation_ids or {}
    classes: dict[str, dict[str, Any]] = {}
    node_pools: dict[str, dict[str, Any]] = {}
    for use in sorted(set(uses), key=lambda u: u.sort_key):
        gpu = catalog.get(use.gpu_type)
        if gpu is None:
            continue
        if use.reservation is not None:
            reservation = settings.reservation(use.reservation)
            if (
                reservation is None
                or reservation.gpu_type != use.gpu_type
                or reservation.name in conflicts
            ):
                continue
            ids = reservation.capacity_reservation_ids or tuple(
                discovered.get(reservation.name, ())
            )
            classes[reservation.name] = _node_class(
                reservation.name, pools, reservation=reservation, reservation_ids=ids
            )
        else:
            classes.setdefault(pools.prefix, _node_class(pools.prefix, pools))
        node_pools[pool_name(use, pools.prefix)] = _node_pool(use, gpu, pools, settings)
    ordered = [classes[k] for k in sorted(classes)] + [node_pools[k] for k in sorted(node_pools)]
    return [with_hash(obj) for obj in ordered]


# --- do-not-disrupt while a model loads -------------------------------------------------------


def loading_window_seconds(spec: InferenceEndpointSpec, pools: NodePoolSettings) -> int:
    """Start-up probe window of the engine (its cold-start budget, at least 300 s) + margin."""
    budget = parse_duration(spec.scaling.cold_start_budget).total_seconds()
    probe = max(int(budget // 10), 30) * 10  # as render.endpoint's startupProbe
    return probe + pools.loading_margin_seconds


def loading_annotations(spec: InferenceEndpointSpec, settings: Settings) -> dict[str, str]:
    """Annotations for the engine's pod template (Karpenter profile, ``protectLoading``).

    ``karpenter.sh/do-not-disrupt`` keeps Karpenter from voluntarily disrupting (drift,
    consolidation) a node while a pod on it is still loading its model. The value is a
    duration (Karpenter ≥ 1.14 reads it as "protected until this long after the pod started"),
    so a pod that never becomes Ready does not pin its node for ever; the controller removes
    both annotations as soon as the pod is Ready (:func:`loading_release_patch`).
    """
    pools = node_pool_settings(settings)
    if settings.profile != ProfileName.KARPENTER or not pools.protect_loading:
        return {}
    return {
        DO_NOT_DISRUPT: f"{loading_window_seconds(spec, pools)}s",
        LOADING_ANNOTATION: "true",
    }


def _is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def loading_release_patch(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    """A merge patch that ends the loading protection of a Ready pod, or None.

    Only a pod that frugal marked as loading is touched, so a do-not-disrupt annotation set by
    anyone else is left alone.
    """
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if annotations.get(LOADING_ANNOTATION) != "true" or not _is_ready(pod):
        return None
    return {"metadata": {"annotations": {DO_NOT_DISRUPT: None, LOADING_ANNOTATION: None}}}
