"""The GPU catalog: memory and $/GPU-hour by capacity type.

Defaults are approximate public AWS list prices (us-east-1, per GPU, from the single-GPU or
8-GPU instance of each type, after the mid-2025 on-demand price cuts); reserved is a one-year
no-upfront commitment, spot a typical recent price. They are meant as sane defaults for sizing
and ranking, not invoices: settings override any of them, and on AWS the pricing adapters
refresh them from the real APIs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from frugal.api.base import CapacityType

PRICES_AS_OF = "2025-07"


class GpuType(BaseModel):
    """One accelerator model and what it costs per GPU-hour."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    memory_gib: float = Field(gt=0, alias="memoryGiB")
    on_demand: float = Field(gt=0, alias="onDemand")
    spot: float = Field(gt=0)
    reserved: float = Field(gt=0)
    compute_capability: float = Field(default=8.0, alias="computeCapability")
    """CUDA compute capability; decides which quantization kernels the GPU can run."""
    max_per_node: int = Field(default=8, ge=1, alias="maxPerNode")
    instance_types: tuple[str, ...] = Field(default=(), alias="instanceTypes")
    """Cloud instance types carrying this GPU (used for node-pool requirements)."""

    def price(self, capacity: CapacityType) -> float:
        """US dollars per GPU-hour on the given capacity type."""
        return {
            CapacityType.ON_DEMAND: self.on_demand,
            CapacityType.SPOT: self.spot,
            CapacityType.RESERVED: self.reserved,
        }[capacity]


DEFAULT_GPUS: tuple[GpuType, ...] = (
    GpuType(
        name="t4",
        compute_capability=7.5,
        memory_gib=16,
        on_demand=0.526,
        spot=0.22,
        reserved=0.33,
        max_per_node=4,
        instance_types=("g4dn.xlarge", "g4dn.12xlarge"),
    ),
    GpuType(
        name="l4",
        compute_capability=8.9,
        memory_gib=24,
        on_demand=0.805,
        spot=0.36,
        reserved=0.51,
        instance_types=("g6.xlarge", "g6.12xlarge", "g6.48xlarge"),
    ),
    GpuType(
        name="a10g",
        compute_capability=8.6,
        memory_gib=24,
        on_demand=1.006,
        spot=0.45,
        reserved=0.63,
        instance_types=("g5.xlarge", "g5.12xlarge", "g5.48xlarge"),
    ),
    GpuType(
        name="l40s",
        compute_capability=8.9,
        memory_gib=48,
        on_demand=1.861,
        spot=0.84,
        reserved=1.17,
        instance_types=("g6e.xlarge", "g6e.12xlarge", "g6e.48xlarge"),
    ),
    GpuType(
        name="a100-80gb",
        compute_capability=8.0,
        memory_gib=80,
        on_demand=3.43,
        spot=1.70,
        reserved=2.16,
        instance_types=("p4de.24xlarge",),
    ),
    GpuType(
        name="h100",
        compute_capability=9.0,
        memory_gib=80,
        on_demand=6.88,
        spot=3.10,
        reserved=4.33,
        instance_types=("p5.48xlarge",),
    ),
)
