"""The simulator's HTTP server: vLLM's OpenAI endpoints, /health, /metrics and /sim/config.

Endpoints (the behaviour contract is in :mod:`frugal.enginesim`)::

    POST /v1/chat/completions   POST /v1/completions   (``stream: true`` → Server-Sent Events)
    POST /v1/embeddings         GET /v1/models         GET /version
    GET /health                 GET /metrics           GET, PUT /sim/config
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import struct
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from frugal.api.vllm import VLLM_RELEASE
from frugal.enginesim import answers, protocol
from frugal.enginesim.config import SimConfig
from frugal.enginesim.engine import Engine
from frugal.enginesim.protocol import ApiError, Generation, Ids

__all__ = ["ENGINE", "SimConfig", "make_app", "run"]

log = logging.getLogger(__name__)

ENGINE = web.AppKey("engine", Engine)
"""The app's :class:`~frugal.enginesim.engine.Engine` (tests read its state through this)."""


def make_app(config: SimConfig) -> web.Application:
    """A fresh simulator (own engine, own metrics registry) as an aiohttp application."""
    app = web.Application(middlewares=[_openai_errors])
    app[ENGINE] = Engine(config)
    app.on_startup.append(_start)
    app.add_routes(
        [
            web.post("/v1/chat/completions", _chat),
            web.post("/v1/completions", _completions),
            web.post("/v1/embeddings", _embeddings),
            web.get("/v1/models", _models),
            web.get("/version", _version),
            web.get("/health", _health),
            web.get("/metrics", _metrics),
            web.get("/sim/config", _get_config),
            web.put("/sim/config", _put_config),
        ]
    )
    return app


async def run(config: SimConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until cancelled. Logs the URL (with the real port when ``port`` is 0)."""
    runner = web.AppRunner(make_app(config), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        for address in runner.addresses:
            log.info("enginesim serving %s on http://%s:%s", config.model, *address[:2])
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


async def _start(app: web.Application) -> None:
    app[ENGINE].start()


@web.middleware
async def _openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return web.json_response(error.body(), status=error.status)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as error:
        raise ApiError(400, f"invalid JSON body: {error}") from error
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def _ready(engine: Engine) -> None:
    """vLLM refuses work while loading or after its engine died; so does the simulator."""
    if engine.loading:
        raise ApiError(503, "the engine is loading the model", "ServiceUnavailableError")
    if not engine.config.healthy:
        raise ApiError(503, "the engine is unhealthy", "ServiceUnavailableError")


def _fail(engine: Engine) -> None:
    if engine.roll_failure():
        raise ApiError(500, "simulated engine failure", "InternalServerError")


def _answer(gen: Generation, config: SimConfig) -> tuple[str, str]:
    """(answer text, finish reason), fixed at arrival by the knobs in force then."""
    if config.echo:
        text = gen.echo_text
    else:
        text = answers.generate(gen.prompt, config.seed, config.quality, config.answer_tokens)
    return answers.truncate(text, gen.max_tokens)


async def _chat(request: web.Request) -> web.StreamResponse:
    return await _generate(request, chat=True)


async def _completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, chat=False)


async def _generate(request: web.Request, *, chat: bool) -> web.StreamResponse:
    engine = request.app[ENGINE]
    body = await _json(request)
    _ready(engine)
    protocol.check_model(body, engine.config.model)
    gen = protocol.parse_chat(body) if chat else protocol.parse_completion(body)
    _fail(engine)
    text, finish = _answer(gen, engine.config)
    ids = Ids.new("chatcmpl" if chat else "cmpl", engine.config.model)
    if gen.stream:
        return await _stream(request, engine, gen, ids=ids, text=text, finish=finish, chat=chat)
    async with engine.request(gen.prompt) as run_:
        await run_.prefill()
        for _ in answers.pieces(text):
            await run_.emit()
        run_.finish(finish)
    counts = protocol.usage(run_.prompt_tokens, run_.generated)
    return web.json_response(protocol.completion(ids, text, finish, counts, chat=chat))


async def _send(response: web.StreamResponse, data: dict[str, Any] | str) -> None:
    """Write one event; aiohttp hands it to the socket at once (chunked, no buffering)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    await response.write(f"data: {text}\n\n".encode())


async def _stream(
    request: web.Request,
    engine: Engine,
    gen: Generation,
    *,
    ids: Ids,
    text: str,
    finish: str,
    chat: bool,
) -> web.StreamResponse:
    """Server-Sent Events, one chunk per token as it is generated, then ``[DONE]``."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    tokens = answers.pieces(text) or [""]
    shape = {"chat": chat, "include_usage": gen.include_usage}
    try:
        async with engine.request(gen.prompt) as run_:
            await run_.prefill()
            if chat:
                await _send(response, protocol.chunk(ids, "", None, role=True, **shape))
            for i, piece in enumerate(tokens):
                if piece:
                    await run_.emit()
                last = i == len(tokens) - 1
                await _send(response, protocol.chunk(ids, piece, finish if last else None, **shape))
            run_.finish(finish)
        if gen.include_usage:
            counts = protocol.usage(run_.prompt_tokens, run_.generated)
            await _send(response, protocol.usage_chunk(ids, counts, chat=chat))
        await _send(response, "[DONE]")
        await response.write_eof()
    except ConnectionResetError:
        log.debug("client left %s; counted as aborted", ids.id)
    return response


async def _embeddings(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    body = await _json(request)
    _ready(engine)
    protocol.check_model(body, engine.config.model)
    inputs = protocol.parse_embedding_inputs(body)
    dim = body.get("dimensions") or engine.config.embedding_dim
    if not isinstance(dim, int) or dim < 1:
        raise ApiError(400, "dimensions must be a positive integer")
    encoding = body.get("encoding_format") or "float"
    if encoding not in {"float", "base64"}:
        raise ApiError(400, "encoding_format must be float or base64")
    _fail(engine)
    tokens = sum(n for _, n in inputs)
    async with engine.request("\n".join(text for text, _ in inputs), tokens) as run_:
        await run_.prefill()
        run_.finish("stop")
    seed = engine.config.seed
    vectors: list[Any] = [answers.embedding(text, seed, dim) for text, _ in inputs]
    if encoding == "base64":  # what the openai client asks for by default: float32, little end
        vectors = [base64.b64encode(struct.pack(f"<{dim}f", *v)).decode() for v in vectors]
    ids = Ids.new("embd", engine.config.model)
    return web.json_response(protocol.embeddings(ids, vectors, tokens))


async def _models(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    _ready(engine)
    return web.json_response(protocol.models(engine.config.model, int(engine.started_wall)))


async def _version(request: web.Request) -> web.Response:
    return web.json_response({"version": VLLM_RELEASE})


async def _health(request: web.Request) -> web.Response:
    """200 when serving; 503 while loading or when set unhealthy (what probes look at)."""
    engine = request.app[ENGINE]
    if engine.loading:
        return web.Response(status=503, text="loading")
    if not engine.config.healthy:
        return web.Response(status=503, text="unhealthy")
    return web.Response(status=200)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[ENGINE].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _get_config(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE].config.model_dump())


async def _put_config(request: web.Request) -> web.Response:
    """Change some knobs: the body holds only the fields to change; 400 if any is invalid."""
    engine = request.app[ENGINE]
    patch = await _json(request)
    try:
        config = engine.config.updated(patch)
    except ValidationError as error:
        raise ApiError(400, str(error)) from error
    await engine.reconfigure(config)
    log.info("enginesim reconfigured: %s", patch)
    return web.json_response(config.model_dump())
