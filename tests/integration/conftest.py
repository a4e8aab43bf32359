"""Fixtures shared by the gateway's cache tests: a real redis-server, and both cache stores."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from frugal.gateway.testing import RedisServer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The cache store section of a gateway config: in-process, or a real Redis."""
    if request.param == "memory":
        return {"type": "memory"}
    server = request.getfixturevalue("redis_server")
    return {"type": "redis", "redis": {"url": server.url}}
