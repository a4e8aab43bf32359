"""Facts about the pinned vLLM release that the API and the renderer must agree with.

Read from the v0.33.0 release's own source (the PyPI wheel; docs/vllm.md says where each list
lives). vLLM's argparse accepts any string for these options and rejects unknown values only
once the model config is built, inside a pod that then crash-loops; frugal checks them at
admission time instead.
"""

VLLM_RELEASE = "0.33.0"
VLLM_IMAGE = "vllm/vllm-openai"

# vllm/model_executor/layers/quantization/__init__.py: QuantizationMethods, less
# DEPRECATED_QUANTIZATION_METHODS (fbgemm_fp8, fp_quant), which need
# --allow-deprecated-quantization. The last six are online shorthands: vLLM quantizes
# full-precision weights while loading them.
QUANTIZATION_METHODS: tuple[str, ...] = (
    "awq",
    "auto_awq",
    "fp8",
    "modelopt",
    "modelopt_fp4",
    "modelopt_mxfp8",
    "modelopt_mixed",
    "auto_gptq",
    "gptq",
    "gptq_marlin",
    "awq_marlin",
    "humming",
    "compressed-tensors",
    "experts_int8",
    "quark",
    "moe_wna16",
    "torchao",
    "inc",
    "mxfp4",
    "gpt_oss_mxfp4",
    "deepseek_v4_fp8",
    "online",
    "fp8_per_tensor",
    "fp8_per_block",
    "fp8_per_channel",
    "int8_per_channel_weight_only",
    "nvfp4_per_token",
    "mxfp8",
)

# vllm/config/cache.py: CacheDType.
KV_CACHE_DTYPES: tuple[str, ...] = (
    "auto",
    "float16",
    "bfloat16",
    "fp8",
    "fp8_e4m3",
    "fp8_e5m2",
    "fp8_inc",
    "fp8_ds_mla",
    "nvfp4_ds_mla",
    "turboquant_k8v4",
    "turboquant_4bit_nc",
    "turboquant_k3v4_nc",
    "turboquant_3bit_nc",
    "octave_k3v4",
    "octave_k3v3",
    "octave_k3v3_compact",
    "ultraquant_4bit",
    "int4_per_token_head",
    "int8_per_token_head",
    "fp8_per_token_head",
    "nvfp4",
    "nvfp4_4over6",
)

# vllm/config/speculative.py: SpeculativeMethod, the ones frugal renders. custom_class,
# extract_hidden_states, dflash and dspark remain reachable through engine.extraArgs.
SPECULATIVE_METHODS: tuple[str, ...] = (
    "ngram",
    "ngram_gpu",
    "suffix",
    "mtp",
    "draft_model",
    "eagle",
    "eagle3",
)
# Methods whose proposer is the served model itself or the prompt: no draft model needed.
SELF_DRAFTING_METHODS: frozenset[str] = frozenset({"ngram", "ngram_gpu", "suffix", "mtp"})
