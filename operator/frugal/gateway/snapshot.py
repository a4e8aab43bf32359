"""One configuration, compiled for serving: routes by model name, upstreams, tenants, caches.

A snapshot is immutable. A request takes the current snapshot when it arrives and keeps it to
the end, so swapping in a new one (a config reload) never changes a request half-way: requests
in flight finish on the configuration they started with. What must outlive a snapshot — cache
entries, in-flight counts, rate-limit buckets, quality samples — lives in the gateway and is
looked up by stable keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from frugal.api.base import parse_duration
from frugal.api.cache import CachePolicy
from frugal.api.routing import Classifier, ExternalTier, RoutingPolicy
from frugal.gateway import distrust, routing
from frugal.gateway.cache import CacheSettings, ResponseCache
from frugal.gateway.cachekeys import Exclusion
from frugal.gateway.config import GatewayConfig, Limits, UpstreamConfig
from frugal.gateway.embed import Embedder
from frugal.gateway.errors import GatewayError
from frugal.gateway.examples import ExampleIndex
from frugal.gateway.tenancy import ANONYMOUS, TenantInfo, key_digest


@dataclass(frozen=True)
class Upstream:
    """Where a tier's requests go, and what a token costs there."""

    key: str
    """Stable identity for state that outlives snapshots (in-flight count, wake state)."""
    endpoint: str
    """InferenceEndpoint name (metrics label); empty for an external API."""
    namespace: str
    urls: tuple[str, ...]
    """Replica base URLs, without a trailing /v1."""
    model: str
    """The model name sent upstream."""
    price_in_per_1m: float
    price_out_per_1m: float
    api_key: str | None
    scaled_to_zero: bool
    cold_start_budget: float
    max_in_flight: int
    health_path: str

    @property
    def external(self) -> bool:
        return not self.endpoint


@dataclass(frozen=True)
class TierRoute:
    name: str
    upstream: Upstream
    match: frozenset[str]


@dataclass(frozen=True)
class Route:
    """What a model name clients call resolves to: a RoutingPolicy, or one endpoint directly."""

    model_name: str
    policy: str
    """The ``policy`` label of the route's metrics: the RoutingPolicy's name, or the endpoint's
    when the client called an endpoint's served name. Either is the ``targetRef.name`` of a
    CachePolicy in front of the route, which is how the operator finds its cache's figures."""
    namespace: str
    tiers: tuple[TierRoute, ...]
    weights: Mapping[str, int]
    classifier: Classifier
    fallback_order: tuple[str, ...] = ()
    fallback_on: frozenset[str] = frozenset({"error", "overload", "scaledToZero"})
    shadow_rate: float = 0.0
    shadow_tier: str | None = None
    quality_bar: float | None = None
    """``objectives.minQuality`` less ``autoReroute.hysteresis``: a tier whose shadow quality is
    under it has its cached answers distrusted (:mod:`frugal.gateway.distrust`)."""
    cache: ResponseCache | None = None
    examples: ExampleIndex | None = None
    """Labelled examples of an embedding classifier."""

    def tier(self, name: str) -> TierRoute:
        return next(t for t in self.tiers if t.name == name)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tiers]


@dataclass(frozen=True)
class Snapshot:
    config: GatewayConfig
    routes: Mapping[str, Route]
    keys: Mapping[str, TenantInfo]
    anonymous: TenantInfo = field(default_factory=lambda: TenantInfo(ANONYMOUS))

    @property
    def limits(self) -> Limits:
        return self.config.limits

    @property
    def auth_required(self) -> bool:
        return self.config.auth.required

    def resolve(self, model: object) -> Route:
        if not isinstance(model, str) or not model:
            raise GatewayError(400, "model is required", param="model", code="missing_model")
        route = self.routes.get(model)
        if route is None:
            raise GatewayError(
                404, f"The model `{model}` does not exist.", param="model", code="model_not_found"
            )
        return route


CacheFactory = Callable[[CachePolicy, str], ResponseCache]
"""Builds (or reuses) the runtime cache of a CachePolicy in a namespace."""
EmbedderFactory = Callable[[], Embedder]
"""The builtin embedder, for the embedding classifier."""


def base_url(url: str) -> str:
    """``http://host:8000/v1/`` → ``http://host:8000``: paths are added as /v1/..."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def cache_settings(policy: CachePolicy, namespace: str) -> CacheSettings:
    spec = policy.spec
    return CacheSettings(
        name=policy.metadata.name,
        namespace=namespace,
        target=spec.target_ref.name,
        exact=spec.exact.enabled,
        exact_ttl=parse_duration(spec.exact.ttl).total_seconds(),
        semantic=spec.semantic.enabled,
        threshold=spec.semantic.threshold,
        semantic_ttl=parse_duration(spec.semantic.ttl).total_seconds(),
        shared=spec.scope == "shared",
        exclusion=Exclusion(
            with_tools=spec.exclude.with_tools,
            temperature_above=spec.exclude.temperature_above,
            patterns=tuple(re.compile(p) for p in spec.exclude.patterns),
        ),
        affinity=spec.prefix.affinity,
        min_prefix_tokens=spec.prefix.min_prefix_tokens,
        max_false_hit_rate=spec.semantic.max_false_hit_rate,
    )


def _endpoint_upstream(name: str, up: UpstreamConfig, config: GatewayConfig) -> Upstream:
    price_in, price_out = up.token_prices()
    return Upstream(
        key=f"endpoint:{up.namespace or config.namespace}/{name}",
        endpoint=name,
        namespace=up.namespace or config.namespace,
        urls=tuple(base_url(u) for u in up.replica_urls),
        model=up.served_name,
        price_in_per_1m=price_in,
        price_out_per_1m=price_out,
        api_key=up.api_key.resolve() if up.api_key else None,
        scaled_to_zero=up.scaled_to_zero,
        cold_start_budget=parse_duration(up.cold_start_budget).total_seconds(),
        max_in_flight=up.max_in_flight or config.limits.max_in_flight,
        health_path=up.health_path,
    )


def _external_upstream(ext: ExternalTier, namespace: str, config: GatewayConfig) -> Upstream:
    api_key = None
    if ext.api_key_secret_ref is not None:
        ref = f"{ext.api_key_secret_ref.name}/{ext.api_key_secret_ref.key}"
        if ref not in config.secrets:
            raise ValueError(f"external tier {ext.url}: secret {ref} is not in secrets")
        api_key = config.secrets[ref].resolve()
    return Upstream(
        key=f"external:{base_url(ext.url)}:{ext.model}",
        endpoint="",
        namespace=namespace,
        urls=(base_url(ext.url),),
        model=ext.model,
        price_in_per_1m=ext.input_price_per_1m,
        price_out_per_1m=ext.output_price_per_1m,
        api_key=api_key,
        scaled_to_zero=False,
        cold_start_budget=0.0,
        max_in_flight=config.limits.max_in_flight,
        health_path="/v1/models",
    )


def _tenants(config: GatewayConfig) -> dict[str, TenantInfo]:
    keys: dict[str, TenantInfo] = {}
    for tenant in config.tenants:
        info = TenantInfo(
            name=tenant.name,
            team=tenant.cost.team or "",
            project=tenant.cost.project or "",
            env=tenant.cost.environment or "",
            rate_limit=tenant.rate_limit,
        )
        for secret in tenant.api_keys:
            digest = key_digest(secret.resolve())
            if digest in keys and keys[digest].name != tenant.name:
                raise ValueError(
                    f"an API key is given to both {keys[digest].name} and {tenant.name}"
                )
            keys[digest] = info
    return keys


def _cache_targets(
    config: GatewayConfig, make_cache: CacheFactory
) -> dict[tuple[str, str, str], ResponseCache]:
    targets: dict[tuple[str, str, str], ResponseCache] = {}
    for policy in config.cache_policies:
        ns = policy.metadata.namespace or config.namespace
        ref = policy.spec.target_ref
        key = (ns, ref.kind, ref.name)
        if key in targets:
            raise ValueError(f"two CachePolicies target {ref.kind} {ns}/{ref.name}")
        targets[key] = make_cache(policy, ns)
    return targets


def _policy_route(
    rp: RoutingPolicy,
    config: GatewayConfig,
    caches: Mapping[tuple[str, str, str], ResponseCache],
    embedder: EmbedderFactory | None,
) -> Route:
    ns = rp.metadata.namespace or config.namespace
    spec = rp.spec
    tiers = []
    for tier in spec.tiers:
        if tier.endpoint_ref is not None:
            name = tier.endpoint_ref.name
            upstream = _endpoint_upstream(name, config.upstreams[name], config)
        else:
            assert tier.external is not None
            upstream = _external_upstream(tier.external, ns, config)
        tiers.append(TierRoute(tier.name, upstream, frozenset(tier.match)))
    examples = None
    if spec.classifier.type == "embedding" and spec.classifier.examples and embedder:
        examples = ExampleIndex(spec.classifier.examples, embedder())
    return Route(
        model_name=spec.model_name,
        policy=rp.metadata.name,
        namespace=ns,
        tiers=tuple(tiers),
        weights=routing.effective_weights(rp),
        classifier=spec.classifier,
        fallback_order=tuple(spec.fallback.order),
        fallback_on=frozenset(spec.fallback.on),
        shadow_rate=spec.shadow.sample_rate,
        shadow_tier=spec.shadow.reference_tier,
        quality_bar=distrust.bar(spec.objectives.min_quality, spec.auto_reroute.hysteresis),
        cache=caches.get((ns, "RoutingPolicy", rp.metadata.name)),
        examples=examples,
    )


def build(
    config: GatewayConfig, make_cache: CacheFactory, embedder: EmbedderFactory | None = None
) -> Snapshot:
    """Compile a configuration; raises ValueError/KeyError/OSError without side effects on
    serving (caches made for a snapshot that fails are reused by the next attempt)."""
    caches = _cache_targets(config, make_cache)
    routes: dict[str, Route] = {}
    for rp in config.routing_policies:
        routes[rp.spec.model_name] = _policy_route(rp, config, caches, embedder)
    for name, up in config.upstreams.items():
        if up.served_name in routes:
            continue  # a policy's virtual name wins over an endpoint's own
        upstream = _endpoint_upstream(name, up, config)
        routes[up.served_name] = Route(
            model_name=up.served_name,
            policy=name,
            namespace=upstream.namespace,
            tiers=(TierRoute(name, upstream, frozenset()),),
            weights={name: 100},
            classifier=Classifier(),
            cache=caches.get((upstream.namespace, "InferenceEndpoint", name)),
        )
    return Snapshot(config=config, routes=routes, keys=_tenants(config))
