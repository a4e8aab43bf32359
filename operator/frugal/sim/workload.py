"""The workload a simulation replays: traffic, tokens, retrieval, cache behaviour, classes, fleets.

Loaded from YAML (``data/case-study.yaml`` is the paper's case study) so that every assumption
sits in one reviewable file with its source beside it. The self-hosted tiers are real
``InferenceEndpointSpec`` objects and both fleets' routing is a real ``RoutingPolicySpec``
(built by :mod:`frugal.sim.fleets`), so the simulator exercises the same validation and
placement as the operator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from frugal.api.endpoint import InferenceEndpointSpec
from frugal.settings import ReservationPool

DATA = Path(__file__).parent / "data"
CASE_STUDY = DATA / "case-study.yaml"
HOURS_PER_DAY = 24


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class Volume(_Model):
    queries_per_day: float = Field(gt=0)
    days: int = Field(default=30, ge=1, le=366)
    step_minutes: int = Field(default=60, ge=1, le=1440)
    diurnal_amplitude: float = Field(default=1.0, ge=0, le=1)
    diurnal: tuple[float, ...] = Field(default=(1.0,) * HOURS_PER_DAY)

    @model_validator(mode="after")
    def _check(self) -> Volume:
        if len(self.diurnal) != HOURS_PER_DAY or min(self.diurnal) < 0 or sum(self.diurnal) <= 0:
            raise ValueError("diurnal needs 24 non-negative weights that are not all zero")
        if 1440 % self.step_minutes:
            raise ValueError("stepMinutes must divide a day (1440 minutes)")
        return self

    def hourly_shares(self) -> list[float]:
        """Share of a day's queries arriving in each hour, after the amplitude is applied."""
        total = sum(self.diurnal)
        mean = 1 / HOURS_PER_DAY
        return [mean + self.diurnal_amplitude * (w / total - mean) for w in self.diurnal]


class Tokens(_Model):
    system_prompt: float = Field(ge=0)
    query: float = Field(ge=0)
    history: float = Field(ge=0)
    answer: float = Field(ge=0)


class Rag(_Model):
    share: float = Field(ge=0, le=1)
    chunks: int = Field(ge=0)
    chunk_tokens: float = Field(ge=0)
    store_chunks: float = Field(ge=0)
    dimensions: int = Field(default=1536, ge=1)
    index_overhead: float = Field(default=1.5, ge=1)

    @property
    def context_tokens(self) -> float:
        """Retrieved tokens added to a prompt that uses retrieval."""
        return self.chunks * self.chunk_tokens

    @property
    def store_gb(self) -> float:
        """Vector store size: float32 vectors plus index and metadata."""
        return self.store_chunks * self.dimensions * 4 * self.index_overhead / 1e9


class Cache(_Model):
    exact_repeat_rate: float = Field(ge=0, le=1)
    paraphrase_rate: float = Field(ge=0, le=1)
    false_hit_share: float = Field(default=0.0, ge=0, le=1)
    ttl_hours: float = Field(default=12, gt=0)
    topics: float = Field(default=500, gt=0)


class RequestClass(_Model):
    name: str
    share: float = Field(ge=0)
    cacheable: bool = False
    query: float | None = Field(default=None, ge=0)
    answer: float | None = Field(default=None, ge=0)
    quality: dict[str, float]


class Techniques(_Model):
    compression_keep: float = Field(default=0.5, gt=0, le=1)
    compression_quality: float = Field(default=0.99, gt=0, le=1)
    fresh_history_tokens: float = Field(default=100, ge=0)
    fresh_quality: float = Field(default=0.995, gt=0, le=1)
    speculative_speedup: float = Field(default=1.5, ge=1)
    batching_gain: float = Field(default=4.0, ge=1)
    quantization_loss: dict[str, float] = Field(default_factory=lambda: {"4bit": 0.01})
    quality_gap_scale: float = Field(default=1.0, ge=0)


class Spot(_Model):
    interruptions_per_replica_month: float = Field(default=0.5, ge=0)
    retry_seconds: float = Field(default=20, ge=0)


class Latency(_Model):
    cache_hit_seconds: float = Field(default=0.05, ge=0)
    sigma: float = Field(default=0.35, ge=0)


class ApiPerformance(_Model):
    ttft_seconds: float = Field(ge=0)
    tokens_per_second: float = Field(gt=0)


class HostedPerformance(_Model):
    ttft_seconds: float = Field(ge=0)
    prefill_tps: float = Field(gt=0)
    decode_tps: float = Field(gt=0)
    cold_start_seconds: float = Field(ge=0)


class HostedTier(_Model):
    performance: HostedPerformance
    endpoint: InferenceEndpointSpec


class ApiFleet(_Model):
    performance: dict[str, ApiPerformance]
    routing: dict[str, Any]
    frontier: str


class HostedFleet(_Model):
    reservations: tuple[ReservationPool, ...] = ()
    tiers: dict[str, HostedTier]
    routing: dict[str, Any]
    frontier: str


class Fleets(_Model):
    api: ApiFleet
    self_hosted: HostedFleet


class Workload(_Model):
    name: str = "workload"
    seed: int = 0
    volume: Volume
    tokens: Tokens
    rag: Rag
    cache: Cache
    classes: tuple[RequestClass, ...] = Field(min_length=1)
    techniques: Techniques = Field(default_factory=Techniques)
    spot: Spot = Field(default_factory=Spot)
    latency: Latency = Field(default_factory=Latency)
    fleets: Fleets
    sensitivity: dict[str, tuple[float, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Workload:
        if sum(c.share for c in self.classes) <= 0:
            raise ValueError("class shares must not all be zero")
        tiers = {*self.fleets.api.performance, *self.fleets.self_hosted.tiers}
        for cls in self.classes:
            missing = tiers - set(cls.quality)
            if missing:
                raise ValueError(f"class {cls.name}: no quality for tiers {sorted(missing)}")
        for path in self.sensitivity:
            get_path(self, path)  # raises on an unknown parameter
        return self

    def class_shares(self) -> dict[str, float]:
        """Normalised share of each class."""
        total = sum(c.share for c in self.classes)
        return {c.name: c.share / total for c in self.classes}

    def class_tokens(self, cls: RequestClass) -> tuple[float, float]:
        """(query tokens, answer tokens) of a class."""
        query = self.tokens.query if cls.query is None else cls.query
        answer = self.tokens.answer if cls.answer is None else cls.answer
        return query, answer


def load_workload(path: Path | None = None) -> Workload:
    """A workload from YAML; the paper's case study without a path."""
    data = yaml.safe_load((path or CASE_STUDY).read_text())
    return Workload.model_validate(data)


# --- parameter paths (for the sensitivity envelope) ---------------------------------------------


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _step(obj: Any, part: str) -> Any:
    if isinstance(obj, tuple):  # classes.<name>
        for item in obj:
            if getattr(item, "name", None) == part:
                return item
        raise KeyError(part)
    if isinstance(obj, BaseModel):
        attr = _snake(part)
        if attr not in type(obj).model_fields:
            raise KeyError(part)
        return getattr(obj, attr)
    raise KeyError(part)


def get_path(workload: Workload, path: str) -> float:
    """The value of a dotted parameter such as ``cache.paraphraseRate``."""
    obj: Any = workload
    try:
        for part in path.split("."):
            obj = _step(obj, part)
    except KeyError as err:
        raise ValueError(f"unknown workload parameter {path!r} (at {err.args[0]!r})") from None
    if not isinstance(obj, int | float) or isinstance(obj, bool):
        raise ValueError(f"workload parameter {path!r} is not a number")
    return float(obj)


def _set(obj: Any, parts: list[str], value: float) -> Any:
    head, rest = parts[0], parts[1:]
    child = _step(obj, head)
    new = _set(child, rest, value) if rest else value
    if isinstance(obj, tuple):
        return tuple(new if item is child else item for item in obj)
    return obj.model_copy(update={_snake(head): new})


def with_value(workload: Workload, path: str, value: float) -> Workload:
    """A copy of the workload with one dotted parameter changed (and validated again)."""
    get_path(workload, path)
    changed = _set(workload, path.split("."), value)
    return Workload.model_validate(changed.model_dump(by_alias=True))
