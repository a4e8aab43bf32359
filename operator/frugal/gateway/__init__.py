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

from frugal.gateway.config import GatewayConfig, load_config
from frugal.gateway.server import GATEWAY, make_app, run
from frugal.gateway.source import ConfigSource
from frugal.gateway.wake import KubeWaker

__all__ = [
    "GATEWAY",
    "ConfigSource",
    "GatewayConfig",
    "KubeWaker",
    "load_config",
    "make_app",
    "run",
]
