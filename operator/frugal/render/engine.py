"""The vLLM command line of an endpoint (``vllm serve`` arguments, vLLM v0.33.0).

The image's entrypoint is ``vllm serve``, so these are its arguments: the model first
(``--model`` is deprecated there), then flags. docs/vllm.md lists where each flag and value was
checked in the release's source.
"""

from __future__ import annotations

import json

from frugal.api.endpoint import InferenceEndpointSpec

MODEL_ROOT = "/models"


def model_argument(uri: str) -> str:
    """The positional model argument for a weights URI.

    hf://org/name → org/name (downloaded by vLLM); s3://bucket/key → kept (streamed by the
    Run:ai model streamer); pvc://claim/path → the path where the claim is mounted.
    """
    scheme, _, rest = uri.partition("://")
    if scheme == "hf":
        return rest
    if scheme == "s3":
        return uri
    claim, _, path = rest.partition("/")
    return f"{MODEL_ROOT}/{claim}/{path}".rstrip("/")


def pvc_claim(uri: str) -> str | None:
    scheme, _, rest = uri.partition("://")
    return rest.partition("/")[0] if scheme == "pvc" else None


def vllm_args(spec: InferenceEndpointSpec, tensor_parallel: int, port: int) -> list[str]:
    engine = spec.engine
    args = [
        model_argument(spec.model.uri),
        "--served-model-name",
        spec.model.served_name,
        "--port",
        str(port),
        "--tensor-parallel-size",
        str(tensor_parallel),
        "--max-num-seqs",
        str(engine.max_num_seqs),
        "--gpu-memory-utilization",
        f"{engine.gpu_memory_utilization:g}",
        "--kv-cache-dtype",
        engine.kv_cache_dtype,
        "--enable-prefix-caching" if engine.prefix_caching else "--no-enable-prefix-caching",
    ]
    if engine.quantization != "none":
        args += ["--quantization", engine.quantization]
    if engine.max_model_len:
        args += ["--max-model-len", str(engine.max_model_len)]
    if spec.model.revision:
        args += ["--revision", spec.model.revision]
    if spec.model.uri.startswith("s3://"):
        args += ["--load-format", "runai_streamer"]
    if engine.speculative:
        config: dict[str, object] = {
            "method": engine.speculative.method,
            "num_speculative_tokens": engine.speculative.num_speculative_tokens,
        }
        if engine.speculative.draft_model:
            config["model"] = (
                model_argument(engine.speculative.draft_model)
                if ("://" in engine.speculative.draft_model)
                else engine.speculative.draft_model
            )
        args += ["--speculative-config", json.dumps(config, separators=(",", ":"))]
    return args + list(engine.extra_args)
