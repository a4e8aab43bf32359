"""Talking to upstreams: one POST, failures sorted by what the router should do about them,
and Server-Sent Events cut into whole events as they arrive.

A failure is one of: ``scaledToZero`` (connection refused by an in-cluster endpoint: its Service
has no ready pods — hold and wake), ``overload`` (429, 503, or the in-flight limit), ``error``
(5xx, timeouts, broken connections) and ``client`` (the request itself is wrong: 400, 404, 422 —
another tier would refuse it too, so it is never retried).
"""

from __future__ import annotations

import errno
import json
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from frugal.gateway.errors import GatewayError, from_upstream

RETRYABLE_CLIENT = {401, 403, 408}
"""4xx answers that say nothing about the request (the gateway's key, a slow upstream)."""


_JSON = {"Content-Type": "application/json"}
"""The headers of a call without a key (aiohttp copies them, so one dict serves every call)."""


class UpstreamError(Exception):
    """An upstream could not answer; ``reason`` says whether another tier may try."""

    def __init__(self, reason: str, error: GatewayError) -> None:
        super().__init__(f"{reason}: {error}")
        self.reason = reason
        self.error = error


def _refused(err: aiohttp.ClientConnectorError) -> bool:
    os_error = getattr(err, "os_error", None)
    return isinstance(os_error, ConnectionRefusedError) or (
        getattr(os_error, "errno", None) == errno.ECONNREFUSED
    )


def classify_status(status: int) -> str:
    if status in {429, 503}:
        return "overload"
    if status >= 500 or status in RETRYABLE_CLIENT:
        return "error"
    return "client"


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    *,
    tier: str,
    api_key: str | None,
    timeout: aiohttp.ClientTimeout,
    refused_means_asleep: bool,
) -> aiohttp.ClientResponse:
    """POST and return the open 200 response (the caller releases it), or raise UpstreamError."""
    headers = {**_JSON, "Authorization": f"Bearer {api_key}"} if api_key else _JSON
    data = json.dumps(body, separators=(",", ":")).encode()
    try:
        resp = await session.post(url, data=data, headers=headers, timeout=timeout)
    except aiohttp.ClientConnectorError as err:
        if refused_means_asleep and _refused(err):
            raise UpstreamError(
                "scaledToZero", GatewayError(503, f"tier {tier} is not accepting connections")
            ) from err
        raise UpstreamError("error", GatewayError(502, f"tier {tier} is unreachable")) from err
    except TimeoutError as err:
        raise UpstreamError("error", GatewayError(504, f"tier {tier} timed out")) from err
    except aiohttp.ClientError as err:
        raise UpstreamError(
            "error", GatewayError(502, f"tier {tier} failed: {type(err).__name__}")
        ) from err
    if resp.status == 200:
        return resp
    try:
        payload = await resp.read()
    except (aiohttp.ClientError, TimeoutError):
        payload = b""
    finally:
        resp.release()
    error = from_upstream(resp.status, payload, tier)
    retry_after = resp.headers.get("Retry-After")
    if retry_after and retry_after.isdigit():
        error.retry_after = float(retry_after)
    raise UpstreamError(classify_status(resp.status), error)


class SseParser:
    """Cuts a byte stream into whole SSE events (each ending in a blank line), as they come."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._buffer + chunk if self._buffer else chunk
        carry = b""
        if data.endswith(b"\r"):  # maybe half of a CRLF: decide when the next chunk comes
            data, carry = data[:-1], b"\r"
        parts = data.replace(b"\r\n", b"\n").split(b"\n\n")
        self._buffer = parts.pop() + carry
        return [part + b"\n\n" for part in parts]

    def rest(self) -> bytes:
        """Whatever followed the last blank line (a stream cut short)."""
        rest, self._buffer = self._buffer, b""
        return rest


def event_data(event: bytes) -> str | None:
    """The ``data:`` payload of one event (lines joined), or None for comments/other fields."""
    lines = [
        line[5:].lstrip()
        for line in event.decode("utf-8", "replace").split("\n")
        if line.startswith("data:")
    ]
    return "\n".join(lines) if lines else None


def looks_whole(event: bytes) -> bool:
    """A cheap guard for an event holding one JSON object: it ends in ``}`` and its braces
    pair up. A cut-short object fails it (almost surely: only braces in its strings could make
    up for the missing ones); so does a whole one with a lone brace in its text, which is then
    decoded to tell — a few µs, and only for such events."""
    return event.endswith(b"}\n\n") and event.count(b"{") == event.count(b"}")


_USAGE = re.compile(rb'"usage"\s*:\s*\{')
"""An event carrying a usage object (not ``"usage": null``)."""


@dataclass
class StreamAccumulator:
    """What a stream said, collected as it passes: the answer text (up to ``cap`` characters),
    the finish reason and the usage, for metering, caching and shadow comparison.

    With ``collect`` off (nothing will cache or compare the text) only the events that matter
    for metering are decoded — ``[DONE]`` and the one carrying ``usage`` — and the others are
    counted: decoding every event cost about 8 µs each, most of a stream's relay. An object
    that does not look whole (:func:`looks_whole`, ~0.4 µs) is decoded all the same, so one
    cut short mid-stream is caught as ``broken`` rather than passed on to fail in the client.
    """

    chat: bool
    cap: int
    collect: bool = True
    text: list[str] = field(default_factory=list)
    chars: int = 0
    total_chars: int = 0
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    model: str | None = None
    truncated: bool = False
    done: bool = False
    events: int = 0
    """Data events seen (about one token each: the estimate when usage is missing)."""
    broken: bool = False
    """An event whose data is neither JSON nor ``[DONE]``: the upstream speaks garbage."""

    def observe_event(self, event: bytes, *, full: bool = False) -> bool:
        """Record one raw event (decoded in ``full`` when asked); True when it is the
        usage-only chunk (no choices)."""
        if full or self.collect or _USAGE.search(event) is not None:
            data = event_data(event)
            if data is not None and data.strip() not in ("[DONE]", ""):
                self.events += 1
                if data.lstrip()[:1] not in ("{", "["):
                    self.broken = True
            return self.observe(data)
        start = event.find(b"data:")
        if start < 0:
            return False  # a comment or another field
        head = event[start + 5 : start + 16].lstrip()
        if head.startswith(b"[DONE]"):
            self.done = True
        elif head.startswith(b"{"):
            self.events += 1
            if not looks_whole(event):
                return self.observe(event_data(event))  # cut short, or braces in its text
        else:
            self.broken = True
        return False

    @property
    def out_chars(self) -> int:
        """Answer characters for a token estimate: counted, or ~4 per event when not collected."""
        return self.total_chars if self.collect else 4 * self.events

    def observe(self, data: str | None) -> bool:
        """Record one event's data; True when it is the usage-only chunk (no choices)."""
        if data is None:
            return False
        if data.strip() == "[DONE]":
            self.done = True
            return False
        try:
            chunk = json.loads(data)
        except ValueError:
            self.broken = True
            return False
        if not isinstance(chunk, dict):
            self.broken = True
            return False
        self.model = self.model or chunk.get("model")
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        if not choices:
            return isinstance(chunk.get("usage"), dict)
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            piece = (choice.get("delta") or {}).get("content") if self.chat else choice.get("text")
            if isinstance(piece, str) and piece:
                self._add(piece)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return False

    def _add(self, piece: str) -> None:
        self.total_chars += len(piece)
        if self.truncated:
            return
        if self.chars + len(piece) > self.cap:
            self.truncated = True
            return
        self.text.append(piece)
        self.chars += len(piece)

    @property
    def answer(self) -> str | None:
        """The whole answer, or None if it was longer than the cap."""
        return None if self.truncated else "".join(self.text)


def answer_text(data: dict[str, Any], chat: bool) -> str | None:
    """The first choice's text of a non-streamed completion."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    if chat:
        message = choices[0].get("message") or {}
        content = message.get("content") if isinstance(message, dict) else None
        return content if isinstance(content, str) else None
    text = choices[0].get("text")
    return text if isinstance(text, str) else None
