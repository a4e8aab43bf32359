"""The simulator's knobs: one model for the constructor, the command line and ``/sim/config``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SimConfig(BaseModel):
    """How a simulated vLLM engine behaves. Every field can be changed while it runs."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    model: str = Field("sim-model", min_length=1)
    """Served model name (vLLM's --served-model-name): reported in answers and metric labels."""
    ttft_seconds: float = Field(0.05, ge=0)
    """Prefill time: from being scheduled to the first token."""
    tokens_per_second: float = Field(50.0, ge=0)
    """Decode speed of one sequence; 0 means unpaced (every token at once)."""
    max_num_seqs: int = Field(256, ge=1)
    """Sequences decoded at once (vLLM's --max-num-seqs); further requests wait in the queue."""
    failure_rate: float = Field(0.0, ge=0, le=1)
    """Fraction of requests answered with HTTP 500 (an OpenAI-style error body)."""
    quality: float = Field(1.0, ge=0, le=1)
    """Fraction of prompts answered with the reference answer; the rest get a degraded one."""
    echo: bool = False
    """Answer with the last user message (chat) or the prompt (completions) instead."""
    answer_tokens: int = Field(32, ge=0)
    """Length of a generated answer, in tokens (a request's max_tokens may cut it shorter)."""
    startup_delay_seconds: float = Field(0.0, ge=0)
    """Time after start-up during which the engine is "loading weights" (/health is 503)."""
    seed: int = 0
    """Seeds answers, quality decisions, embeddings and the failure sequence."""
    embedding_dim: int = Field(256, ge=1, le=65536)
    """Length of the vectors /v1/embeddings returns (unless a request asks for `dimensions`)."""
    healthy: bool = True
    """False makes /health and every /v1 endpoint answer 503, like a dead engine."""

    def updated(self, patch: dict[str, Any]) -> SimConfig:
        """A validated copy with ``patch`` applied (``model_copy`` would skip validation)."""
        return SimConfig.model_validate({**self.model_dump(), **patch})
