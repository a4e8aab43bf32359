"""frugal's data plane: an OpenAI-compatible gateway (docs/gateway.md).

Clients call a RoutingPolicy's ``modelName``; the gateway answers from the cache when a
CachePolicy allows it, otherwise classifies the request, picks a tier by the policy's effective
weights, falls back on failure, holds requests while a scaled-to-zero endpoint wakes, and meters
requests, tokens and dollars per tier and cost label for the operator's control loops.

Start it with ``frugal gateway --config FILE`` or in-process with :func:`make_app`.
"""

from __future__ import annotations

import os

# BLAS threads fight the event loop for the same few cores and make the small matrix products
# of the builtin embedder several times slower; one thread is fastest here. Only effective when
# numpy is not imported yet, and an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import importlib
from typing import Any

_EXPORTS = {
    "GATEWAY": "frugal.gateway.server",
    "ConfigSource": "frugal.gateway.source",
    "GatewayConfig": "frugal.gateway.config",
    "KubeWaker": "frugal.gateway.wake",
    "load_config": "frugal.gateway.config",
    "make_app": "frugal.gateway.server",
    "run": "frugal.gateway.server",
}
__all__ = [
    "GATEWAY",
    "ConfigSource",
    "GatewayConfig",
    "KubeWaker",
    "load_config",
    "make_app",
    "run",
]


def __getattr__(name: str) -> Any:
    """Import the server on first use: ``frugal operator`` loads this package for the CLI's
    ``gateway`` command only, and the server's imports (numpy, Redis, the embedder) were 20 MB
    of the operator's memory."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
