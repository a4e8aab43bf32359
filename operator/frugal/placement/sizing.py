"""Right-size the GPU: which type and how many per replica fit the quantized model.

Memory needed = weights (parameters × bytes per parameter of the quantization)
              + KV cache for one full-length sequence (the minimum vLLM starts with)
              + runtime overhead (CUDA graphs, activations: 10% of weights + 1.5 GiB per GPU).
The KV size per token is estimated from the parameter count (layers × KV heads × head size
grows roughly with its square root across common dense architectures: ≈128 KiB/token at 8B in
fp16). This is an estimate, and status says so: an endpoint that needs exact sizing names its
GPU type and count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from frugal.api.base import CapacityType
from frugal.api.endpoint import InferenceEndpointSpec
from frugal.catalog.gpus import GpuType
from frugal.catalog.quantization import (
    bytes_per_param,
    kv_bytes_per_element,
    min_compute_capability,
)

GIB = 1024**3
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)
KV_BYTES_PER_TOKEN_8B_FP16 = 128 * 1024
MIN_KV_BYTES_PER_TOKEN_FP16 = 64 * 1024


@dataclass(frozen=True)
class MemoryEstimate:
    weights_gib: float
    kv_cache_gib: float
    overhead_gib: float

    @property
    def total_gib(self) -> float:
        return self.weights_gib + self.kv_cache_gib + self.overhead_gib


@dataclass(frozen=True)
class GpuFit:
    """A chosen GPU type and count, or why none fits."""

    gpu: GpuType | None
    count: int
    reason: str
    code: str = "Fits"
    """Fits, UnknownGpuType or NoGpuFits: the reason of a condition."""

    @property
    def fits(self) -> bool:
        return self.gpu is not None


def estimate_memory(spec: InferenceEndpointSpec, max_model_len: int) -> MemoryEstimate:
    params = spec.model.parameters
    weights = params * bytes_per_param(spec.engine.quantization)
    kv_fp16 = max(MIN_KV_BYTES_PER_TOKEN_FP16, KV_BYTES_PER_TOKEN_8B_FP16 * math.sqrt(params / 8e9))
    kv = kv_fp16 / 2.0 * kv_bytes_per_element(spec.engine.kv_cache_dtype) * max_model_len
    return MemoryEstimate(weights / GIB, kv / GIB, 0.1 * weights / GIB)


def _usable_gib(gpu: GpuType, count: int, utilization: float) -> float:
    return (gpu.memory_gib * utilization - 1.5) * count


def fit_gpu(
    spec: InferenceEndpointSpec,
    catalog: dict[str, GpuType],
    default_max_model_len: int,
    prefer: str | None = None,
) -> GpuFit:
    """Cheapest GPU type and count that fit, or the explicit choice checked against memory.

    ``prefer`` (the GPU type of the endpoint's reservation pool) wins when it fits: prepaid
    GPUs cost nothing extra at the margin.
    """
    max_len = spec.engine.max_model_len or default_max_model_len
    need = estimate_memory(spec, max_len)
    util = spec.engine.gpu_memory_utilization
    requested = spec.resources.gpu
    counts = (requested.count,) if requested.count else TENSOR_PARALLEL_SIZES
    capability = min_compute_capability(spec.engine.quantization, spec.engine.kv_cache_dtype)
    if requested.type != "auto":
        gpu = catalog.get(requested.type)
        if gpu is None:
            known = ", ".join(sorted(catalog))
            return GpuFit(
                None, 0, f"unknown GPU type {requested.type!r} (catalog: {known})", "UnknownGpuType"
            )
        if gpu.compute_capability < capability:
            return GpuFit(
                None,
                0,
                f"{gpu.name} (compute capability {gpu.compute_capability}) cannot run "
                f"{spec.engine.quantization} weights with a {spec.engine.kv_cache_dtype} KV cache "
                f"(needs {capability})",
                "NoGpuFits",
            )
        candidates = [gpu]
    else:
        candidates = [g for g in catalog.values() if g.compute_capability >= capability]
    options = [
        (g, c)
        for g in candidates
        for c in counts
        if c <= g.max_per_node and _usable_gib(g, c, util) >= need.total_gib
    ]
    what = (
        f"{need.total_gib:.1f} GiB needed (weights {need.weights_gib:.1f}, "
        f"KV for {max_len} tokens {need.kv_cache_gib:.1f}, overhead {need.overhead_gib:.1f})"
    )
    if not options:
        tried = ", ".join(f"{g.name}×{max(counts)}" for g in candidates)
        return GpuFit(None, 0, f"no GPU fits: {what}; largest tried {tried}", "NoGpuFits")
    preferred = [o for o in options if o[0].name == prefer]
    if preferred:
        gpu, count = min(preferred, key=lambda o: o[1])
        return GpuFit(gpu, count, f"{what}; {gpu.name}×{count} from the reservation pool")
    gpu, count = min(options, key=lambda o: (o[0].price(CapacityType.ON_DEMAND) * o[1], o[1]))
    price = gpu.price(CapacityType.ON_DEMAND) * count
    verdict = "as requested" if requested.type != "auto" else "cheapest that fits"
    return GpuFit(gpu, count, f"{what}; {gpu.name}×{count} {verdict} (${price:.2f}/h on-demand)")
