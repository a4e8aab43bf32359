"""Pure cache decisions: what may be cached, the exact key, the semantic query and context.

The exact key hashes everything that can change an answer — the model name the client called,
the messages (whitespace-normalised), and the sampling parameters — and nothing that cannot
(``stream``, ``user``, ``stream_options``), so a streamed and a plain request share an entry.

A semantic hit compares only the *question*: the last user message (or the prompt). Everything
else — system prompt, earlier turns, parameters, model — goes into a context hash that must be
equal, so a paraphrase is only ever answered within the same conversation setup.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from frugal.gateway.classify import message_text

ANSWER_PARAMS = (
    "temperature", "top_p", "top_k", "min_p", "max_tokens", "max_completion_tokens", "n",
    "stop", "seed", "presence_penalty", "frequency_penalty", "repetition_penalty",
    "logit_bias", "logprobs", "top_logprobs", "response_format", "suffix", "echo", "best_of",
    "tools", "tool_choice", "functions", "function_call", "guided_json", "guided_regex",
    "guided_choice", "reasoning_effort",
)  # fmt: skip
"""Request fields that can change an answer; the others (stream, user, ...) cannot."""


@dataclass(frozen=True)
class Exclusion:
    """Compiled ``CachePolicy.spec.exclude``."""

    with_tools: bool
    temperature_above: float | None
    patterns: tuple[re.Pattern[str], ...]


def _normalise_text(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _messages(body: dict[str, Any]) -> list[tuple[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [
        (str(m.get("role", "")), _normalise_text(message_text(m)))
        for m in messages
        if isinstance(m, dict)
    ]


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = "\n".join(p for p in prompt if isinstance(p, str))
    return _normalise_text(prompt) if isinstance(prompt, str) else ""


def _params(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in ANSWER_PARAMS if body.get(k) is not None}


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def excluded(rule: Exclusion, body: dict[str, Any], prompt: str) -> str | None:
    """Why a request must bypass the cache, or None when it may use it."""
    if rule.with_tools and (body.get("tools") or body.get("functions")):
        return "tools"
    temperature = body.get("temperature")
    if (
        rule.temperature_above is not None
        and isinstance(temperature, int | float)
        and temperature > rule.temperature_above
    ):
        return "temperature"
    if (body.get("n") or 1) != 1:
        return "n"
    if any(p.search(prompt) for p in rule.patterns):
        return "pattern"
    return None


def exact_key(model: str, kind: str, body: dict[str, Any]) -> str:
    content: Any = _messages(body) if kind == "chat" else _prompt(body)
    return _digest({"model": model, "kind": kind, "content": content, "params": _params(body)})


def semantic_query(kind: str, body: dict[str, Any]) -> tuple[str, str] | None:
    """(question text, context digest without the embedder), or None if nothing to compare."""
    if kind == "chat":
        messages = _messages(body)
        if not messages or messages[-1][0] != "user" or not messages[-1][1]:
            return None
        return messages[-1][1], _digest({"before": messages[:-1], "params": _params(body)})
    prompt = _prompt(body)
    return (prompt, _digest({"params": _params(body)})) if prompt else None


def context_digest(model: str, kind: str, context: str, embedder: str) -> str:
    """The semantic context: entries only match under the same model, kind and embedder."""
    return _digest([model, kind, context, embedder])
