"""The gateway's configuration file: policies, upstreams, tenants and limits, in one YAML file.

RoutingPolicy and CachePolicy objects are parsed with the frugal.api models, exactly as the API
server stores them (``status.weights`` included), so a file can be made with
``kubectl get rp,cpol -o yaml``-style documents plus the parts only the gateway needs: where each
InferenceEndpoint answers (``upstreams``), who may call (``tenants``) and the limits. Secrets
(API keys, Redis URLs with passwords) are never written into the file itself unless you choose
to: each may come from an environment variable or a file instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from frugal.api.base import Duration, parse_duration
from frugal.api.cache import CachePolicy
from frugal.api.endpoint import CostAllocation
from frugal.api.routing import RoutingPolicy


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class SecretValue(_Model):
    """A secret given inline, by environment variable or by file (exactly one)."""

    value: str | None = None
    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretValue:
        if sum(x is not None for x in (self.value, self.env, self.file)) != 1:
            raise ValueError("a secret needs exactly one of value, env or file")
        return self

    def resolve(self) -> str:
        """The secret's text; KeyError/OSError when its variable or file is missing."""
        if self.value is not None:
            return self.value
        if self.env is not None:
            if self.env not in os.environ:
                raise KeyError(f"environment variable {self.env} is not set")
            return os.environ[self.env]
        assert self.file is not None
        return self.file.read_text().strip()


def _secret(value: Any) -> Any:
    """A bare string is an inline secret, for brevity in development files."""
    return {"value": value} if isinstance(value, str) else value


class UpstreamConfig(_Model):
    """Where one InferenceEndpoint (or any OpenAI-compatible server) answers, and its price."""

    url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    """Base URL (``http://svc:8000`` or ``.../v1``); use ``urls`` for several replicas."""
    urls: list[Annotated[str, Field(pattern=r"^https?://[^\s]+$")]] = Field(default_factory=list)
    """Replica base URLs; prefix-affinity routing spreads prefixes over them."""
    served_name: str
    """The model name the engine serves (sent upstream as ``model``)."""
    namespace: str | None = None
    """The endpoint's namespace (metrics label); defaults to the file's ``namespace``."""
    price_per_hour: float | None = Field(default=None, ge=0)
    """$/h of the endpoint, amortised over ``tokensPerSecond`` into a per-token price."""
    tokens_per_second: float | None = Field(default=None, gt=0)
    """Throughput the hourly price is spread over (e.g. the endpoint's status.cost tokens/s)."""
    input_price_per_1m: float | None = Field(default=None, ge=0, alias="inputPricePer1M")
    """US dollars per million input tokens (takes precedence over the hourly price)."""
    output_price_per_1m: float | None = Field(default=None, ge=0, alias="outputPricePer1M")
    """US dollars per million output tokens."""
    api_key: SecretValue | None = None
    """Bearer token sent upstream."""
    scaled_to_zero: bool = False
    """The endpoint is at zero replicas (its status says ScaledToZero): hold and wake."""
    cold_start_budget: Duration = "5m"
    """How long a request may be held while the endpoint wakes (scaling.coldStartBudget)."""
    max_in_flight: int | None = Field(default=None, ge=1)
    """Requests in flight at once before the tier counts as overloaded (default: limits)."""
    health_path: str = "/health"
    """Probed while waking: the endpoint is up when it answers 200."""

    @model_validator(mode="before")
    @classmethod
    def _bare_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "apiKey" in data:
            data = {**data, "apiKey": _secret(data["apiKey"])}
        return data

    @model_validator(mode="after")
    def _one_url(self) -> UpstreamConfig:
        if bool(self.url) == bool(self.urls):
            raise ValueError("an upstream needs exactly one of url or urls")
        return self

    @property
    def replica_urls(self) -> list[str]:
        return [self.url] if self.url else list(self.urls)

    def token_prices(self) -> tuple[float, float]:
        """($/1M in, $/1M out): explicit prices, else $/h amortised over tokens/s, else free."""
        from frugal.cost.model import cost_per_million_tokens

        if self.input_price_per_1m is not None or self.output_price_per_1m is not None:
            return self.input_price_per_1m or 0.0, self.output_price_per_1m or 0.0
        if self.price_per_hour is not None:
            per_1m = cost_per_million_tokens(self.price_per_hour, self.tokens_per_second)
            if per_1m is not None:
                return per_1m, per_1m
        return 0.0, 0.0


class RateLimit(_Model):
    """A token bucket: ``requestsPerSecond`` on average, bursts of ``burst``."""

    requests_per_second: float = Field(gt=0)
    burst: int = Field(default=10, ge=1)


class Tenant(_Model):
    """A caller: its API keys, the cost labels its requests are metered under, its rate limit."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=63)
    api_keys: list[SecretValue] = Field(default_factory=list)
    """Keys accepted as ``Authorization: Bearer KEY`` (or ``x-api-key``)."""
    cost: CostAllocation = Field(default_factory=CostAllocation)
    """team, project, environment: the chargeback labels on every metric of this tenant."""
    rate_limit: RateLimit | None = None
    """Overrides ``limits.rateLimit`` for this tenant."""

    @model_validator(mode="before")
    @classmethod
    def _bare_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("apiKeys"), list):
            data = {**data, "apiKeys": [_secret(k) for k in data["apiKeys"]]}
        return data


class Limits(_Model):
    """Bounds that keep one caller or one slow tier from hurting the others."""

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Largest request body; larger ones get 413."""
    max_in_flight: int = Field(default=256, ge=1)
    """Default per-upstream in-flight limit (overload beyond it)."""
    wake_queue: int = Field(default=64, ge=0)
    """Requests held per tier while it wakes; more get 503 at once."""
    rate_limit: RateLimit | None = None
    """Default per-tenant rate limit; none means unlimited."""
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=300.0, gt=0)
    """Longest silence from an upstream (between stream chunks) before it counts as failed."""
    shadow_concurrency: int = Field(default=4, ge=1)
    """Shadow requests in flight at once; further samples are skipped, never queued."""
    quality_window: int = Field(default=200, ge=1)
    """Shadow comparisons the quality gauge averages over."""
    probe_interval_seconds: float = Field(default=0.25, gt=0)
    """How often a waking endpoint's health is probed."""
    max_cached_answer_chars: int = Field(default=64 * 1024, ge=0)
    """Longest answer stored in the cache (a longer stream is passed through, not stored)."""
    false_hit_sample_rate: float = Field(default=0.1, ge=0, le=1)
    """Fraction of semantic hits verified against a fresh answer of the tier that produced the
    cached one (off the user's path); 0 turns verification, and so the false-hit budget, off."""
    false_hit_window: int = Field(default=100, ge=1)
    """Verified semantic hits per CachePolicy whose false-hit rate is held to
    ``semantic.maxFalseHitRate``."""
    false_hit_min_samples: int = Field(default=20, ge=1)
    """Verified hits the window needs before the rate can suspend the semantic cache."""
    semantic_suspend_seconds: float = Field(default=600.0, gt=0)
    """How long the semantic cache stays suspended once over its false-hit budget."""

    @model_validator(mode="after")
    def _judgeable(self) -> Limits:
        if self.false_hit_min_samples > self.false_hit_window:
            raise ValueError("limits.falseHitMinSamples cannot exceed limits.falseHitWindow")
        return self


class Auth(_Model):
    required: bool = True
    """Refuse requests without a known API key (401). Off: unknown callers are 'anonymous'."""


class Wake(_Model):
    """How a scaled-to-zero endpoint is woken."""

    kubernetes: bool = False
    """PATCH the InferenceEndpoint's ``frugal.dev/wake`` annotation (in-cluster credentials or
    KUBECONFIG)."""


class GatewayConfig(_Model):
    """The whole gateway configuration file."""

    namespace: str = "default"
    """Namespace assumed for policies and upstreams that do not say."""
    policies: list[Annotated[RoutingPolicy | CachePolicy, Field(discriminator="kind")]] = Field(
        default_factory=list
    )
    """RoutingPolicy and CachePolicy objects (apiVersion/kind/metadata/spec[/status])."""
    upstreams: dict[str, UpstreamConfig] = Field(default_factory=dict)
    """InferenceEndpoint name → where it answers; tiers' endpointRef names these."""
    tenants: list[Tenant] = Field(default_factory=list)
    secrets: dict[str, SecretValue] = Field(default_factory=dict)
    """Values of Secret keys the policies reference, as ``secret-name/key``."""
    auth: Auth = Field(default_factory=Auth)
    limits: Limits = Field(default_factory=Limits)
    wake: Wake = Field(default_factory=Wake)
    reload_interval_seconds: float = Field(default=2.0, gt=0)
    """How often the file's modification time is checked (SIGHUP reloads at once)."""

    @model_validator(mode="before")
    @classmethod
    def _bare_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("secrets"), dict):
            data = {**data, "secrets": {k: _secret(v) for k, v in data["secrets"].items()}}
        return data

    @property
    def routing_policies(self) -> list[RoutingPolicy]:
        return [p for p in self.policies if isinstance(p, RoutingPolicy)]

    @property
    def cache_policies(self) -> list[CachePolicy]:
        return [p for p in self.policies if isinstance(p, CachePolicy)]

    @model_validator(mode="after")
    def _consistent(self) -> GatewayConfig:
        names: set[str] = set()
        for rp in self.routing_policies:
            spec = rp.spec
            if spec.model_name in names:
                raise ValueError(f"two RoutingPolicies serve modelName {spec.model_name!r}")
            names.add(spec.model_name)
            tiers = {t.name for t in spec.tiers}
            if len(tiers) != len(spec.tiers):
                raise ValueError(f"RoutingPolicy {rp.metadata.name}: tier names must be unique")
            for tier in spec.tiers:
                if (tier.endpoint_ref is None) == (tier.external is None):
                    raise ValueError(
                        f"RoutingPolicy {rp.metadata.name} tier {tier.name}: "
                        "needs exactly one of endpointRef or external"
                    )
                if tier.endpoint_ref and tier.endpoint_ref.name not in self.upstreams:
                    raise ValueError(
                        f"RoutingPolicy {rp.metadata.name} tier {tier.name}: endpointRef "
                        f"{tier.endpoint_ref.name!r} is not in upstreams"
                    )
            unknown = [n for n in spec.fallback.order if n not in tiers]
            if spec.shadow.reference_tier and spec.shadow.reference_tier not in tiers:
                unknown.append(spec.shadow.reference_tier)
            if unknown:
                raise ValueError(f"RoutingPolicy {rp.metadata.name}: unknown tiers {unknown}")
            if spec.shadow.sample_rate > 0 and not spec.shadow.reference_tier:
                raise ValueError(f"RoutingPolicy {rp.metadata.name}: shadow needs referenceTier")
        for up in self.upstreams.values():
            parse_duration(up.cold_start_budget)
        tenant_names = [t.name for t in self.tenants]
        if len(set(tenant_names)) != len(tenant_names):
            raise ValueError("tenant names must be unique")
        return self


def parse_config(data: dict[str, Any] | None) -> GatewayConfig:
    return GatewayConfig.model_validate(data or {})


def load_config(path: Path | str) -> GatewayConfig:
    """Read and validate a config file (ValueError/OSError on problems; nothing half-loaded)."""
    text = Path(path).read_text()
    data = yaml.safe_load(text)
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping")
    return parse_config(data)
