"""Bytes of GPU memory per model parameter, by vLLM quantization method.

4-bit group-quantized formats carry scales and zero points (about 0.5625 bytes/param at group
size 128); 8-bit formats carry per-channel scales (about 1.02). Methods whose bit width depends
on the checkpoint (compressed-tensors, quark, torchao, inc) are sized as 8-bit, the common case
(W8A8); a 4-bit checkpoint then simply has headroom.
"""

from __future__ import annotations

from frugal.api.vllm import QUANTIZATION_METHODS

FULL_PRECISION = 2.0  # bf16 / fp16
EIGHT_BIT = 1.02
FOUR_BIT = 0.5625

BYTES_PER_PARAM: dict[str, float] = {
    "none": FULL_PRECISION,
    # 4-bit weight formats
    "awq": FOUR_BIT,
    "auto_awq": FOUR_BIT,
    "awq_marlin": FOUR_BIT,
    "gptq": FOUR_BIT,
    "auto_gptq": FOUR_BIT,
    "gptq_marlin": FOUR_BIT,
    "moe_wna16": FOUR_BIT,
    "modelopt_fp4": FOUR_BIT,
    "nvfp4_per_token": FOUR_BIT,
    "mxfp4": 0.53,
    "gpt_oss_mxfp4": 0.53,
    "humming": FOUR_BIT,
    "modelopt_mixed": 0.8,
    # 8-bit weight formats
    "fp8": EIGHT_BIT,
    "fp8_per_tensor": EIGHT_BIT,
    "fp8_per_block": EIGHT_BIT,
    "fp8_per_channel": EIGHT_BIT,
    "modelopt": EIGHT_BIT,
    "modelopt_mxfp8": EIGHT_BIT,
    "mxfp8": EIGHT_BIT,
    "deepseek_v4_fp8": EIGHT_BIT,
    "int8_per_channel_weight_only": EIGHT_BIT,
    "experts_int8": EIGHT_BIT,
    "online": EIGHT_BIT,
    # bit width set by the checkpoint: sized as W8A8
    "compressed-tensors": EIGHT_BIT,
    "quark": EIGHT_BIT,
    "torchao": EIGHT_BIT,
    "inc": EIGHT_BIT,
}

# Least CUDA compute capability vLLM needs for each format's kernels (Turing 7.5, Ampere
# 8.0/8.6, Ada 8.9, Hopper 9.0). Marlin kernels (awq_marlin, gptq_marlin, and FP8/MXFP4
# weight-only) need Ampere; NVFP4 is sized for Ada and newer to stay on the safe side.
MIN_COMPUTE_CAPABILITY: dict[str, float] = {
    **dict.fromkeys(
        (
            "fp8",
            "fp8_per_tensor",
            "fp8_per_block",
            "fp8_per_channel",
            "modelopt",
            "modelopt_mxfp8",
            "mxfp8",
            "deepseek_v4_fp8",
            "online",
            "mxfp4",
            "gpt_oss_mxfp4",
            "modelopt_mixed",
            "awq_marlin",
            "gptq_marlin",
        ),
        8.0,
    ),
    **dict.fromkeys(("modelopt_fp4", "nvfp4_per_token"), 8.9),
}
FP8_KV_MIN_CAPABILITY = 8.0


def min_compute_capability(quantization: str, kv_cache_dtype: str) -> float:
    """The least compute capability a GPU needs to run this quantization and KV dtype."""
    need = MIN_COMPUTE_CAPABILITY.get(quantization, 7.5)
    if kv_cache_dtype not in KV_BYTES:
        need = max(need, FP8_KV_MIN_CAPABILITY)
    return need


KV_BYTES: dict[str, float] = {"auto": 2.0, "float16": 2.0, "bfloat16": 2.0}
"""Bytes per KV-cache element; every other (fp8 / 4-bit) dtype is sized at 1 byte or less."""


def bytes_per_param(method: str) -> float:
    """GPU bytes per parameter of weights quantized with ``method``."""
    return BYTES_PER_PARAM[method]


def kv_bytes_per_element(dtype: str) -> float:
    if dtype in KV_BYTES:
        return KV_BYTES[dtype]
    if "4bit" in dtype or dtype.startswith(("int4", "nvfp4", "ultraquant")):
        return 0.5
    return 1.0


assert set(BYTES_PER_PARAM) == {"none", *QUANTIZATION_METHODS}, "catalog out of step with vLLM"
