"""The semantic cache's false-hit budget against engine simulators: a tier whose answers differ
for paraphrases gets its semantic cache suspended (exact hits go on) and resumed after the
cool-off; a tier that answers paraphrases alike keeps it on."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from frugal.gateway.testing import (
    Sims,
    cache_policy,
    config,
    gateway,
    routing_policy,
    scrape,
    total,
)
from frugal.gateway.testing import sims as start_sims

FAST = {"ttft_seconds": 0.0, "tokens_per_second": 0.0, "answer_tokens": 12}
QUESTION = "How do I reset my password?"
# The same question to the hashed-ngram embedder (case and punctuation aside: cosine 1.0), each
# with its own exact key.
PARAPHRASES = [
    "how do I reset my password",
    "how do i reset my password?",
    "How do I reset my password??",
    "how do I reset my password.",
]
# The CachePolicy "chat-cache" is in front of the RoutingPolicy "chat": policy="chat".
POLICY = {"policy": "chat", "namespace": "fh"}


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": text}], **extra}


def budget_config(fleet: Sims, **limits: Any) -> Any:
    tiers = [{"name": "small", "endpointRef": {"name": "small"}, "weight": 100}]
    semantic = {"enabled": True, "embedding": {"model": "hashed-ngram"}, "maxFalseHitRate": 0.1}
    return config(
        namespace="fh",
        upstreams={
            "small": {
                "url": fleet.url("small"),
                "servedName": "small",
                "inputPricePer1M": 100.0,
                "outputPricePer1M": 100.0,
            }
        },
        policies=[
            routing_policy("chat", "chat", tiers, namespace="fh"),
            cache_policy("chat-cache", "chat", namespace="fh", semantic=semantic),
        ],
        limits={"falseHitSampleRate": 1.0, "shadowConcurrency": 64, **limits},
    )


async def post(client: Any, body: dict[str, Any]) -> tuple[str, str]:
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status == 200, await resp.text()
    if body.get("stream"):
        data = [line[6:].strip() async for line in resp.content if line.startswith(b"data: ")]
        text = "".join(
            json.loads(d)["choices"][0]["delta"].get("content") or ""
            for d in data[:-1]
            if json.loads(d)["choices"]
        )
        return resp.headers["x-frugal-cache"], text
    return resp.headers["x-frugal-cache"], (await resp.json())["choices"][0]["message"]["content"]


async def metric(client: Any, name: str) -> float:
    return total(await scrape(client), name, **POLICY)


def test_false_hits_suspend_the_semantic_cache_until_the_cool_off_ends() -> None:
    """The simulator's answer is a function of the prompt: every paraphrase gets a different
    one, so every verified semantic hit is a false hit."""
    offset = [0.0]

    def clock() -> float:  # real time, which the test can move forward past the cool-off
        return time.monotonic() + offset[0]

    async def test() -> None:
        async with start_sims() as fleet:
            await fleet.start("small", **FAST)
            cfg = budget_config(fleet, semanticSuspendSeconds=60)
            async with gateway(cfg, rng=random.Random(0), clock=clock) as client:
                assert (await post(client, ask(QUESTION)))[0] == "miss"
                assert await metric(client, "frugal_gateway_semantic_suspended") == 0
                # the same paraphrase hits semantically until enough verdicts suspend the cache
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 30
                hits = 0
                while (await post(client, ask(PARAPHRASES[0])))[0] == "semantic":
                    hits += 1
                    assert loop.time() < deadline
                assert hits >= 20  # never judged on fewer than falseHitMinSamples verdicts
                samples = await scrape(client)
                assert total(samples, "frugal_gateway_semantic_suspended", **POLICY) == 1
                verified = total(samples, "frugal_gateway_semantic_verified_total", **POLICY)
                false = total(samples, "frugal_gateway_semantic_false_hits_total", **POLICY)
                assert verified >= 20
                assert false == verified
                assert total(samples, "frugal_gateway_semantic_false_hit_rate", **POLICY) == 1.0
                # verification calls went to the tier, metered apart from its own cost
                cost = "frugal_gateway_semantic_verify_cost_usd_total"
                assert total(samples, cost, **POLICY, tier="small") > 0
                assert total(samples, "frugal_gateway_requests_total", tier="small") == 2

                # suspended: exact hits still answer, paraphrases are misses (and are stored)
                assert (await post(client, ask(QUESTION)))[0] == "exact"
                assert (await post(client, ask(PARAPHRASES[1])))[0] == "miss"
                assert (await post(client, ask(QUESTION, stream=True)))[0] == "exact"
                assert (await post(client, ask("What are your opening hours?")))[0] == "miss"
                calls = fleet.calls["small"]
                assert (await post(client, ask(PARAPHRASES[2])))[0] == "miss"
                assert fleet.calls["small"] == calls + 1  # a miss, not a verification
                assert await metric(client, "frugal_gateway_semantic_suspended") == 1

                # after the cool-off the semantic cache answers again, with a fresh window
                offset[0] += 61
                kind, _ = await post(client, ask("what are your opening hours"))
                assert kind == "semantic"  # an entry stored while suspended
                samples = await scrape(client)
                assert total(samples, "frugal_gateway_semantic_suspended", **POLICY) == 0
                assert (await post(client, ask(PARAPHRASES[3])))[0] == "semantic"
                assert (await post(client, ask(QUESTION)))[0] == "exact"

    run(test)


def test_consistent_answers_keep_the_semantic_cache_on() -> None:
    """An echoing simulator answers a paraphrase with the same words (case aside): every
    verified hit agrees with the cached answer."""

    async def test() -> None:
        async with start_sims() as fleet:
            await fleet.start("small", echo=True, **FAST)
            cfg = budget_config(fleet, semanticSuspendSeconds=600)
            async with gateway(cfg, rng=random.Random(0)) as client:
                _, answer = await post(client, ask(QUESTION))
                for i in range(40):
                    body = ask(PARAPHRASES[i % len(PARAPHRASES)], stream=i % 2 == 1)
                    assert await post(client, body) == ("semantic", answer)
                deadline = asyncio.get_running_loop().time() + 30
                while await metric(client, "frugal_gateway_semantic_verified_total") < 40:
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.05)
                samples = await scrape(client)
                assert total(samples, "frugal_gateway_semantic_false_hits_total", **POLICY) == 0
                assert total(samples, "frugal_gateway_semantic_false_hit_rate", **POLICY) == 0
                assert total(samples, "frugal_gateway_semantic_suspended", **POLICY) == 0
                assert (await post(client, ask(PARAPHRASES[0])))[0] == "semantic"

    run(test)


def test_no_verification_without_a_sample_rate() -> None:
    async def test() -> None:
        async with start_sims() as fleet:
            await fleet.start("small", **FAST)
            cfg = budget_config(fleet, falseHitSampleRate=0)
            async with gateway(cfg) as client:
                assert (await post(client, ask(QUESTION)))[0] == "miss"
                for text in PARAPHRASES * 8:
                    assert (await post(client, ask(text)))[0] == "semantic"
                assert fleet.calls["small"] == 1
                assert await metric(client, "frugal_gateway_semantic_verified_total") == 0
                assert await metric(client, "frugal_gateway_semantic_suspended") == 0

    run(test)
