"""Cached answers written while a tier's shadow-measured quality was under its objective are not
served after the tier recovers: the real gateway against engine simulators whose quality is
turned down and up again through their /sim/config API, with the in-memory store and a real
redis-server shared by two gateway replicas."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from frugal.enginesim.answers import DEGRADED_WORDS, REFERENCE_WORDS
from frugal.gateway.distrust import Distrust
from frugal.gateway.server import GATEWAY
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
QUESTIONS = [
    "How do I reset my password?",
    "Where is my parcel right now?",
    "Can I change the delivery address?",
    "Why was my card declined at the shop?",
    "What are your opening hours on Sunday?",
    "How long does a refund take to arrive?",
    "Is there a fee for foreign transfers?",
    "How can I close my savings account?",
    "Who do I call about a stolen phone?",
    "When will the new statement be ready?",
    "Which documents prove my identity?",
    "What is the limit for cash withdrawals?",
]


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 90))


def dipping_config(fleet: Sims, namespace: str, backend: dict[str, Any], window: int) -> Any:
    """small serves everything, large is the shadow reference; every answer is compared."""
    tiers = [
        {"name": "small", "endpointRef": {"name": "small"}, "weight": 100},
        {"name": "large", "endpointRef": {"name": "large"}, "weight": 0},
    ]
    return config(
        namespace=namespace,
        upstreams={
            "small": {"url": fleet.url("small"), "servedName": "small"},
            "large": {"url": fleet.url("large"), "servedName": "large"},
        },
        policies=[
            routing_policy(
                "chat",
                "chat",
                tiers,
                namespace=namespace,
                objectives={"minQuality": 0.9},  # bar 0.88 with the default hysteresis
                shadow={"sampleRate": 1.0, "referenceTier": "large"},
            ),
            cache_policy(
                "chat-cache",
                "chat",
                namespace=namespace,
                exact={"ttl": "1h"},
                semantic={"enabled": True, "embedding": {"model": "hashed-ngram"}},
                backend=backend,
            ),
        ],
        limits={"qualityWindow": window, "shadowConcurrency": 64, "falseHitSampleRate": 0},
    )


async def set_quality(fleet: Sims, quality: float) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.put(fleet.url("small") + "/sim/config", json={"quality": quality}) as resp,
    ):
        assert resp.status == 200


async def ask(client: Any, question: str) -> tuple[str, str]:
    body = {"model": "chat", "messages": [{"role": "user", "content": question}]}
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status == 200, await resp.text()
    return resp.headers["x-frugal-cache"], (await resp.json())["choices"][0]["message"]["content"]


def right(answer: str) -> bool:
    words = set(re.findall(r"\w+", answer))
    return bool(words) and words <= set(REFERENCE_WORDS)


def wrong(answer: str) -> bool:
    words = set(re.findall(r"\w+", answer))
    return bool(words) and words <= set(DEGRADED_WORDS)


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait for a state (a comparison done, a sync seen); the test's own timeout bounds it."""
    while not await check():
        await asyncio.sleep(0.02)


async def compared(client: Any, count: int) -> None:
    async def done() -> bool:
        samples = await scrape(client)
        return total(samples, "frugal_gateway_shadow_requests_total", result="compared") >= count

    await until(done)


async def asked(client: Any, question: str, comparisons: int) -> tuple[str, str]:
    """Ask (a miss: the answer is compared) and wait until its comparison is counted, so that
    the quality window holds exactly the answers asked so far."""
    answer = await ask(client, question)
    assert answer[0] == "miss"
    await compared(client, comparisons)
    return answer


def book(client: Any) -> Distrust:
    cache = client.server.app[GATEWAY].snapshot.routes["chat"].cache
    assert cache is not None
    assert cache.distrust is not None
    return cache.distrust


def test_answers_from_a_quality_dip_are_not_served_after_recovery(
    backend: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    ns = f"dip-{request.node.callspec.id}"
    before, dip, recovery = QUESTIONS[:4], QUESTIONS[4:8], QUESTIONS[8:12]

    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", quality=1.0, **FAST)
            await fleet.start("large", quality=1.0, **FAST)
            async with gateway(dipping_config(fleet, ns, backend, window=4)) as client:
                n = 0
                first: dict[str, str] = {}
                for q in before:
                    n += 1
                    first[q] = (await asked(client, q, n))[1]
                    assert right(first[q])
                # The dip: one wrong answer in four (mean 0.75, under the bar of 0.88) or two
                # are no evidence — such a mean is what noise does; the third is (mean 0.25,
                # upper confidence bound 0.83). All three were stored: nothing knew yet.
                await set_quality(fleet, 0.0)
                for q in dip[:3]:
                    n += 1
                    kind, bad = await asked(client, q, n)
                    assert wrong(bad)
                    assert bool(book(client).open) == (q == dip[2])
                n += 1
                assert wrong((await asked(client, dip[3], n))[1])  # served, not stored
                # Recovery: four right answers fill the window again.
                await set_quality(fleet, 1.0)
                for q in recovery:
                    n += 1
                    assert right((await asked(client, q, n))[1])
                samples = await scrape(client)
                assert total(samples, "frugal_gateway_quality_ratio", tier="small") == 1.0
                assert not book(client).open
                calls = fleet.calls["small"]

                # Answered before the window the dip was found in: still served.
                for q in before[:3]:
                    assert await ask(client, q) == ("exact", first[q])
                assert fleet.calls["small"] == calls
                # In that window (the gauge cannot tell when within it the dip began): not.
                kind, again = await ask(client, before[3])
                assert kind == "miss"
                assert again == first[before[3]]
                # The wrong answers stored at the start of the dip are not served, neither to
                # the same question (exact) nor to a paraphrase (semantic), and the fresh
                # answer replaces them: the paraphrase gets it, not the wrong one next to it.
                kind, answer = await ask(client, dip[0])
                assert kind == "miss"
                assert right(answer)
                assert await ask(client, dip[0]) == ("exact", answer)
                assert await ask(client, dip[0].lower().rstrip("?")) == ("semantic", answer)
                for q in dip[1:3]:
                    kind, answer = await ask(client, q)
                    assert kind == "miss"
                    assert right(answer)
                # Asked during the open span: never stored, so a model call now, stored again.
                assert (await ask(client, dip[3]))[0] == "miss"
                assert (await ask(client, dip[3]))[0] == "exact"
                samples = await scrape(client)
                refused = {"policy": "chat", "namespace": ns, "tier": "small"}
                exact = total(
                    samples, "frugal_gateway_cache_distrusted_total", kind="exact", **refused
                )
                semantic = total(
                    samples, "frugal_gateway_cache_distrusted_total", kind="semantic", **refused
                )
                assert exact == 4  # before[3] and dip[:3]
                assert semantic >= 1

    run(test)


def test_a_replica_stops_serving_what_another_replica_found_dipping(
    redis_server: RedisServer,
) -> None:
    """Replica one finds the dip; replica two, before its own gauge has seen it, stops serving
    (and storing) the dipping tier's answers through the span shared in Redis, and serves the
    tier's fresh answers again once both have seen it recover."""
    backend = {"type": "redis", "redis": {"url": redis_server.url}}

    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", quality=1.0, **FAST)
            await fleet.start("large", quality=1.0, **FAST)
            cfg = dipping_config(fleet, "replicas", backend, window=2)
            async with gateway(cfg) as one, gateway(cfg) as two:
                old = QUESTIONS[0]
                _, kept = await asked(one, old, 1)
                await asked(one, QUESTIONS[1], 2)
                await asked(one, QUESTIONS[2], 3)
                await set_quality(fleet, 0.0)
                _, bad = await asked(one, QUESTIONS[3], 4)  # stored; [right, wrong]: no evidence
                assert wrong(bad)
                assert not one_open(one)
                await asked(one, QUESTIONS[8], 5)  # [wrong, wrong]: found under the bar
                assert one_open(one)

                async def seen() -> bool:
                    return bool(book(two).known.get("small"))

                await until(seen)
                assert await ask(two, old) == ("exact", kept)
                kind, answer = await ask(two, QUESTIONS[3])
                assert kind == "miss"  # replica two's own quality gauge says nothing yet
                assert wrong(answer)
                # ... and replica two does not store the dipping tier's answers either
                assert (await ask(two, QUESTIONS[3]))[0] == "miss"
                await compared(two, 2)  # replica two's own window: [wrong, wrong]

                await set_quality(fleet, 1.0)
                await asked(one, QUESTIONS[4], 6)
                await asked(one, QUESTIONS[5], 7)  # the window is [right, right]: recovered
                assert not book(one).open
                await asked(two, QUESTIONS[6], 3)
                await asked(two, QUESTIONS[7], 4)
                assert not book(two).open
                # each replica learns (at its next sync) that the other's span closed
                await until(closed_seen(one, two))
                await until(closed_seen(two, one))
                kind, fresh = await ask(two, QUESTIONS[3])
                assert kind == "miss"
                assert right(fresh)
                assert await ask(two, QUESTIONS[3]) == ("exact", fresh)
                assert await ask(one, QUESTIONS[3]) == ("exact", fresh)
                samples = await scrape(two)
                assert total(samples, "frugal_gateway_cache_distrusted_total", kind="exact") == 3

    run(test)


def test_a_reload_without_the_objective_closes_the_open_span() -> None:
    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", quality=1.0, **FAST)
            await fleet.start("large", quality=1.0, **FAST)
            cfg = dipping_config(fleet, "reload", {"type": "memory"}, window=2)
            async with gateway(cfg) as client:
                _, kept = await asked(client, QUESTIONS[0], 1)
                await asked(client, QUESTIONS[5], 2)
                await set_quality(fleet, 0.0)
                await asked(client, QUESTIONS[1], 3)  # window [5, 1]: no evidence yet
                assert not one_open(client)
                await asked(client, QUESTIONS[3], 4)  # window [1, 3]: under the bar
                assert one_open(client)
                assert (await ask(client, QUESTIONS[2]))[0] == "miss"
                assert (await ask(client, QUESTIONS[2]))[0] == "miss"  # not stored
                await set_quality(fleet, 1.0)
                policies = [p.model_dump(by_alias=True, exclude_none=True) for p in cfg.policies]
                policies[0]["spec"]["objectives"] = {}
                gw = client.server.app[GATEWAY]
                assert gw.reload(cfg)
                assert one_open(client)  # still judged: the same configuration
                assert gw.reload(config(**{**dump(cfg), "policies": policies}))
                assert not one_open(client)
                # no longer judged: stored and served again; the closed span still refuses
                # what was written inside it
                assert (await ask(client, QUESTIONS[2]))[0] == "miss"
                assert (await ask(client, QUESTIONS[2]))[0] == "exact"
                assert (await ask(client, QUESTIONS[0])) == ("exact", kept)
                assert (await ask(client, QUESTIONS[1]))[0] == "miss"

    run(test)


def dump(cfg: Any) -> dict[str, Any]:
    return cfg.model_dump(by_alias=True, exclude_none=True)


def one_open(client: Any) -> bool:
    return "small" in book(client).open


def closed_seen(closer: Any, reader: Any) -> Callable[[], Awaitable[bool]]:
    """Whether ``reader`` knows the span ``closer`` closed, as closed."""
    (closed,) = book(closer).closed

    async def seen() -> bool:
        spans = book(reader).known.get("small", ())
        return any((s.since, s.until) == (closed.since, closed.until) for s in spans)

    return seen
