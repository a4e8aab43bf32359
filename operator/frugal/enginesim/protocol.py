"""OpenAI request parsing and response shapes, as vLLM's OpenAI server writes them.

Pure functions of JSON-like data. Sampling parameters (temperature, top_p, n, stop, ...) are
accepted and ignored: the simulator's answers are deterministic.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from frugal.enginesim.answers import count_tokens


class ApiError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

    def __init__(self, status: int, message: str, kind: str = "BadRequestError") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind

    def body(self) -> dict[str, Any]:
        return {
            "error": {"message": str(self), "type": self.kind, "param": None, "code": self.status}
        }


@dataclass(frozen=True)
class Generation:
    """A chat or text completion request, reduced to what the simulator uses."""

    prompt: str
    """The text the engine prefills (chat messages rendered one per line as ``role: content``)."""
    echo_text: str
    """The answer in echo mode: the last user message, or the prompt."""
    max_tokens: int | None
    stream: bool
    include_usage: bool


@dataclass(frozen=True)
class Ids:
    """What every response and chunk of one request repeats."""

    id: str
    model: str
    created: int

    @staticmethod
    def new(prefix: str, model: str) -> Ids:
        return Ids(f"{prefix}-{uuid.uuid4().hex}", model, int(time.time()))


def check_model(body: dict[str, Any], served: str) -> None:
    """vLLM answers 404 for a model it does not serve; no model means the served one."""
    model = body.get("model")
    if model is not None and model != served:
        raise ApiError(404, f"The model `{model}` does not exist.", "NotFoundError")


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    raise ApiError(400, "message content must be a string or a list of content parts")


def _max_tokens(body: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ApiError(400, f"{key} must be a positive integer")
        return value
    return None


def _streaming(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = bool(body.get("stream", False))
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "stream_options must be an object")
    return stream, stream and bool(options.get("include_usage", False))


def parse_chat(body: dict[str, Any]) -> Generation:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise ApiError(400, "every message needs a role")
    prompt = "\n".join(f"{m['role']}: {_content(m)}" for m in messages)
    users = [_content(m) for m in messages if m["role"] == "user"]
    stream, include_usage = _streaming(body)
    return Generation(
        prompt=prompt,
        echo_text=users[-1] if users else "",
        max_tokens=_max_tokens(body, "max_completion_tokens", "max_tokens"),
        stream=stream,
        include_usage=include_usage,
    )


def parse_completion(body: dict[str, Any]) -> Generation:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt must be a string (the simulator serves one prompt a request)")
    stream, include_usage = _streaming(body)
    return Generation(prompt, prompt, _max_tokens(body, "max_tokens"), stream, include_usage)


def parse_embedding_inputs(body: dict[str, Any]) -> list[tuple[str, int]]:
    """(text, tokens) per input; token-id arrays are hashed as text and counted as given."""
    raw = body.get("input")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "input must be a string, a list of strings or token arrays")
    inputs = []
    for item in raw:
        if isinstance(item, str):
            inputs.append((item, count_tokens(item)))
        elif isinstance(item, list) and all(isinstance(t, int) for t in item):
            inputs.append((",".join(map(str, item)), len(item)))
        else:
            raise ApiError(400, "input must be a string, a list of strings or token arrays")
    return inputs


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


def _choice(text: str, finish_reason: str | None, *, chat: bool, delta: bool) -> dict[str, Any]:
    if not chat:
        body: dict[str, Any] = {"index": 0, "text": text}
    elif delta:
        body = {"index": 0, "delta": {"content": text}}
    else:
        body = {"index": 0, "message": {"role": "assistant", "content": text}}
    return body | {"logprobs": None, "finish_reason": finish_reason, "stop_reason": None}


def completion(
    ids: Ids, text: str, finish_reason: str, counts: dict[str, int], *, chat: bool
) -> dict[str, Any]:
    """A whole (non-streamed) chat.completion or text_completion."""
    return {
        "id": ids.id,
        "object": "chat.completion" if chat else "text_completion",
        "created": ids.created,
        "model": ids.model,
        "choices": [_choice(text, finish_reason, chat=chat, delta=False)],
        "usage": counts,
    }


def chunk(
    ids: Ids,
    text: str,
    finish_reason: str | None,
    *,
    chat: bool,
    include_usage: bool,
    role: bool = False,
) -> dict[str, Any]:
    """One streamed chunk; ``role`` makes the chat stream's opening ``{"role": "assistant"}``."""
    choice = _choice(text, finish_reason, chat=chat, delta=True)
    if role:
        choice["delta"] = {"role": "assistant", "content": ""}
    body = {
        "id": ids.id,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": ids.created,
        "model": ids.model,
        "choices": [choice],
    }
    return (body | {"usage": None}) if include_usage else body


def usage_chunk(ids: Ids, counts: dict[str, int], *, chat: bool) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage`` is set: no choices, only usage."""
    return {
        "id": ids.id,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": ids.created,
        "model": ids.model,
        "choices": [],
        "usage": counts,
    }


def embeddings(ids: Ids, vectors: list[Any], prompt_tokens: int) -> dict[str, Any]:
    return {
        "id": ids.id,
        "object": "list",
        "created": ids.created,
        "model": ids.model,
        "data": [
            {"index": i, "object": "embedding", "embedding": vector}
            for i, vector in enumerate(vectors)
        ],
        "usage": usage(prompt_tokens, 0),
    }


def models(model: str, created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {
                "id": model,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": model,
                "parent": None,
            }
        ],
    }
