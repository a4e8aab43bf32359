"""Deterministic answers, token counts and embeddings (the contract is in :mod:`frugal.enginesim`).

Everything here is a pure function of its arguments, so two simulators with the same seed agree
on every prompt, in any process and on any machine (hashes are blake2b, never Python's ``hash``).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterator

CHARS_PER_TOKEN = 4

# Three-letter words: a word plus its space is exactly one token under count_tokens, so an
# answer of n words counts as n tokens and streams one word per chunk. Vocabulary sizes divide
# 256, so a byte picks a word uniformly. The two lists are disjoint: a degraded answer shares no
# word with the reference, whatever measure a gateway compares answers with.
REFERENCE_WORDS = (
    "the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "had", "her", "was",
    "one", "our", "out", "day", "get", "has", "him", "his", "how", "man", "new", "now", "old",
    "see", "two", "way", "who", "boy", "did", "its", "let", "put", "say", "she", "too", "use",
    "sun", "sky", "sea", "red", "big", "map", "key", "end", "air", "art", "box", "car", "cat",
    "dog", "egg", "eye", "fun", "hat", "ice", "job", "law", "oil", "pen", "run", "top",
)  # fmt: skip
DEGRADED_WORDS = (
    "err", "umm", "hmm", "meh", "nah", "bah", "ugh", "huh", "eek", "tsk", "brr", "shh", "pff",
    "zzz", "duh", "gah", "hah", "heh", "ooh", "aah", "yep", "nop", "wut", "lol", "idk", "erm",
    "mmm", "uhh", "hrm", "bla", "foo", "baz",
)  # fmt: skip
assert len(set(REFERENCE_WORDS)) == 64
assert len(set(DEGRADED_WORDS)) == 32
assert not set(DEGRADED_WORDS) & set(REFERENCE_WORDS)


def count_tokens(text: str) -> int:
    """Approximate tokens as ceil(len(text) / 4): close for English text, and no tokenizer."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def pieces(text: str) -> list[str]:
    """The text cut into tokens, in the order they are generated (one stream chunk each)."""
    return [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]


def _key(purpose: str, seed: int, prompt: str) -> bytes:
    return f"{purpose}\0{seed}\0{prompt}".encode()


def _stream(key: bytes) -> Iterator[bytes]:
    """An endless deterministic byte stream derived from ``key``."""
    block = 0
    while True:
        yield hashlib.blake2b(key + block.to_bytes(8, "little"), digest_size=64).digest()
        block += 1


def _words(vocabulary: tuple[str, ...], key: bytes, count: int) -> str:
    words: list[str] = []
    for chunk in _stream(key):
        words.extend(vocabulary[b % len(vocabulary)] for b in chunk[: count - len(words)])
        if len(words) >= count:
            return " ".join(words)
    raise AssertionError("unreachable")  # pragma: no cover


def reference_answer(prompt: str, seed: int, tokens: int) -> str:
    """The answer a perfect model gives: a function of prompt and seed only, prefix-stable."""
    return _words(REFERENCE_WORDS, _key("answer", seed, prompt), tokens) if tokens else ""


def degraded_answer(prompt: str, seed: int, tokens: int) -> str:
    """A visibly wrong answer of the same length, sharing no word with the reference."""
    return _words(DEGRADED_WORDS, _key("degraded", seed, prompt), tokens) if tokens else ""


def draw(prompt: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by prompt and seed: the prompt's "difficulty"."""
    digest = hashlib.blake2b(_key("quality", seed, prompt), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def answers_correctly(prompt: str, seed: int, quality: float) -> bool:
    """Whether a model of this quality gets the prompt right.

    The same draw is compared with every quality, so a better simulator is right on a superset
    of the prompts a worse one is right on (as if prompts had a fixed difficulty).
    """
    return draw(prompt, seed) < quality


def generate(prompt: str, seed: int, quality: float, tokens: int) -> str:
    """The generated (non-echo) answer to ``prompt``."""
    if answers_correctly(prompt, seed, quality):
        return reference_answer(prompt, seed, tokens)
    return degraded_answer(prompt, seed, tokens)


def truncate(text: str, max_tokens: int | None) -> tuple[str, str]:
    """(text cut to ``max_tokens``, finish reason: ``length`` if it was cut, else ``stop``)."""
    if max_tokens is None or count_tokens(text) <= max_tokens:
        return text, "stop"
    return text[: max_tokens * CHARS_PER_TOKEN].rstrip(), "length"


def embedding(text: str, seed: int, dim: int) -> list[float]:
    """A unit vector fixed by text and seed (no meaning: equal texts give equal vectors)."""
    values: list[float] = []
    for chunk in _stream(_key("embedding", seed, text)):
        values.extend(x / 2**31 - 1.0 for x in struct.unpack("<16I", chunk))
        if len(values) >= dim:
            break
    values = values[:dim]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]
