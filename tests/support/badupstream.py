"""A real, misbehaving OpenAI-compatible upstream for fault tests of the gateway.

One aiohttp server on a loopback port; the first path segment picks the misbehaviour, so one
server can stand behind many tiers (``url("hang")`` is a tier's base URL, and the gateway posts
to ``/hang/v1/chat/completions``):

- ``hang``         accepts the request and never answers;
- ``stall``        starts a stream (headers and two events), then goes silent;
- ``reset``        resets the TCP connection (RST) without answering;
- ``reset-stream`` starts a stream, then resets the connection;
- ``html``         200 with an HTML page (not JSON);
- ``truncated``    200 with JSON cut off half-way (a Content-Length that matches it);
- ``json-stream``  answers a stream request with a plain JSON body (wrong content type);
- ``garbage-sse``  200 text/event-stream whose first event is not JSON;
- ``garbage-mid``  a stream whose third event (0.1 s after the first two) is not JSON;
- ``no-done``      a stream that ends without ``data: [DONE]``;
- ``cut-json``     a stream whose third event (0.1 s after the first two, the second with a
                   ``{`` in its text) is a JSON object cut off mid-string, followed by valid
                   events and ``[DONE]`` (an upstream that lost bytes yet kept on going);
- ``cut-json-brace`` the same, cut just after a nested object, so the event ends in ``}``.

``hits`` counts requests per misbehaviour; ``open`` is how many handlers are running now.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

from aiohttp import web

from frugal.gateway.testing import free_port

MODES = (
    "hang",
    "stall",
    "reset",
    "reset-stream",
    "html",
    "truncated",
    "json-stream",
    "garbage-sse",
    "garbage-mid",
    "no-done",
    "cut-json",
    "cut-json-brace",
)

CUT = {
    "cut-json": b'data: {"id": "chatcmpl-bad", "choices": [{"index": 0, "delta": {"content": "oops',
    "cut-json-brace": b'data: {"id": "chatcmpl-bad", "choices": [{"index": 0, "delta": {}',
}
"""The cut-short events: the second ends in a closing brace, as a cut right after a nested
object does."""


def chunk(text: str, model: str = "bad") -> bytes:
    data = {
        "id": "chatcmpl-bad",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return f"data: {json.dumps(data)}\n\n".encode()


def reset(request: web.Request) -> None:
    """Close the connection with an RST (SO_LINGER 0), as a crashed peer or a middlebox does."""
    transport = request.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class BadUpstream:
    """The server; start() it, use url(mode) as tiers' base URLs, stop() it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hits: dict[str, int] = {}
        self.open = 0
        self._runner: web.AppRunner | None = None

    def url(self, mode: str) -> str:
        assert mode in MODES
        return f"http://127.0.0.1:{self.port}/{mode}"

    async def start(self) -> BadUpstream:
        app = web.Application()
        app.router.add_post("/{mode}/v1/{kind:.*}", self._handle)
        app.router.add_get("/{mode}/health", self._health)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _stream(self, request: web.Request, events: list[bytes]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event in events:
            await resp.write(event)
        return resp

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        self.hits[mode] = self.hits.get(mode, 0) + 1
        self.open += 1
        try:
            await request.read()
            return await self._misbehave(request, mode)
        finally:
            self.open -= 1

    async def _misbehave(self, request: web.Request, mode: str) -> Any:
        if mode == "hang":
            await asyncio.Event().wait()
        if mode == "stall":
            await self._stream(request, [chunk("Hello"), chunk(" there")])
            await asyncio.Event().wait()
        if mode == "reset":
            reset(request)
            await asyncio.Event().wait()  # cancelled when the connection goes
        if mode == "reset-stream":
            await self._stream(request, [chunk("Hello"), chunk(" there")])
            await asyncio.sleep(0.05)
            reset(request)
            await asyncio.Event().wait()
        if mode == "html":
            return web.Response(text="<html><body>502 Bad Gateway</body></html>", status=200)
        if mode == "truncated":
            return web.Response(
                body=b'{"id": "chatcmpl-bad", "choices": [{"index": 0, "mess',
                content_type="application/json",
            )
        if mode == "json-stream":
            return web.json_response({"id": "chatcmpl-bad", "choices": []})
        if mode == "garbage-sse":
            return await self._stream(request, [b"data: <html>oops</html>\n\n"])
        if mode == "garbage-mid":
            resp = await self._stream(request, [chunk("Hello"), chunk(" there")])
            await asyncio.sleep(0.1)
            await resp.write(b"data: <html>oops</html>\n\n" + chunk("!"))
            return resp
        if mode == "no-done":
            return await self._stream(request, [chunk("Hello"), chunk(" there")])
        if mode in CUT:
            resp = await self._stream(request, [chunk("Hello"), chunk(" {")])
            await asyncio.sleep(0.1)
            await resp.write(CUT[mode] + b"\n\n" + chunk("oops") + b"data: [DONE]\n\n")
            return resp
        raise web.HTTPNotFound
