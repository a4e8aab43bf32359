"""RoutingPolicy (short name ``rp``): one virtual model name split over model tiers."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from frugal.api.base import (
    API_VERSION,
    Condition,
    Decision,
    DnsLabel,
    Duration,
    FrugalModel,
    LocalObjectReference,
    ObjectMeta,
    SecretKeyRef,
    cel,
    conditions_field,
    nested,
    validations,
)

CLASS_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$"
ClassName = Annotated[str, Field(pattern=CLASS_NAME_PATTERN, max_length=63)]
MAX_TIERS = 8


class ExternalTier(FrugalModel):
    """An OpenAI-compatible API outside the cluster, priced per token."""

    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=512)
    """Base URL of the OpenAI-compatible API, e.g. https://api.example.com/v1."""
    model: str = Field(max_length=128)
    """Model name to send upstream."""
    input_price_per_1m: float = Field(ge=0, alias="inputPricePer1M")
    """US dollars per million input (prompt) tokens."""
    output_price_per_1m: float = Field(ge=0, alias="outputPricePer1M")
    """US dollars per million output (generated) tokens."""
    api_key_secret_ref: SecretKeyRef | None = None
    """Secret key holding the API key, sent as a Bearer token."""


class Tier(FrugalModel):
    """One model tier: an InferenceEndpoint in the cluster or an external API."""

    model_config = FrugalModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.endpointRef) != has(self.external)",
                "each tier needs exactly one of endpointRef or external",
            ),
            cel(
                "self.minWeight <= self.weight && self.weight <= self.maxWeight",
                "tier weight must lie between its minWeight and maxWeight",
                ".weight",
            ),
        )
    }

    name: DnsLabel
    """Tier name, unique in the policy (e.g. small, medium, large)."""
    endpoint_ref: LocalObjectReference | None = None
    """The InferenceEndpoint serving this tier."""
    external: ExternalTier | None = None
    """An external OpenAI-compatible API serving this tier."""
    weight: int = Field(ge=0, le=100)
    """Percent of traffic this tier gets to start with; the weights of all tiers sum to 100."""
    min_weight: int = Field(default=0, ge=0, le=100)
    """Automatic rerouting never sets the weight below this."""
    max_weight: int = Field(default=100, ge=0, le=100)
    """Automatic rerouting never sets the weight above this."""
    match: list[ClassName] = Field(
        default_factory=list, max_length=16, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Request classes this tier may serve; empty means every class."""


class FeatureRule(FrugalModel):
    """A rule that assigns a class when all of its set conditions hold."""

    class_name: ClassName = Field(alias="class")
    """The class assigned."""
    min_prompt_tokens: int | None = Field(default=None, ge=0)
    """The prompt has at least this many tokens (estimated)."""
    max_prompt_tokens: int | None = Field(default=None, ge=0)
    """The prompt has at most this many tokens (estimated)."""
    min_turns: int | None = Field(default=None, ge=0)
    """The conversation has at least this many user turns."""
    has_code: bool | None = None
    """The prompt contains (true) or lacks (false) source code."""
    has_math: bool | None = None
    """The prompt contains (true) or lacks (false) mathematics."""
    keywords: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=64
    )
    """Any of these words appears in the prompt (case-insensitive)."""


class LabelledExample(FrugalModel):
    """A labelled request for nearest-example classification."""

    class_name: ClassName = Field(alias="class")
    """The class of this example."""
    text: str = Field(max_length=4096)
    """The example request text."""


class Classifier(FrugalModel):
    """How the gateway finds a request's class."""

    type: Literal["rules", "heuristic", "embedding"] = "heuristic"
    """rules: only the rules below; heuristic: rules, then built-in features (length, code,
    maths, turns); embedding: nearest labelled example, rules first."""
    rules: list[FeatureRule] = Field(default_factory=list, max_length=64)
    """Rules tried in order; the first that matches decides."""
    examples: list[LabelledExample] = Field(default_factory=list, max_length=1000)
    """Labelled examples for the embedding classifier."""
    default_class: ClassName = "general"
    """The class of a request that nothing else classifies."""


class Objectives(FrugalModel):
    """The bar traffic must meet; automatic rerouting works toward it."""

    min_quality: float | None = Field(default=None, gt=0, le=1)
    """Least quality retention, as a ratio of the reference tier's quality (e.g. 0.95)."""
    max_cost_per_1k_requests: float | None = Field(default=None, gt=0, alias="maxCostPer1kRequests")
    """Most US dollars per thousand requests."""
    p95_latency_seconds: float | None = Field(default=None, gt=0)
    """Most 95th-percentile end-to-end latency in seconds."""


class AutoReroute(FrugalModel):
    """The runtime loop that moves weight between tiers on live cost and quality."""

    enabled: bool = False
    """Turn the loop on."""
    interval: Duration = "1m"
    """How often the loop evaluates."""
    max_step: int = Field(default=10, ge=1, le=100)
    """Most weight points moved in one decision."""
    cooldown: Duration = "5m"
    """Least time between two weight changes."""
    hysteresis: float = Field(default=0.02, ge=0, le=0.5)
    """Margin around each objective inside which nothing moves, against flapping."""


class Fallback(FrugalModel):
    """Where a request goes when its tier cannot serve it."""

    order: list[DnsLabel] = Field(
        default_factory=list,
        max_length=MAX_TIERS,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    """Tier names to try in order; empty means the next more capable tier."""
    on: list[Literal["error", "overload", "scaledToZero"]] = Field(
        default_factory=lambda: ["error", "overload", "scaledToZero"],
        max_length=3,
        json_schema_extra={
            "x-kubernetes-list-type": "set",
            "default": ["error", "overload", "scaledToZero"],
        },
    )
    """Which failures fall back: upstream error, overload, or a tier asleep past its budget."""


class Shadow(FrugalModel):
    """Live quality measurement: a sample of requests also goes to the reference tier."""

    sample_rate: float = Field(default=0.0, ge=0, le=1)
    """Fraction of requests shadowed (0 turns shadowing off)."""
    reference_tier: DnsLabel | None = None
    """Tier whose answers count as quality 1.0."""


class RoutingPolicySpec(FrugalModel):
    """Desired state of a RoutingPolicy."""

    model_config = FrugalModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.tiers.map(t, t.weight).sum() == 100",
                "tiers[].weight must sum to 100",
                ".tiers",
            ),
            cel(
                "!has(self.fallback)"
                " || self.fallback.order.all(n, self.tiers.exists(t, t.name == n))",
                "fallback.order must name tiers of this policy",
                ".fallback.order",
            ),
            cel(
                "!has(self.shadow) || !has(self.shadow.referenceTier)"
                " || self.tiers.exists(t, t.name == self.shadow.referenceTier)",
                "shadow.referenceTier must name a tier of this policy",
                ".shadow.referenceTier",
            ),
            cel(
                "!has(self.shadow) || self.shadow.sampleRate == 0.0"
                " || has(self.shadow.referenceTier)",
                "shadow.referenceTier is required when shadow.sampleRate is above 0",
                ".shadow.referenceTier",
            ),
        )
    }

    model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:-]*$", max_length=128)
    """The virtual model name clients call."""
    tiers: list[Tier] = Field(
        min_length=1,
        max_length=MAX_TIERS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Model tiers, cheapest first."""
    classifier: Classifier = nested(Classifier)
    """How a request's class is found."""
    objectives: Objectives = nested(Objectives)
    """Quality, cost and latency objectives."""
    auto_reroute: AutoReroute = nested(AutoReroute)
    """Automatic weight moves on live signals."""
    fallback: Fallback = nested(Fallback)
    """Fallback on failure."""
    shadow: Shadow = nested(Shadow)
    """Shadow sampling for live quality."""


class RerouteStep(FrugalModel):
    """One bounded weight move between two tiers."""

    source: str
    """Tier the points were taken from."""
    target: str
    """Tier the points were given to."""
    points: int
    """Weight points moved."""
    direction: Literal["up", "down"]
    """up: toward a more capable tier; down: toward a cheaper one."""
    at: str
    """When (RFC 3339)."""


class RoutingPolicyStatus(FrugalModel):
    """Observed state of a RoutingPolicy, written only by the operator."""

    model_config = FrugalModel.model_config | {"extra": "allow"}

    weights: dict[str, int] = Field(default_factory=dict)
    """Effective weight per tier, in percent."""
    weights_summary: str = ""
    """The weights as tier=percent pairs, for kubectl get."""
    last_decision: Decision | None = None
    """The most recent reroute decision and the signals behind it."""
    last_reroute_time: str | None = None
    """When weights last changed (RFC 3339)."""
    last_step: RerouteStep | None = None
    """The last weight move, kept so that a step that made things worse can be rolled back."""
    conditions: list[Condition] = conditions_field()
    """Ready, SignalsAvailable, ObjectivesMet."""
    observed_generation: int | None = None
    """The metadata.generation this status reflects."""


class RoutingPolicy(FrugalModel):
    """One virtual model name whose traffic frugal splits between model tiers."""

    model_config = FrugalModel.model_config | {"extra": "allow"}

    api_version: Literal["frugal.dev/v1alpha1"] = API_VERSION
    kind: Literal["RoutingPolicy"] = "RoutingPolicy"
    metadata: ObjectMeta
    spec: RoutingPolicySpec
    status: RoutingPolicyStatus | None = None
