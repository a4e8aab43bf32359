"""Request features and classes: which tiers a request may go to.

Pure functions of the request body. Features are cheap on purpose (no model call on the hot
path): estimated prompt tokens (characters / 4, as engines roughly count English), user turns,
whether the prompt carries source code or mathematics, and keywords. A RoutingPolicy's
``classifier.rules`` are tried in order; the heuristic type then falls back to built-in classes
(``code``, ``math``, ``long``); the embedding type to the nearest labelled example.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from frugal.api.routing import Classifier, FeatureRule

CHARS_PER_TOKEN = 4
LONG_PROMPT_TOKENS = 2000
"""The heuristic classifier's threshold for the built-in ``long`` class."""

_CODE = re.compile(
    r"```|^\s*(def|class|import|from|function|const|let|var|public|private|package|func|fn"
    r"|#include|using|SELECT|INSERT|UPDATE|CREATE)\b.*$"
    r"|\w+\([^()]*\)\s*[{;:]\s*$|=>|console\.log|System\.out|printf\(|\breturn\b.*;\s*$",
    re.MULTILINE,
)
_MATH = re.compile(
    r"\\(frac|int|sum|sqrt|lim|cdot|alpha|beta|theta|pi|infty)\b|\$[^$\n]+\$"
    r"|\b\d+(\.\d+)?\s*[-+*/^×÷=]\s*\d+(\.\d+)?\b|\b[a-z]\s*\^\s*\d|[∫∑√π≤≥≠]"
    r"|\b(integral|derivative|equation|theorem|prove|proof|polynomial|matrix|eigen\w*"
    r"|logarithm|probability|solve for)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Features:
    """What the classifier looks at; ``text`` is the whole prompt (kept only in memory)."""

    prompt_tokens: int
    turns: int
    has_code: bool
    has_math: bool
    text: str


def message_text(message: dict[str, Any]) -> str:
    """A message's text: a string, or the text parts of a content list."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return ""


def prompt_text(body: dict[str, Any], kind: str) -> str:
    """The prompt as an engine renders it (``role: content`` per line for chat)."""
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list):
            return ""
        return "\n".join(
            f"{m.get('role', '')}: {message_text(m)}" for m in messages if isinstance(m, dict)
        )
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        return "\n".join(p for p in prompt if isinstance(p, str))
    return prompt if isinstance(prompt, str) else ""


def features(body: dict[str, Any], kind: str) -> Features:
    text = prompt_text(body, kind)
    if kind == "chat":
        messages = body.get("messages") or []
        turns = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "user")
    else:
        turns = 1
    return Features(
        prompt_tokens=-(-len(text) // CHARS_PER_TOKEN),
        turns=turns,
        has_code=bool(_CODE.search(text)),
        has_math=bool(_MATH.search(text)),
        text=text,
    )


def rule_matches(rule: FeatureRule, f: Features) -> bool:
    """All conditions the rule sets hold (unset ones are ignored)."""
    checks = [
        rule.min_prompt_tokens is None or f.prompt_tokens >= rule.min_prompt_tokens,
        rule.max_prompt_tokens is None or f.prompt_tokens <= rule.max_prompt_tokens,
        rule.min_turns is None or f.turns >= rule.min_turns,
        rule.has_code is None or f.has_code == rule.has_code,
        rule.has_math is None or f.has_math == rule.has_math,
    ]
    if rule.keywords:
        lowered = f.text.lower()
        checks.append(
            any(re.search(rf"\b{re.escape(k.lower())}\b", lowered) for k in rule.keywords)
        )
    return all(checks)


def classify(
    classifier: Classifier,
    f: Features,
    nearest: Callable[[str], str | None] | None = None,
) -> str:
    """The request's class: first matching rule, then the type's own method, then the default.

    ``nearest`` is the embedding classifier's nearest-example lookup (None when unavailable).
    """
    for rule in classifier.rules:
        if rule_matches(rule, f):
            return rule.class_name
    if classifier.type == "heuristic":
        if f.has_code:
            return "code"
        if f.has_math:
            return "math"
        if f.prompt_tokens >= LONG_PROMPT_TOKENS:
            return "long"
    if classifier.type == "embedding" and nearest is not None:
        found = nearest(f.text)
        if found:
            return found
    return classifier.default_class


def allowed(match_sets: Sequence[frozenset[str]], cls: str) -> list[int]:
    """Indices of tiers that may serve ``cls``; every tier if none claims it."""
    chosen = [i for i, match in enumerate(match_sets) if not match or cls in match]
    return chosen or list(range(len(match_sets)))
