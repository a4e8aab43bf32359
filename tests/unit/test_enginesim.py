"""The engine simulator: OpenAI shapes, streaming, quality contract, metrics, knobs."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from frugal.enginesim import answers
from frugal.enginesim.engine import BLOCK_TOKENS, PrefixCache
from frugal.enginesim.server import ENGINE, SimConfig, make_app

MODEL = "sim-8b"
METRICS = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:request_success_total",
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    "vllm:e2e_request_latency_seconds_count",
    "vllm:time_to_first_token_seconds_count",
)


def serve(test: Callable[[TestClient], Awaitable[Any]], **knobs: Any) -> Any:
    """Run ``test`` against a fresh simulator; unpaced unless the test sets timing knobs."""

    async def main() -> Any:
        config = SimConfig(**{"model": MODEL, "ttft_seconds": 0, "tokens_per_second": 0, **knobs})
        async with TestClient(TestServer(make_app(config))) as client:
            return await test(client)

    return asyncio.run(main())


def chat_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **extra}


def chat_prompt(text: str) -> str:
    """The prompt the simulator derives from a one-message chat (see frugal.enginesim)."""
    return f"user: {text}"


async def chat(client: TestClient, text: str, **extra: Any) -> dict[str, Any]:
    resp = await client.post("/v1/chat/completions", json=chat_body(text, **extra))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def next_event(resp: ClientResponse) -> Any:
    """The next Server-Sent Event's data (parsed JSON, or the string ``[DONE]``)."""
    while True:
        line = (await resp.content.readline()).decode()
        assert line, "stream ended without [DONE]"
        if line.startswith("data: "):
            data = line.removeprefix("data: ").strip()
            return data if data == "[DONE]" else json.loads(data)


async def rest_of_stream(resp: ClientResponse) -> list[Any]:
    events = []
    while (event := await next_event(resp)) != "[DONE]":
        events.append(event)
    return events


async def scrape(client: TestClient) -> list[Any]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    return [s for f in text_string_to_metric_families(await resp.text()) for s in f.samples]


def value(samples: list[Any], name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


async def until(condition: Callable[[], bool]) -> None:
    """Let the server run until ``condition`` holds (bounded, so a bug fails instead of hangs)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


# Pure parts -------------------------------------------------------------------------------------


def test_tokens_are_four_characters_and_answers_are_whole_tokens() -> None:
    assert [answers.count_tokens(t) for t in ("", "a", "abcd", "abcde")] == [0, 1, 1, 2]
    assert answers.pieces("abcdefghij") == ["abcd", "efgh", "ij"]
    text = answers.reference_answer("p", 0, 10)
    assert answers.count_tokens(text) == len(answers.pieces(text)) == 10
    assert answers.reference_answer("p", 0, 25).startswith(text)
    assert answers.truncate(text, 4) == (answers.reference_answer("p", 0, 4), "length")
    assert answers.truncate(text, 10) == (text, "stop")


def test_quality_is_nested_and_degraded_answers_share_no_word() -> None:
    prompts = [f"question {i}" for i in range(300)]
    right = {q: {p for p in prompts if answers.answers_correctly(p, 7, q)} for q in (0.3, 0.8)}
    assert right[0.3] < right[0.8]
    ref = answers.reference_answer("x", 7, 50).split()
    bad = answers.degraded_answer("x", 7, 50).split()
    assert len(bad) == 50
    assert not set(ref) & set(bad)


def test_prefix_cache_hits_whole_leading_blocks_only() -> None:
    cache = PrefixCache()
    block = BLOCK_TOKENS * answers.CHARS_PER_TOKEN
    prompt = "a" * block + "b" * block + "c" * 10
    assert cache.prefill(prompt) == 0
    assert cache.prefill(prompt) == 2 * BLOCK_TOKENS
    assert cache.prefill("a" * block + "X" * block) == BLOCK_TOKENS
    assert cache.prefill("X" * block + "b" * block) == 0  # same block, different prefix


# Completions ------------------------------------------------------------------------------------


def test_chat_answer_usage_and_shape() -> None:
    async def test(client: TestClient) -> None:
        body = await chat(client, "What is the capital of France?")
        prompt = chat_prompt("What is the capital of France?")
        assert body["object"] == "chat.completion"
        assert body["model"] == MODEL
        assert body["id"].startswith("chatcmpl-")
        choice = body["choices"][0]
        assert choice["message"] == {
            "role": "assistant",
            "content": answers.reference_answer(prompt, 0, 12),
        }
        assert choice["finish_reason"] == "stop"
        assert body["usage"] == {
            "prompt_tokens": math.ceil(len(prompt) / 4),
            "completion_tokens": 12,
            "total_tokens": math.ceil(len(prompt) / 4) + 12,
        }
        cut = await chat(client, "What is the capital of France?", max_tokens=5)
        assert cut["choices"][0]["finish_reason"] == "length"
        assert cut["usage"]["completion_tokens"] == 5
        assert choice["message"]["content"].startswith(cut["choices"][0]["message"]["content"])

    serve(test, answer_tokens=12)


def test_text_completion() -> None:
    async def test(client: TestClient) -> None:
        resp = await client.post("/v1/completions", json={"prompt": "Once upon", "max_tokens": 3})
        body = await resp.json()
        assert body["object"] == "text_completion"
        assert body["choices"][0]["text"] == answers.reference_answer("Once upon", 0, 3)
        assert body["choices"][0]["finish_reason"] == "length"
        assert body["usage"]["prompt_tokens"] == 3

    serve(test)


def test_chat_stream_arrives_token_by_token() -> None:
    async def test(client: TestClient) -> None:
        engine = client.app[ENGINE]
        resp = await client.post("/v1/chat/completions", json=chat_body("tell me", stream=True))
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        opening = await next_event(resp)
        assert opening["object"] == "chat.completion.chunk"
        assert opening["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        first = await next_event(resp)
        assert first["choices"][0]["delta"]["content"]
        # At one token a second the other 39 are still being generated: the first chunk was
        # flushed on its own, not buffered until the answer was complete.
        assert not resp.content.at_eof()
        assert engine.running == 1
        assert await (await client.put("/sim/config", json={"tokens_per_second": 0})).json()
        events = [first, *await rest_of_stream(resp)]
        deltas = [e["choices"][0]["delta"]["content"] for e in events]
        assert len(deltas) == 40
        assert "".join(deltas) == answers.reference_answer(chat_prompt("tell me"), 0, 40)
        assert [e["choices"][0]["finish_reason"] for e in events] == [None] * 39 + ["stop"]
        assert all("usage" not in e for e in events)

    serve(test, tokens_per_second=1, answer_tokens=40)


def test_completion_stream_with_usage() -> None:
    async def test(client: TestClient) -> None:
        body = {"prompt": "abc", "stream": True, "stream_options": {"include_usage": True}}
        resp = await client.post("/v1/completions", json=body)
        events = await rest_of_stream(resp)
        *tokens, last = events
        assert "".join(e["choices"][0]["text"] for e in tokens) == answers.reference_answer(
            "abc", 0, 6
        )
        assert all(e["usage"] is None for e in tokens)
        assert last["choices"] == []
        assert last["usage"] == {"prompt_tokens": 1, "completion_tokens": 6, "total_tokens": 7}

    serve(test, answer_tokens=6)


def test_failure_rate_one_answers_500_openai_error() -> None:
    async def test(client: TestClient) -> None:
        for stream in (False, True):
            resp = await client.post("/v1/chat/completions", json=chat_body("hi", stream=stream))
            assert resp.status == 500
            error = (await resp.json())["error"]
            assert error["type"] == "InternalServerError"
            assert error["code"] == 500
            assert error["message"]
        await client.put("/sim/config", json={"failure_rate": 0})
        assert (await client.post("/v1/chat/completions", json=chat_body("hi"))).status == 200

    serve(test, failure_rate=1.0)


def test_failure_rate_is_a_fraction_and_repeatable() -> None:
    async def statuses(client: TestClient) -> list[int]:
        return [
            (await client.post("/v1/completions", json={"prompt": "x"})).status for _ in range(200)
        ]

    first = serve(statuses, failure_rate=0.25, seed=3)
    assert 30 <= first.count(500) <= 70
    assert serve(statuses, failure_rate=0.25, seed=3) == first


def test_echo_answers_the_last_user_message_or_prompt() -> None:
    async def test(client: TestClient) -> None:
        messages = [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second question"}]},
        ]
        resp = await client.post("/v1/chat/completions", json={"messages": messages})
        body = await resp.json()
        assert body["choices"][0]["message"]["content"] == "second question"
        assert body["usage"]["completion_tokens"] == 4
        resp = await client.post("/v1/completions", json={"prompt": "repeat me", "max_tokens": 2})
        body = await resp.json()
        assert body["choices"][0]["text"] == "repeat m"
        assert body["choices"][0]["finish_reason"] == "length"

    serve(test, echo=True)


# Quality ----------------------------------------------------------------------------------------

PROMPTS = [f"Question number {i}: what is {i} squared?" for i in range(200)]


async def answers_of(client: TestClient) -> list[str]:
    model = client.app[ENGINE].config.model
    return [
        (await chat(client, p, model=model))["choices"][0]["message"]["content"] for p in PROMPTS
    ]


def matches(quality: float, seed: int = 0) -> list[bool]:
    """What a gateway sees: a tier's answers compared with a quality-1.0 reference tier's."""
    reference = serve(answers_of, quality=1.0, seed=seed, model="reference", answer_tokens=8)
    tier = serve(answers_of, quality=quality, seed=seed, answer_tokens=8)
    return [a == b for a, b in zip(reference, tier, strict=True)]


def test_quality_one_and_zero() -> None:
    assert all(matches(1.0))
    assert not any(matches(0.0))


def test_quality_half_matches_about_half_and_is_repeatable() -> None:
    half = matches(0.5)
    assert 0.4 <= sum(half) / len(half) <= 0.6
    assert matches(0.5) == half
    assert matches(0.5, seed=1) != half


# Embeddings, models, errors ---------------------------------------------------------------------


def test_embeddings_are_deterministic_unit_vectors() -> None:
    async def embed(client: TestClient, **body: Any) -> dict[str, Any]:
        resp = await client.post("/v1/embeddings", json={"model": MODEL, **body})
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def test(client: TestClient) -> None:
        body = await embed(client, input=["hello", "world", "hello"])
        vectors = [d["embedding"] for d in body["data"]]
        assert [len(v) for v in vectors] == [48, 48, 48]
        assert vectors[0] == vectors[2] != vectors[1]
        assert math.isclose(sum(x * x for x in vectors[0]), 1.0)
        assert body["usage"]["prompt_tokens"] == 6
        packed = await embed(client, input="hello", encoding_format="base64")
        raw = base64.b64decode(packed["data"][0]["embedding"])
        assert struct.unpack("<48f", raw) == pytest.approx(vectors[0], abs=1e-6)
        assert len((await embed(client, input="hello", dimensions=8))["data"][0]["embedding"]) == 8

    serve(test, embedding_dim=48)


def test_models_version_and_request_errors() -> None:
    async def test(client: TestClient) -> None:
        models = await (await client.get("/v1/models")).json()
        assert [m["id"] for m in models["data"]] == [MODEL]
        assert (await (await client.get("/version")).json())["version"] == "0.33.0"
        wrong = await client.post("/v1/chat/completions", json={**chat_body("x"), "model": "gpt"})
        assert wrong.status == 404
        assert (await wrong.json())["error"]["type"] == "NotFoundError"
        bad = await client.post("/v1/chat/completions", data=b"{not json")
        assert bad.status == 400
        assert "error" in await bad.json()
        assert (await client.post("/v1/chat/completions", json={"messages": []})).status == 400

    serve(test)


# Metrics and scheduling -------------------------------------------------------------------------


def test_metrics_carry_vllm_names_and_move() -> None:
    long_prompt = "The same long system prompt, repeated for every request. " * 4

    async def test(client: TestClient) -> None:
        before = await scrape(client)
        for name in METRICS:
            assert any(s.name == name and s.labels["model_name"] == MODEL for s in before), name
            assert all(s.labels["engine"] == "0" for s in before if s.name == name)
        await chat(client, long_prompt)
        await chat(client, long_prompt, max_tokens=2)
        after = await scrape(client)
        prompt_tokens = 2 * answers.count_tokens(chat_prompt(long_prompt))
        assert value(after, "vllm:prompt_tokens_total", model_name=MODEL) == prompt_tokens
        assert value(after, "vllm:generation_tokens_total") == 10 + 2
        assert value(after, "vllm:request_success_total", finished_reason="stop") == 1
        assert value(after, "vllm:request_success_total", finished_reason="length") == 1
        assert value(after, "vllm:prefix_cache_queries_total") == prompt_tokens
        hits = value(after, "vllm:prefix_cache_hits_total")
        assert hits == BLOCK_TOKENS * (len(chat_prompt(long_prompt)) // (4 * BLOCK_TOKENS))
        assert value(after, "vllm:e2e_request_latency_seconds_count") == 2
        assert value(after, "vllm:time_to_first_token_seconds_count") == 2
        text = await (await client.get("/metrics")).text()
        assert 'vllm:prompt_tokens_total{engine="0",model_name="sim-8b"}' in text

    serve(test, answer_tokens=10)


def test_requests_beyond_max_num_seqs_wait() -> None:
    async def test(client: TestClient) -> None:
        engine = client.app[ENGINE]
        first = await client.post("/v1/chat/completions", json=chat_body("a", stream=True))
        await next_event(first)
        await next_event(first)  # the first token: it holds the only slot now
        second = asyncio.create_task(chat(client, "b"))
        await until(lambda: engine.waiting == 1)
        samples = await scrape(client)
        assert value(samples, "vllm:num_requests_running") == 1
        assert value(samples, "vllm:num_requests_waiting") == 1
        assert value(samples, "vllm:kv_cache_usage_perc") == 1.0
        await client.put("/sim/config", json={"max_num_seqs": 2, "tokens_per_second": 0})
        assert (await second)["usage"]["completion_tokens"] == 20
        assert len(await rest_of_stream(first)) == 19
        samples = await scrape(client)
        assert value(samples, "vllm:num_requests_running") == 0
        assert value(samples, "vllm:num_requests_waiting") == 0

    serve(test, max_num_seqs=1, tokens_per_second=1, answer_tokens=20)


def test_a_client_that_leaves_mid_stream_is_counted_as_aborted() -> None:
    async def test(client: TestClient) -> None:
        engine = client.app[ENGINE]
        resp = await client.post("/v1/completions", json={"prompt": "p", "stream": True})
        await next_event(resp)
        resp.close()
        await client.put("/sim/config", json={"tokens_per_second": 0})
        await until(lambda: engine.running == 0)
        samples = await scrape(client)
        assert value(samples, "vllm:request_success_total", finished_reason="abort") == 1
        assert value(samples, "vllm:request_success_total", finished_reason="stop") == 0

    serve(test, tokens_per_second=1, answer_tokens=50)


# Control ----------------------------------------------------------------------------------------


def test_sim_config_changes_take_effect() -> None:
    async def test(client: TestClient) -> None:
        config = await (await client.get("/sim/config")).json()
        assert config["model"] == MODEL
        assert config["quality"] == 1.0
        resp = await client.put("/sim/config", json={"model": "renamed", "echo": True})
        assert (await resp.json())["echo"] is True
        body = await chat(client, "say this", model="renamed")
        assert body["model"] == "renamed"
        assert body["choices"][0]["message"]["content"] == "say this"
        samples = await scrape(client)
        assert value(samples, "vllm:request_success_total", model_name="renamed") == 1
        assert not [s for s in samples if s.labels.get("model_name") == MODEL]
        for bad in ({"quality": 2}, {"max_num_seqs": 0}, {"no_such_knob": 1}):
            resp = await client.put("/sim/config", json=bad)
            assert resp.status == 400
            assert "error" in await resp.json()
        assert (await (await client.get("/sim/config")).json())["quality"] == 1.0

    serve(test)


def test_health_is_503_while_loading_or_unhealthy() -> None:
    async def test(client: TestClient) -> None:
        assert (await client.get("/health")).status == 503
        loading = await client.post("/v1/chat/completions", json=chat_body("x"))
        assert loading.status == 503
        assert (await loading.json())["error"]["type"] == "ServiceUnavailableError"
        assert (await client.get("/metrics")).status == 200
        await client.put("/sim/config", json={"startup_delay_seconds": 0})
        assert (await client.get("/health")).status == 200
        await client.put("/sim/config", json={"healthy": False})
        assert (await client.get("/health")).status == 503
        assert (await client.post("/v1/completions", json={"prompt": "x"})).status == 503
        await client.put("/sim/config", json={"healthy": True})
        assert (await client.get("/health")).status == 200

    serve(test, startup_delay_seconds=600)


def test_cli_builds_the_config_and_refuses_bad_knobs() -> None:
    from typer.testing import CliRunner

    from frugal.enginesim.cli import app

    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for option in ("--quality", "--max-num-seqs", "--ttft-seconds", "--echo", "--seed"):
        assert option in result.output
    assert CliRunner().invoke(app, ["--quality", "1.5"]).exit_code == 2
