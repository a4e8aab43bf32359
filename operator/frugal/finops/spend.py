"""Live spend per team, project, environment and tier, from what the operator already reports.

Pure: InferenceEndpoint objects (as the API server returns them) and optional Prometheus
figures come in, grouped rows come out. The operator writes each endpoint's ``status.cost``
($/h, $/1M tokens, tokens/s, budget burn); the gateway meters external tiers and cache savings
in Prometheus. A figure that is absent stays absent (None), never zero, as everywhere in frugal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from frugal.cost.model import cost_per_million_tokens

GROUP_KEYS = ("namespace", "team", "project", "environment", "tier")
HOURS_PER_DAY = 24
TIER_LABELS = ("frugal.dev/tier", "tier")
"""costAllocation.labels keys that name a tier when no RoutingPolicy does."""


@dataclass(frozen=True)
class EndpointSpend:
    """One InferenceEndpoint's cost as its status reports it."""

    namespace: str
    name: str
    team: str
    project: str
    environment: str
    tier: str
    hourly_usd: float | None
    tokens_per_second: float | None
    budget_burn: float | None
    phase: str | None = None

    def key(self, by: Sequence[str]) -> tuple[str, ...]:
        return tuple(getattr(self, k) for k in by)


def endpoint_spend(obj: Mapping[str, Any], tiers: Mapping[tuple[str, str], str]) -> EndpointSpend:
    """Read one endpoint; ``tiers`` maps (namespace, endpoint) → the RoutingPolicy tier name."""
    meta = obj.get("metadata", {})
    spec = obj.get("spec", {})
    status = obj.get("status") or {}
    cost = status.get("cost") or {}
    alloc = spec.get("costAllocation") or {}
    labels = alloc.get("labels") or {}
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    tier = tiers.get((namespace, name)) or next((labels[k] for k in TIER_LABELS if k in labels), "")
    hourly = _number(cost.get("hourlyUSD"))
    tps = _number(cost.get("tokensPerSecond"))
    per_million = _number(cost.get("perMillionTokensUSD"))
    if tps is None and hourly and per_million:  # $/1M tokens and $/h give the token rate back
        tps = hourly / per_million * 1e6 / 3600
    return EndpointSpend(
        namespace=namespace,
        name=name,
        team=alloc.get("team") or "",
        project=alloc.get("project") or "",
        environment=alloc.get("environment") or "",
        tier=tier or "",
        hourly_usd=hourly,
        tokens_per_second=tps,
        budget_burn=_number(cost.get("budgetBurn")),
        phase=status.get("phase"),
    )


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def routing_tiers(policies: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(namespace, endpoint name) → tier name, from RoutingPolicies' ``endpointRef`` tiers."""
    out = {}
    for rp in policies:
        ns = rp.get("metadata", {}).get("namespace", "")
        for tier in rp.get("spec", {}).get("tiers", []):
            ref = tier.get("endpointRef") or {}
            if ref.get("name"):
                out.setdefault((ns, ref["name"]), tier.get("name", ""))
    return out


@dataclass
class Group:
    """Spend of one group (e.g. one team's prod tier)."""

    key: dict[str, str]
    endpoints: int = 0
    hourly_usd: float = 0.0
    priced: int = 0
    """Endpoints with a $/h figure (the rest have none yet)."""
    tokens_per_second: float = 0.0
    metered: int = 0
    budget_burn: float | None = None
    gateway_usd_per_day: float | None = None
    """External (per-token) tier spend metered by the gateway, over the window, per day."""
    cache_saved_usd_per_day: float | None = None
    names: list[str] = field(default_factory=list)

    @property
    def usd_per_day(self) -> float | None:
        """Endpoint GPUs plus metered API spend, per day; None when nothing is priced."""
        parts = [p for p in (self._gpu_per_day, self.gateway_usd_per_day) if p is not None]
        return sum(parts) if parts else None

    @property
    def _gpu_per_day(self) -> float | None:
        return self.hourly_usd * HOURS_PER_DAY if self.priced else None

    @property
    def per_million_tokens_usd(self) -> float | None:
        """Self-hosted $ per 1M tokens served (idle time included), via frugal's cost model."""
        if not self.priced or not self.metered:
            return None
        return cost_per_million_tokens(self.hourly_usd, self.tokens_per_second)

    def row(self) -> dict[str, Any]:
        return {
            **self.key,
            "endpoints": self.endpoints,
            "usd_per_day": self.usd_per_day,
            "gpu_usd_per_day": self._gpu_per_day,
            "api_usd_per_day": self.gateway_usd_per_day,
            "usd_per_1m_tokens": self.per_million_tokens_usd,
            "cache_saved_usd_per_day": self.cache_saved_usd_per_day,
            "budget_burn": self.budget_burn,
        }


def aggregate(
    endpoints: Iterable[EndpointSpend],
    by: Sequence[str] = GROUP_KEYS,
    gateway: Mapping[tuple[str, ...], float] | None = None,
    cache_saved: Mapping[tuple[str, ...], float] | None = None,
) -> list[Group]:
    """Group endpoints by ``by``; gateway figures ($/day) are keyed the same way."""
    unknown = set(by) - set(GROUP_KEYS)
    if unknown:
        raise ValueError(f"cannot group by {sorted(unknown)}; choose from {', '.join(GROUP_KEYS)}")
    groups: dict[tuple[str, ...], Group] = {}

    def group(key: tuple[str, ...]) -> Group:
        if key not in groups:
            groups[key] = Group(dict(zip(by, key, strict=True)))
        return groups[key]

    for e in endpoints:
        g = group(e.key(by))
        g.endpoints += 1
        g.names.append(f"{e.namespace}/{e.name}")
        if e.hourly_usd is not None:
            g.hourly_usd += e.hourly_usd
            g.priced += 1
        if e.tokens_per_second is not None:
            g.tokens_per_second += e.tokens_per_second
            g.metered += 1
        if e.budget_burn is not None:
            g.budget_burn = max(g.budget_burn or 0.0, e.budget_burn)
    for key, usd in (gateway or {}).items():
        g = group(key)
        g.gateway_usd_per_day = (g.gateway_usd_per_day or 0.0) + usd
    for key, usd in (cache_saved or {}).items():
        g = group(key)
        g.cache_saved_usd_per_day = (g.cache_saved_usd_per_day or 0.0) + usd
    return sorted(groups.values(), key=lambda g: -(g.usd_per_day or 0.0))


def totals(groups: Sequence[Group]) -> dict[str, float | None]:
    def total(attr: str) -> float | None:
        values = [getattr(g, attr) for g in groups if getattr(g, attr) is not None]
        return sum(values) if values else None

    return {
        "usd_per_day": total("usd_per_day"),
        "cache_saved_usd_per_day": total("cache_saved_usd_per_day"),
    }
