"""Prices the simulator needs beyond frugal's GPU catalog: managed-API tiers and retrieval.

Kept in ``data/prices.yaml`` with the source and date of each figure, so that a reader can
check them and a user can swap in their own contract prices without touching code.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from frugal.sim.workload import DATA

PRICES = DATA / "prices.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class ApiPrice(_Model):
    """One managed model's list price, US$ per 1M tokens."""

    model: str
    input_per_1m: float = Field(ge=0, alias="inputPer1M")
    output_per_1m: float = Field(ge=0, alias="outputPer1M")
    cached_input_per_1m: float | None = Field(default=None, ge=0, alias="cachedInputPer1M")


class Prices(_Model):
    as_of: str
    api_tiers: dict[str, ApiPrice]
    prompt_cache_min_tokens: int = Field(default=1024, ge=0)
    embedding_per_1m: float = Field(ge=0, alias="embeddingPer1M")
    vector_read_per_1m_units: float = Field(ge=0, alias="vectorReadPer1MUnits")
    vector_storage_per_gb_month: float = Field(ge=0)
    platform_hourly: float = Field(ge=0)


def load_prices(path: Path | None = None) -> Prices:
    """Prices from YAML; frugal's shipped list prices without a path."""
    return Prices.model_validate(yaml.safe_load((path or PRICES).read_text()))
