"""Operator-wide settings: the GPU catalog, platform profile, reservation pools, images.

Loaded from a YAML file (the Helm chart mounts it from a ConfigMap). Everything has a default,
so an empty file is a working configuration for a plain cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from frugal.api.vllm import VLLM_IMAGE, VLLM_RELEASE
from frugal.catalog.gpus import DEFAULT_GPUS, GpuType
from frugal.catalog.profiles import PROFILES, Profile, ProfileName
from frugal.render.nodepools import NodePoolSettings, name_conflicts
from frugal.signals.prometheus import PrometheusSettings


class _Settings(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class ReservationPool(_Settings):
    """Prepaid GPUs shared by endpoints (a capacity reservation, a savings-plan node group)."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    gpu_type: str
    gpus: int = Field(ge=0)
    capacity_reservation_ids: tuple[str, ...] = ()
    """Cloud reservation ids (AWS ODCR / capacity blocks), for Karpenter node pools."""


class EngineDefaults(_Settings):
    """How engine pods are built where the endpoint does not say."""

    image: str = f"{VLLM_IMAGE}:v{VLLM_RELEASE}"
    images: dict[str, str] = Field(default_factory=dict)
    """Image per quantization method, for methods that need a special build."""
    cpu_per_gpu: str = "4"
    memory_per_gpu: str = "24Gi"
    shm_size: str = "8Gi"
    model_cache_size: str = "200Gi"
    model_cache_claim: str | None = None
    """A ReadWriteMany PVC for downloaded weights; emptyDir of model_cache_size when unset."""
    hf_token_secret: str | None = None
    """Secret with key HF_TOKEN, for gated Hugging Face models."""
    run_as_user: int | None = 2000
    """Non-root UID for the engine (the vLLM image's vllm user); None keeps the image's user."""
    port: int = 8000
    default_max_model_len: int = 8192
    """Context length assumed for sizing when an endpoint leaves maxModelLen unset."""
    scheduler_name: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253
    )
    """The scheduler that places engine pods (``schedulerName``); unset: the cluster's default.
    On managed control planes (EKS, GKE, AKS), whose default scheduler takes no configuration,
    name a second scheduler running frugal's GPU bin-packing profile (docs/node-pools.md)."""

    def image_for(self, quantization: str) -> str:
        return self.images.get(quantization, self.image)


class Loops(_Settings):
    """How often the control loops evaluate."""

    scale_interval_seconds: float = Field(default=15, gt=0)
    """Autoscaling, scale-to-zero and live cost of every endpoint."""
    reroute_tick_seconds: float = Field(default=10, gt=0)
    """How often RoutingPolicies are checked; each is evaluated every autoReroute.interval."""
    scale_down_stabilisation_seconds: float = Field(default=300, ge=0)
    """Scale down only to the highest recommendation of this window (as the HPA does)."""
    spot_unschedulable_grace_seconds: float = Field(default=60, ge=0)
    """Spot pods unschedulable this long mean spot capacity is gone: move them to on-demand."""
    cache_status_seconds: float = Field(default=30, gt=0)
    """How often CachePolicy status (hit rates, savings, false hits) is refreshed."""
    spot_quiet_seconds: float = Field(default=6 * 3600, gt=0)
    """Without interruptions this long, the spot share is restored step by step."""


class GatewaySettings(_Settings):
    """Where the operator writes the shared gateway's configuration."""

    config_namespace: str | None = None
    """Namespace of the gateway's ConfigMaps (the chart's release namespace); unset: none."""
    config_map: str = "frugal-gateway"
    base_config_map: str = "frugal-gateway-base"
    """The static part (tenants, limits, auth), from the Helm values."""


class AwsPrices(_Settings):
    """Live AWS prices (boto3): spot history, on-demand list prices; off by default."""

    enabled: bool = False
    region: str = "us-east-1"
    refresh_interval_seconds: float = Field(default=3600, gt=0)
    zones: tuple[str, ...] = ()
    """Availability zones the cluster's nodes can use; empty means all."""


class Settings(_Settings):
    """Everything the operator needs to know about its cluster and prices."""

    profile: ProfileName = ProfileName.PLAIN
    gpus: tuple[GpuType, ...] = DEFAULT_GPUS
    gpu_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Partial overrides of catalog entries, e.g. {l4: {spot: 0.31}}."""
    reservations: tuple[ReservationPool, ...] = ()
    engine: EngineDefaults = Field(default_factory=EngineDefaults)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    loops: Loops = Field(default_factory=Loops)
    aws: AwsPrices = Field(default_factory=AwsPrices)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    node_pools: NodePoolSettings = Field(default_factory=NodePoolSettings)
    """Karpenter NodePools frugal provisions for its placement (profile karpenter)."""
    field_manager: str = "frugal"
    reconcile_interval_seconds: float = Field(default=60, gt=0)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        names = {g.name for g in self.gpus}
        unknown = set(self.gpu_overrides) - names
        if unknown:
            raise ValueError(f"gpuOverrides names unknown GPU types: {sorted(unknown)}")
        for pool in self.reservations:
            if pool.gpu_type not in names:
                raise ValueError(f"reservation {pool.name}: unknown gpuType {pool.gpu_type!r}")
        if self.node_pools.manage and (clash := name_conflicts(self)):
            raise ValueError("; ".join(clash))
        return self

    def catalog(self) -> dict[str, GpuType]:
        """GPU name → type, with overrides applied."""
        alias = {name: f.alias or name for name, f in GpuType.model_fields.items()}
        out = {}
        for gpu in self.gpus:
            patch = {alias.get(k, k): v for k, v in self.gpu_overrides.get(gpu.name, {}).items()}
            merged = {**gpu.model_dump(by_alias=True), **patch}
            out[gpu.name] = GpuType.model_validate(merged) if patch else gpu
        return out

    def with_live_prices(self, live: dict[str, dict[str, float]]) -> Settings:
        """These settings with live prices under the explicit overrides (which still win)."""
        merged = {
            gpu: {**live.get(gpu, {}), **self.gpu_overrides.get(gpu, {})}
            for gpu in {*live, *self.gpu_overrides}
        }
        return self.model_copy(update={"gpu_overrides": merged})

    @property
    def platform(self) -> Profile:
        return PROFILES[self.profile]

    def reservation(self, name: str) -> ReservationPool | None:
        return next((p for p in self.reservations if p.name == name), None)


def load_settings(path: Path | None) -> Settings:
    """Settings from a YAML file, or the defaults."""
    if path is None:
        return Settings()
    data = yaml.safe_load(path.read_text()) or {}
    return Settings.model_validate(data)
