"""CachePolicy (short name ``cpol``): what may be answered without a model call."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from frugal.api.base import (
    API_VERSION,
    Condition,
    DnsLabel,
    Duration,
    FrugalModel,
    ObjectMeta,
    SecretKeyRef,
    cel,
    conditions_field,
    nested,
    validations,
)


class TargetRef(FrugalModel):
    """The RoutingPolicy or InferenceEndpoint whose requests this cache answers."""

    kind: Literal["RoutingPolicy", "InferenceEndpoint"]
    """Kind of the target."""
    name: DnsLabel
    """Name of the target, in the same namespace."""


class ExactCache(FrugalModel):
    """Identical requests (after normalisation) share an answer."""

    enabled: bool = True
    """Turn exact caching on."""
    ttl: Duration = "1h"
    """How long an answer stays valid."""


class Embedding(FrugalModel):
    """Where request embeddings come from."""

    model_config = FrugalModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.source != 'url' || has(self.url)",
                "semantic.embedding.url is required when semantic.embedding.source is url",
                ".url",
            )
        )
    }

    source: Literal["builtin", "url"] = "builtin"
    """builtin: a small model that runs on the gateway's CPU; url: an OpenAI-compatible
    embeddings API, e.g. an InferenceEndpoint serving an embedding model."""
    url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$", max_length=512)
    """Base URL of the embeddings API when source is url."""
    model: str | None = Field(default=None, max_length=128)
    """Embedding model name to request."""


class SemanticCache(FrugalModel):
    """Requests that mean the same (embedding similarity at or above a threshold) share an
    answer."""

    enabled: bool = False
    """Turn semantic caching on."""
    threshold: float = Field(default=0.93, gt=0, le=1)
    """Least cosine similarity for a hit, in (0, 1]; higher means fewer, safer hits."""
    ttl: Duration = "1h"
    """How long an answer stays valid."""
    max_entries: int = Field(default=100_000, ge=1, le=10_000_000)
    """Most entries per scope; the oldest are evicted first."""
    max_false_hit_rate: float = Field(default=0.02, ge=0, le=1)
    """False-hit budget: the semantic cache is suspended while the sampled false-hit rate is
    above this."""
    embedding: Embedding = nested(Embedding)
    """Embedding source."""


class Exclusions(FrugalModel):
    """Requests that are never answered from or written to the cache."""

    with_tools: bool = True
    """Exclude requests that declare tools or functions."""
    temperature_above: float | None = Field(default=0.7, ge=0, le=2)
    """Exclude requests sampled above this temperature (their answers are meant to vary)."""
    patterns: list[Annotated[str, Field(max_length=512)]] = Field(
        default_factory=list, max_length=32
    )
    """Regular expressions; a prompt matching any (e.g. personal data) is not cached."""


class PrefixCache(FrugalModel):
    """Reuse of shared prompt prefixes in the engine."""

    enabled: bool = True
    """Keep vLLM prefix caching on for targeted endpoints."""
    affinity: bool = True
    """Send requests that share a long prefix to the same replica."""
    min_prefix_tokens: int = Field(default=256, ge=1, le=1_000_000)
    """Shortest shared prefix, in tokens, that affinity routing considers."""


class RedisBackend(FrugalModel):
    """A Redis server shared by gateway replicas."""

    model_config = FrugalModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.url) != has(self.urlSecretRef)",
                "backend.redis needs exactly one of url or urlSecretRef",
            )
        )
    }

    url: str | None = Field(default=None, pattern=r"^rediss?://[^\s]+$", max_length=512)
    """redis:// or rediss:// URL without a password."""
    url_secret_ref: SecretKeyRef | None = None
    """Secret key holding the full Redis URL (use this when it carries a password)."""


class Backend(FrugalModel):
    """Where cache entries live."""

    model_config = FrugalModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.type != 'redis' || has(self.redis)",
                "backend.redis is required when backend.type is redis",
                ".redis",
            )
        )
    }

    type: Literal["memory", "redis"] = "memory"
    """memory: per gateway replica; redis: shared by all replicas."""
    redis: RedisBackend | None = None
    """Redis connection when type is redis."""


class CachePolicySpec(FrugalModel):
    """Desired state of a CachePolicy."""

    target_ref: TargetRef
    """What this cache is in front of."""
    exact: ExactCache = nested(ExactCache)
    """Exact-match cache."""
    semantic: SemanticCache = nested(SemanticCache)
    """Semantic cache."""
    scope: Literal["tenant", "shared"] = "tenant"
    """tenant: answers are never served across tenants; shared: one cache for all (opt-in)."""
    exclude: Exclusions = nested(Exclusions)
    """Requests never cached."""
    prefix: PrefixCache = nested(PrefixCache)
    """Prefix caching and prefix-affinity routing."""
    backend: Backend = nested(Backend)
    """Storage for entries."""


class HitRates(FrugalModel):
    """Fractions of requests answered from the cache."""

    exact: float = 0.0
    """Exact hits per request."""
    semantic: float = 0.0
    """Semantic hits per request."""
    total: float = 0.0
    """All hits per request."""


class CachePolicyStatus(FrugalModel):
    """Observed state of a CachePolicy, written only by the operator."""

    model_config = FrugalModel.model_config | {"extra": "allow"}

    hit_rate: HitRates | None = None
    """Fractions of requests answered from cache since the gateway replicas started."""
    entries: int | None = None
    """Entries stored."""
    estimated_saved_usd: float | None = Field(default=None, alias="estimatedSavedUSD")
    """US dollars of model calls avoided since the policy was created."""
    false_hit_rate: float | None = None
    """Sampled semantic false-hit rate, compared with semantic.maxFalseHitRate."""
    conditions: list[Condition] = conditions_field()
    """Ready, SemanticSuspended."""
    observed_generation: int | None = None
    """The metadata.generation this status reflects."""


class CachePolicy(FrugalModel):
    """What the gateway may answer from cache instead of calling a model."""

    model_config = FrugalModel.model_config | {"extra": "allow"}

    api_version: Literal["frugal.dev/v1alpha1"] = API_VERSION
    kind: Literal["CachePolicy"] = "CachePolicy"
    metadata: ObjectMeta
    spec: CachePolicySpec
    status: CachePolicyStatus | None = None
