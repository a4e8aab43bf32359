"""A harness for running the gateway against real components in one process (tests, demos).

:class:`Sims` starts engine simulators on loopback ports (each a real aiohttp server speaking
vLLM's API); :func:`config` builds a GatewayConfig from plain dicts; :class:`RedisServer` runs a
throwaway ``redis-server`` without persistence. Nothing here is used when serving.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler
from prometheus_client.parser import text_string_to_metric_families

from frugal.enginesim.config import SimConfig
from frugal.enginesim.engine import Engine
from frugal.enginesim.server import ENGINE
from frugal.enginesim.server import make_app as sim_app
from frugal.gateway.config import GatewayConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sims:
    """Engine simulators on loopback, by name; each can be stopped and started on its port."""

    def __init__(self) -> None:
        self.runners: dict[str, web.AppRunner] = {}
        self.ports: dict[str, int] = {}
        self.configs: dict[str, SimConfig] = {}
        self.calls: dict[str, int] = {}
        """POSTs to /v1/* each simulator received (model calls, shadow calls included)."""

    def engine(self, name: str) -> Engine:
        return self.runners[name].app[ENGINE]

    def _counter(self, name: str) -> Callable[..., Any]:
        @web.middleware
        async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.method == "POST" and request.path.startswith("/v1/"):
                self.calls[name] = self.calls.get(name, 0) + 1
            return await handler(request)

        return count

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    async def start(self, name: str, config: SimConfig | None = None, **knobs: Any) -> str:
        """Start (or restart on its old port) simulator ``name``; returns its base URL."""
        config = config or self.configs.get(name) or SimConfig(**{"model": name, **knobs})
        self.configs[name] = config
        port = self.ports.get(name) or free_port()
        app = sim_app(config)
        app.middlewares.insert(0, self._counter(name))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.runners[name], self.ports[name] = runner, port
        return self.url(name)

    def reserve(self, name: str, config: SimConfig | None = None, **knobs: Any) -> str:
        """A port for a simulator that is not running yet (an endpoint at zero)."""
        self.configs[name] = config or SimConfig(**{"model": name, **knobs})
        self.ports[name] = free_port()
        return self.url(name)

    async def stop(self, name: str) -> None:
        runner = self.runners.pop(name, None)
        if runner is not None:
            await runner.cleanup()

    async def close(self) -> None:
        for name in list(self.runners):
            await self.stop(name)


@contextlib.asynccontextmanager
async def sims() -> AsyncIterator[Sims]:
    fleet = Sims()
    try:
        yield fleet
    finally:
        await fleet.close()


def routing_policy(
    name: str,
    model_name: str,
    tiers: list[dict[str, Any]],
    *,
    namespace: str = "default",
    status_weights: dict[str, int] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A RoutingPolicy document (tiers as {name, endpointRef: {name}, weight, ...})."""
    doc: dict[str, Any] = {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "RoutingPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"modelName": model_name, "tiers": tiers, **spec},
    }
    if status_weights is not None:
        doc["status"] = {"weights": status_weights}
    return doc


def cache_policy(
    name: str, target: str, *, kind: str = "RoutingPolicy", namespace: str = "default", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "frugal.dev/v1alpha1",
        "kind": "CachePolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"targetRef": {"kind": kind, "name": target}, **spec},
    }


def config(**data: Any) -> GatewayConfig:
    """A GatewayConfig from keyword arguments in the file's camelCase shape."""
    data.setdefault("auth", {"required": False})
    return GatewayConfig.model_validate(data)


@contextlib.asynccontextmanager
async def gateway(source: Any, **kwargs: Any) -> AsyncIterator[TestClient]:
    """A gateway app (see :func:`frugal.gateway.make_app`) behind a test client."""
    from frugal.gateway.server import make_app

    async with TestClient(TestServer(make_app(source, **kwargs))) as client:
        yield client


async def scrape(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The gateway's /metrics as {(sample name, labels): value}."""
    resp = await client.get("/metrics")
    text = await resp.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


class RedisServer:
    """A private redis-server on a free loopback port, no persistence; stop() removes it."""

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="frugal-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                self.binary,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.dir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn,
            ):
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer PING")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
