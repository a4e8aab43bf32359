"""The gateway's HTTP server: OpenAI's endpoints, /healthz and /metrics, on aiohttp.

    POST /v1/chat/completions   POST /v1/completions   POST /v1/embeddings   GET /v1/models
    GET /healthz                GET /metrics

Every response carries ``x-frugal-cache`` (exact, semantic or miss) and ``x-frugal-tier`` (the
tier that answered, the tier a cached answer came from, or ``none``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from frugal.gateway.config import GatewayConfig
from frugal.gateway.errors import GatewayError
from frugal.gateway.proxy import CACHE_HEADER, TIER_HEADER, Pipeline, error_response
from frugal.gateway.service import Gateway
from frugal.gateway.source import ConfigSource, as_source
from frugal.gateway.wake import WakeCallback

__all__ = ["GATEWAY", "make_app", "run"]

log = logging.getLogger("frugal.gateway")

GATEWAY = web.AppKey("gateway", Gateway)
"""The app's :class:`Gateway` (tests reach its state, e.g. ``reload()``, through this)."""
_PIPELINE = web.AppKey("pipeline", Pipeline)


def make_app(
    config_source: ConfigSource | GatewayConfig | Path | str,
    *,
    rng: random.Random | None = None,
    wake: WakeCallback | None = None,
    clock: Callable[[], float] = time.monotonic,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """The gateway as an aiohttp application.

    ``config_source`` is a config file path (watched and reloaded), a :class:`GatewayConfig`, or
    a :class:`ConfigSource`. ``rng`` fixes tier choice and sampling; ``wake`` replaces the wake
    callback (by default none, or the Kubernetes one when the config enables it). The config is
    validated here, so a broken file fails before anything listens.
    """
    gateway = Gateway(as_source(config_source), rng=rng, wake=wake, clock=clock, registry=registry)
    pipeline = Pipeline(gateway)
    # Bodies are read and bounded by the pipeline itself (the limit can change on reload).
    app = web.Application(middlewares=[_openai_errors], client_max_size=2**40)
    app[GATEWAY] = gateway
    app[_PIPELINE] = pipeline
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)

    async def chat(request: web.Request) -> web.StreamResponse:
        return await pipeline.handle(request, "chat")

    async def completions(request: web.Request) -> web.StreamResponse:
        return await pipeline.handle(request, "completion")

    async def embeddings(request: web.Request) -> web.StreamResponse:
        return await pipeline.handle(request, "embedding")

    app.add_routes(
        [
            web.post("/v1/chat/completions", chat),
            web.post("/v1/completions", completions),
            web.post("/v1/embeddings", embeddings),
            web.get("/v1/models", pipeline.models),
            web.get("/healthz", _healthz),
            web.get("/metrics", _metrics),
        ]
    )
    return app


async def _start(app: web.Application) -> None:
    await app[GATEWAY].start()


async def _stop(app: web.Application) -> None:
    await app[GATEWAY].stop()


@web.middleware
async def _openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown paths and methods, and anything unexpected, answer in OpenAI's error shape;
    every answer says how it was served (``miss``/``none`` unless the handler said otherwise).

    The headers are set here rather than in an ``on_response_prepare`` signal, which cost a
    signal dispatch and a coroutine per response; the pipeline's streamed answers are prepared
    inside the handler and set both headers themselves."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(GatewayError(exc.status, exc.reason))
    except GatewayError as err:
        return error_response(err)
    except asyncio.CancelledError:
        raise
    except Exception as err:
        # The type only: a message could quote the prompt.
        log.error("unexpected %s on %s", type(err).__name__, request.path)
        return error_response(GatewayError(500, "internal gateway error"))
    if not response.prepared:
        headers = response.headers
        if CACHE_HEADER not in headers:
            headers[CACHE_HEADER] = "miss"
        if TIER_HEADER not in headers:
            headers[TIER_HEADER] = "none"
    return response


async def _healthz(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    return web.json_response({"status": "ok", "generation": gateway.generation})


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[GATEWAY].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def run(
    config_source: ConfigSource | GatewayConfig | Path | str,
    host: str = "0.0.0.0",
    port: int = 8080,
    *,
    wake: WakeCallback | None = None,
) -> None:
    """Serve until cancelled; SIGHUP reloads the configuration at once."""
    app = make_app(config_source, wake=wake)
    # handler_cancellation: a client that hangs up cancels its request (and frees the upstream
    # call and in-flight slot) instead of leaving it to run to the end unseen.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    loop = asyncio.get_running_loop()
    gateway = app[GATEWAY]
    try:
        loop.add_signal_handler(signal.SIGHUP, gateway.reload)
    except (NotImplementedError, RuntimeError, ValueError):
        log.debug("SIGHUP reload unavailable here; the file is still polled")
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        for address in runner.addresses:
            log.info("frugal gateway listening on http://%s:%s", *address[:2])
        # Everything loaded so far (modules, models, the config) lives as long as the process:
        # keep it out of the collector's scans, so a full collection (tens of ms with ~64k
        # objects) does not land in the middle of requests.
        gc.freeze()
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGHUP)
        await runner.cleanup()
