"""The embedding classifier: a request's class is that of its nearest labelled example.

Examples are embedded once per configuration, on first use; a request costs one embedding of
its question. A request whose nearest example is not similar enough (``min_similarity``) gets
no class from here and falls to the classifier's default.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np

from frugal.api.routing import LabelledExample
from frugal.gateway.embed import Embedder, EmbedderBusyError

log = logging.getLogger("frugal.gateway")

MIN_SIMILARITY = 0.5


class ExampleIndex:
    def __init__(
        self,
        examples: Sequence[LabelledExample],
        embedder: Embedder,
        min_similarity: float = MIN_SIMILARITY,
    ) -> None:
        self.classes = [e.class_name for e in examples]
        self.texts = [e.text for e in examples]
        self.embedder = embedder
        self.min_similarity = min_similarity
        self._matrix: np.ndarray | None = None
        self._lock = asyncio.Lock()

    async def _vectors(self) -> np.ndarray:
        async with self._lock:
            if self._matrix is None:
                self._matrix = await self.embedder.embed(self.texts)
            return self._matrix

    async def nearest(self, text: str) -> str | None:
        """The nearest example's class, or None (no examples, too far, embedder failed)."""
        if not self.texts or not text:
            return None
        try:
            matrix = await self._vectors()
            vector = (await self.embedder.embed([text]))[0]
        except EmbedderBusyError:
            # Overload, not a fault: one line per request would flood the log exactly then.
            log.debug("embedding classifier skipped: embedder busy")
            return None
        except Exception as err:  # classification must never fail a request
            log.warning("embedding classifier unavailable: %s", type(err).__name__)
            return None
        scores = matrix @ vector
        best = int(np.argmax(scores))
        return self.classes[best] if scores[best] >= self.min_similarity else None
