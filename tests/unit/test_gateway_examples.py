"""The embedding classifier: nearest labelled example, and nothing (not an error) when it can't."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np
import pytest

from frugal.api.routing import LabelledExample
from frugal.gateway.embed import EmbedderBusyError, HashedNgramEmbedder
from frugal.gateway.examples import ExampleIndex

EXAMPLES = [
    LabelledExample.model_validate({"class": "code", "text": "write a python function to sort"}),
    LabelledExample.model_validate({"class": "chat", "text": "how are you doing today my friend"}),
]


class BusyAfterExamples(HashedNgramEmbedder):
    """Embeds the examples, then reports overload as the micro-batching embedder does."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.calls > 1:
            raise EmbedderBusyError("64 texts already wait for the embedder")
        return await super().embed(texts)


def test_nearest_example_gives_its_class() -> None:
    index = ExampleIndex(EXAMPLES, HashedNgramEmbedder(), min_similarity=0.2)
    assert asyncio.run(index.nearest("write a python function to sort a list")) == "code"
    assert asyncio.run(index.nearest("how are you doing today")) == "chat"


def test_too_far_from_every_example_gives_no_class() -> None:
    index = ExampleIndex(EXAMPLES, HashedNgramEmbedder(), min_similarity=0.99)
    assert asyncio.run(index.nearest("quarterly revenue of the bakery")) is None


def test_busy_embedder_gives_no_class_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    index = ExampleIndex(EXAMPLES, BusyAfterExamples(), min_similarity=0.2)
    with caplog.at_level(logging.INFO, logger="frugal.gateway"):
        assert asyncio.run(index.nearest("write a python function to sort")) is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
