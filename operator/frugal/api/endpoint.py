"""InferenceEndpoint (short name ``ie``): one served model, placed on the cheapest capacity."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from frugal.api.base import (
    API_VERSION,
    LABEL_KEY_PATTERN,
    CapacityType,
    Condition,
    Decision,
    Duration,
    FrugalModel,
    LabelValue,
    ObjectMeta,
    Phase,
    Quantity,
    cel,
    cel_string,
    conditions_field,
    nested,
    validations,
)
from frugal.api.vllm import (
    KV_CACHE_DTYPES,
    QUANTIZATION_METHODS,
    SELF_DRAFTING_METHODS,
    SPECULATIVE_METHODS,
)

ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
GPU_TYPE_PATTERN = r"^(auto|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$"

Quantization = Literal[("none", *QUANTIZATION_METHODS)]  # type: ignore[valid-type]
KvCacheDtype = Literal[KV_CACHE_DTYPES]  # type: ignore[valid-type]
SpeculativeMethod = Literal[SPECULATIVE_METHODS]  # type: ignore[valid-type]


def _cel_list(items: frozenset[str]) -> str:
    return "[" + ", ".join(f"'{i}'" for i in sorted(items)) + "]"


class ModelSource(FrugalModel):
    """Where the weights come from and how clients name the model."""

    uri: str = Field(pattern=r"^(hf|s3|pvc)://[^\s]+$", max_length=512)
    """Weights location: hf://org/name (Hugging Face), s3://bucket/prefix or pvc://claim/path."""
    served_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:-]*$", max_length=128)
    """The model name clients send in the OpenAI API (vLLM --served-model-name)."""
    parameters: float = Field(gt=0, le=1e13)
    """Number of parameters, e.g. 8e9; with the quantization it sizes the GPU memory needed."""
    revision: str | None = Field(default=None, max_length=128)
    """Model revision (branch, tag or commit) for hf:// sources."""


class Speculative(FrugalModel):
    """Speculative decoding: a cheap proposer drafts tokens that the model verifies in one pass."""

    model_config = FrugalModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.method in " + _cel_list(SELF_DRAFTING_METHODS) + " || has(self.draftModel)",
                "speculative.draftModel is required unless speculative.method is one of "
                + ", ".join(sorted(SELF_DRAFTING_METHODS)),
                ".draftModel",
            )
        )
    }

    method: SpeculativeMethod
    """The proposer (vLLM speculative_config.method)."""
    draft_model: str | None = Field(default=None, max_length=512)
    """The draft or EAGLE head model (hf:// name or path); not used by ngram."""
    num_speculative_tokens: int = Field(default=3, ge=1, le=16)
    """Tokens proposed per step."""


class EnvVar(FrugalModel):
    """An environment variable for the engine container."""

    name: str = Field(pattern=ENV_NAME_PATTERN, max_length=256)
    """Variable name."""
    value: str = Field(default="", max_length=4096)
    """Variable value."""


class Engine(FrugalModel):
    """The vLLM engine: image, quantization and serving knobs (each maps to a vLLM flag)."""

    image: str | None = Field(default=None, max_length=512)
    """Container image; when unset, frugal's settings pick the image for the quantization."""
    quantization: Quantization = "none"
    """Quantization method of the weights (vLLM --quantization), or none for full precision."""
    kv_cache_dtype: KvCacheDtype = "auto"
    """KV-cache data type (vLLM --kv-cache-dtype); fp8 halves KV memory."""
    max_model_len: int | None = Field(default=None, ge=128, le=10_485_760)
    """Longest context in tokens (vLLM --max-model-len); also sizes the KV cache estimate."""
    max_num_seqs: int = Field(default=256, ge=1, le=4096)
    """Most sequences batched at once (vLLM --max-num-seqs): continuous batching depth."""
    gpu_memory_utilization: float = Field(default=0.92, gt=0, le=1)
    """Fraction of GPU memory vLLM may use (vLLM --gpu-memory-utilization)."""
    prefix_caching: bool = True
    """Reuse the KV cache of shared prompt prefixes (vLLM --enable-prefix-caching)."""
    speculative: Speculative | None = None
    """Speculative decoding; off when unset."""
    extra_args: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=64
    )
    """More vLLM command-line arguments, appended verbatim."""
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Extra environment variables for the engine container."""


class GpuRequest(FrugalModel):
    """Which accelerator, and how many per replica."""

    type: str = Field(default="auto", pattern=GPU_TYPE_PATTERN, max_length=63)
    """A GPU name from frugal's catalog (e.g. l4, a10g, l40s, a100-80gb, h100), or auto for the
    cheapest type and count that fit the quantized model."""
    count: int | None = Field(default=None, ge=1, le=16)
    """GPUs per replica (vLLM --tensor-parallel-size); when unset frugal picks the fewest that
    fit."""


class Resources(FrugalModel):
    """Compute for each replica."""

    gpu: GpuRequest = nested(GpuRequest)
    """Accelerators per replica."""
    cpu: Quantity | None = None
    """CPU request per replica, e.g. 4 or 3500m."""
    memory: Quantity | None = None
    """Memory request per replica, e.g. 32Gi."""


class Scaling(FrugalModel):
    """Replica bounds and the signals that move between them."""

    model_config = FrugalModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "scaling.minReplicas must be less than or equal to scaling.maxReplicas",
                ".minReplicas",
            )
        )
    }

    min_replicas: int = Field(default=1, ge=0, le=1000)
    """Fewest replicas; 0 lets an idle endpoint scale to zero."""
    max_replicas: int = Field(default=1, ge=1, le=1000)
    """Most replicas."""
    idle_after: Duration = "15m"
    """With minReplicas 0: scale to zero after no request for this long."""
    target_in_flight: int = Field(default=16, ge=1, le=4096)
    """Running plus waiting requests per replica that the autoscaler aims for."""
    cold_start_budget: Duration = "5m"
    """How long the gateway may hold a request while a scaled-to-zero endpoint wakes."""


class SpotPolicy(FrugalModel):
    """How much of the endpoint may run on interruptible capacity."""

    max_share: float | None = Field(default=None, ge=0, le=1)
    """Largest fraction of replicas on spot (0 to 1). Unset: 0.5 when on-demand is also in the
    preference, 1 when it is not, 0 when spot is not in the preference."""


class Capacity(FrugalModel):
    """Which capacity types may serve this endpoint, in order of preference."""

    model_config = FrugalModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.reservation) || 'reserved' in self.preference",
                "capacity.reservation needs 'reserved' in capacity.preference",
                ".reservation",
            ),
            cel(
                "!has(self.spot) || !has(self.spot.maxShare) || self.spot.maxShare == 0.0"
                " || 'spot' in self.preference",
                "capacity.spot.maxShare must be 0 when 'spot' is not in capacity.preference",
                ".spot.maxShare",
            ),
            cel(
                "self.onDemandFloor == 0 || 'on-demand' in self.preference",
                "capacity.onDemandFloor needs 'on-demand' in capacity.preference",
                ".onDemandFloor",
            ),
        )
    }

    preference: list[CapacityType] = Field(
        default_factory=lambda: [CapacityType.RESERVED, CapacityType.SPOT, CapacityType.ON_DEMAND],
        min_length=1,
        max_length=3,
        json_schema_extra={
            "x-kubernetes-list-type": "set",
            "default": ["reserved", "spot", "on-demand"],
        },
    )
    """Capacity types in the order they are filled: reserved (prepaid), spot, on-demand."""
    spot: SpotPolicy | None = None
    """Limits on spot capacity."""
    on_demand_floor: int = Field(default=0, ge=0, le=1000)
    """Replicas always kept on on-demand so that a spot reclamation never takes the endpoint
    down."""
    reservation: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """Name of the reservation pool (from frugal's settings) that reserved replicas draw from."""
    priority: int = Field(default=0, ge=0, le=1000)
    """Higher priority endpoints get reserved capacity first when a pool is short."""


class CostAllocation(FrugalModel):
    """Who pays: copied as labels to every child object and to every metric."""

    team: LabelValue | None = None
    """Owning team (label frugal.dev/team and team)."""
    project: LabelValue | None = None
    """Project or product (label frugal.dev/project and product)."""
    environment: LabelValue | None = None
    """Environment such as prod, staging or dev (label frugal.dev/environment and env)."""
    cost_center: LabelValue | None = None
    """Cost centre or department (label frugal.dev/cost-center and department)."""
    labels: dict[str, LabelValue] = Field(
        default_factory=dict,
        json_schema_extra={
            "maxProperties": 16,
            "x-kubernetes-validations": [
                cel(
                    f"self.all(k, k.matches({cel_string(LABEL_KEY_PATTERN)}))",
                    "costAllocation.labels keys must be valid Kubernetes label keys",
                )
            ],
        },
    )
    """Further labels copied to children and metrics."""


class Budget(FrugalModel):
    """Spend limits; exceeding one sets the BudgetExceeded condition and an event."""

    hourly_usd: float | None = Field(default=None, gt=0, alias="hourlyUSD")
    """Most US dollars per hour this endpoint should burn."""
    monthly_usd: float | None = Field(default=None, gt=0, alias="monthlyUSD")
    """Most US dollars per calendar month."""


class InferenceEndpointSpec(FrugalModel):
    """Desired state of an InferenceEndpoint."""

    model_config = FrugalModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.capacity.onDemandFloor <= self.scaling.maxReplicas",
                "capacity.onDemandFloor must not exceed scaling.maxReplicas",
                ".capacity.onDemandFloor",
            ),
        )
    }

    model: ModelSource
    """The model to serve."""
    engine: Engine = nested(Engine)
    """vLLM engine settings."""
    resources: Resources = nested(Resources)
    """Compute per replica."""
    scaling: Scaling = nested(Scaling)
    """Replica bounds and autoscaling targets."""
    capacity: Capacity = nested(Capacity)
    """Placement across reserved, spot and on-demand capacity."""
    cost_allocation: CostAllocation = nested(CostAllocation)
    """Cost-allocation labels."""
    budget: Budget | None = None
    """Spend limits."""


class ReplicaCounts(FrugalModel):
    """Replicas wanted, ready, and placed per capacity type."""

    desired: int = 0
    """Replicas wanted now."""
    ready: int = 0
    """Replicas passing readiness."""
    reserved: int = 0
    """Replicas placed on reserved capacity."""
    spot: int = 0
    """Replicas placed on spot capacity."""
    on_demand: int = 0
    """Replicas placed on on-demand capacity."""
    summary: str = ""
    """ready/desired, for kubectl get."""


class DesiredSplit(FrugalModel):
    """Replicas the placement wants on each capacity type."""

    total: int = 0
    """All replicas wanted."""
    reserved: int = 0
    """On reserved capacity."""
    spot: int = 0
    """On spot capacity."""
    on_demand: int = 0
    """On on-demand capacity."""


class PlacedVerdict(FrugalModel):
    """The outcome of placement."""

    code: str = ""
    """Placed, ReservationFull, CapacityExhausted, UnknownReservation, ReservationMismatch,
    UnknownGpuType or NoGpuFits."""
    message: str = ""
    """What was placed where, or what is wrong."""


class PlacementStatus(FrugalModel):
    """What the placement decided, as the operator last computed it."""

    desired: DesiredSplit | None = None
    """The replica split."""
    placed: PlacedVerdict | None = None
    """The verdict."""


class GpuChoice(FrugalModel):
    """The accelerator frugal chose and why."""

    type: str
    """GPU type from the catalog."""
    count: int
    """GPUs per replica."""
    reason: str = ""
    """Why this type and count (memory needed, price)."""


class CostStatus(FrugalModel):
    """Cost of the endpoint (paper Eq. 1, infrastructure term)."""

    hourly_usd: float | None = Field(default=None, alias="hourlyUSD")
    """US dollars per hour at the current replicas and capacity mix."""
    per_million_tokens_usd: float | None = Field(default=None, alias="perMillionTokensUSD")
    """US dollars per million tokens served (idle time included)."""
    tokens_per_second: float | None = None
    """Prompt plus generated tokens per second."""
    budget_burn: float | None = None
    """Spend rate as a fraction of the budget (1 = on budget)."""
    source: Literal["static", "live"] = "static"
    """static: from the catalog; live: from Prometheus signals."""
    as_of: str | None = None
    """When these figures were computed (RFC 3339)."""


class AutoscalerStatus(FrugalModel):
    """What the autoscaler decided; survives operator restarts."""

    replicas: int | None = None
    """Replicas the autoscaler wants (within minReplicas..maxReplicas, or 0 when idle)."""
    awake_since: str | None = None
    """When the endpoint last left zero replicas."""
    zero_since: str | None = None
    """When the endpoint last went to zero replicas."""


class SpotStatus(FrugalModel):
    """The spot loop's state: how much of the endpoint may run on spot now."""

    share_limit: float | None = None
    """Spot share limit below the spec's, after interruptions; unset means the spec's."""
    interruptions: list[str] = Field(default_factory=list)
    """Recent spot interruptions (RFC 3339), newest last."""
    last_change: str | None = None
    """When the limit last changed."""
    last_action: str | None = None
    """LowerSpotShare or RestoreSpotShare."""
    reason: str | None = None
    """Why."""


class InferenceEndpointStatus(FrugalModel):
    """Observed state of an InferenceEndpoint, written only by the operator."""

    model_config = FrugalModel.model_config | {"extra": "allow"}

    phase: Phase | None = None
    """Pending, Serving, ScaledToZero or Degraded."""
    conditions: list[Condition] = conditions_field()
    """Ready, Placed, ScaledToZero, BudgetExceeded, Degraded."""
    replicas: ReplicaCounts | None = None
    """Replicas by capacity type."""
    gpu: GpuChoice | None = None
    """The GPU type and count chosen, and why."""
    placement: PlacementStatus | None = None
    """The placement decision behind the replica split."""
    cost: CostStatus | None = None
    """Cost figures."""
    url: str | None = None
    """In-cluster OpenAI-compatible base URL."""
    last_decision: Decision | None = None
    """The most recent scaling decision."""
    autoscaler: AutoscalerStatus | None = None
    """The autoscaler's decided replica count."""
    spot: SpotStatus | None = None
    """Spot share limit after interruptions."""
    observed_generation: int | None = None
    """The metadata.generation this status reflects."""


class InferenceEndpoint(FrugalModel):
    """One model served by vLLM on the cheapest capacity that meets its bar."""

    model_config = FrugalModel.model_config | {"extra": "allow"}

    api_version: Literal["frugal.dev/v1alpha1"] = API_VERSION
    kind: Literal["InferenceEndpoint"] = "InferenceEndpoint"
    metadata: ObjectMeta
    spec: InferenceEndpointSpec
    status: InferenceEndpointStatus | None = None
