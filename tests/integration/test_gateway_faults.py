"""The gateway against upstreams that hang, reset or speak garbage, and a flood at a tier at zero.

Every upstream is a real server on a loopback socket (tests/support/badupstream.py, and engine
simulators for the healthy tiers). What must hold whatever the upstream does: the client gets
an OpenAI-style error (or the fallback tier's answer, when a fallback can still be taken), other
requests are served meanwhile, and nothing leaks — the in-flight gauge and the event loop's
tasks return to where they were.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from frugal.gateway.server import make_app
from frugal.gateway.snapshot import Upstream
from frugal.gateway.testing import (
    cache_policy,
    config,
    gateway,
    routing_policy,
    scrape,
    sims,
    total,
)
from support.badupstream import BadUpstream

FAST = {"ttft_seconds": 0.0, "tokens_per_second": 0.0, "answer_tokens": 8}
PRE_FIRST_BYTE = ["hang", "reset", "html", "truncated", "json-stream", "garbage-sse"]
"""Failures before the first event: a proper error status, or the fallback tier's answer."""


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


def ask(model: str, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    if stream:
        body["stream"] = True
    return body


def fault_config(bad_url: str, good_url: str, read_timeout: float) -> dict[str, Any]:
    """``only``: the bad tier alone; ``fallback``: bad first, good behind it; ``good``: healthy."""
    bad = {"name": "bad", "endpointRef": {"name": "bad"}, "weight": 100}
    good = {"name": "good", "endpointRef": {"name": "good"}, "weight": 0}
    return {
        "upstreams": {
            "bad": {"url": bad_url, "servedName": "bad"},
            "good": {"url": good_url, "servedName": "good"},
        },
        "policies": [
            routing_policy("only", "only", [bad]),
            routing_policy("fallback", "fallback", [bad, good]),
            routing_policy("healthy", "healthy", [{**good, "weight": 100}]),
        ],
        "limits": {"readTimeoutSeconds": read_timeout},
    }


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def in_flight(client: TestClient) -> float:
    return total(await scrape(client), "frugal_gateway_in_flight")


def tasks() -> int:
    """Tasks in this loop besides aiohttp's per-connection ones (which live as long as a
    keep-alive connection): the gateway's background work and the test's own requests."""
    return sum(
        1
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") != "RequestHandler.start"
    )


async def settled(client: TestClient, bad: BadUpstream, tasks_before: int) -> None:
    """Nothing left behind: no upstream call in flight, no upstream handler still running (the
    gateway let go of its connection), no task left over."""

    async def quiet() -> bool:
        return await in_flight(client) == 0 and bad.open == 0 and tasks() <= tasks_before

    await until(quiet)


def parse_events(text: str) -> list[Any]:
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[6:].strip()
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_failures_before_the_first_byte(stream: bool) -> None:
    """A clear error with the tier's own status (504 for silence, 502 for the rest), and the
    fallback tier's answer where there is one; the upstream's garbage never reaches the client."""

    async def test() -> None:
        async with sims() as fleet:
            good_url = await fleet.start("good", **FAST)
            bad = await BadUpstream().start()
            try:
                modes = [m for m in PRE_FIRST_BYTE if stream or m != "json-stream"]
                for mode in modes:
                    cfg = config(**fault_config(bad.url(mode), good_url, read_timeout=0.5))
                    async with gateway(cfg) as client:
                        before = tasks()
                        resp = await client.post("/v1/chat/completions", json=ask("only", stream))
                        body = await resp.json()
                        assert resp.status == (504 if mode == "hang" else 502), mode
                        assert body["error"]["type"] == "api_error", mode
                        assert "tier bad" in body["error"]["message"], mode
                        assert resp.headers["x-frugal-tier"] == "bad"

                        resp = await client.post(
                            "/v1/chat/completions", json=ask("fallback", stream)
                        )
                        text = await resp.text()
                        assert resp.status == 200, mode
                        assert resp.headers["x-frugal-tier"] == "good", mode
                        if stream:
                            assert parse_events(text)[-1] == "[DONE]"
                        samples = await scrape(client)
                        fallbacks = total(samples, "frugal_gateway_fallbacks_total", reason="error")
                        assert fallbacks == 1, mode
                        await settled(client, bad, before)
                assert all(bad.hits[m] == 2 for m in modes)  # each request sent once per try
            finally:
                await bad.stop()

    run(test)


@pytest.mark.parametrize("mode", ["stall", "reset-stream", "garbage-mid", "no-done"])
def test_failures_mid_stream_end_in_an_error_event(mode: str) -> None:
    """Once events have gone out the status cannot change (nor the tier): the stream ends with
    an OpenAI-style error event and without ``[DONE]``, so a client cannot take a cut answer
    for a whole one. (Should the first read already hold the failure, it is refused whole.)"""

    async def test() -> None:
        async with sims() as fleet:
            good_url = await fleet.start("good", **FAST)
            bad = await BadUpstream().start()
            try:
                cfg = config(**fault_config(bad.url(mode), good_url, read_timeout=0.5))
                async with gateway(cfg) as client:
                    before = tasks()
                    resp = await client.post("/v1/chat/completions", json=ask("only", True))
                    text = await resp.text()
                    assert "oops" not in text
                    if resp.status == 502:  # all of it came in the first read: refused whole
                        assert (json.loads(text))["error"]["type"] == "api_error"
                    else:
                        assert resp.status == 200
                        events = parse_events(text)
                        assert "[DONE]" not in events
                        assert events[0]["choices"][0]["delta"]["content"] == "Hello"
                        assert events[-1]["error"]["type"] == "api_error"
                        assert "tier bad" in events[-1]["error"]["message"]
                    samples = await scrape(client)
                    assert total(samples, "frugal_gateway_requests_total", code="502") == 1
                    await settled(client, bad, before)
            finally:
                await bad.stop()

    run(test)


@pytest.mark.parametrize("cached", [False, True], ids=["relay", "cached"])
@pytest.mark.parametrize("mode", ["cut-json", "cut-json-brace"])
def test_a_json_event_cut_short_mid_stream_ends_the_stream_in_an_error(
    mode: str, cached: bool
) -> None:
    """An event whose JSON object is cut short (the upstream lost bytes, then went on as if
    nothing happened) would make the client's SDK fail on that event, and the gateway could
    not meter it: like any other malformed event it ends the stream with an error event and
    no ``[DONE]``, and nothing after the cut reaches the client. Checked on both paths: the
    plain relay, which decodes only the events that need it (``cut-json-brace`` ends in ``}``,
    as a whole object does), and a cached route, which decodes every event. An event whose
    text holds an unmatched ``{`` is whole, and passes."""

    async def test() -> None:
        async with sims() as fleet:
            good_url = await fleet.start("good", **FAST)
            bad = await BadUpstream().start()
            try:
                cfg = fault_config(bad.url(mode), good_url, read_timeout=5)
                if cached:
                    spec = {"exact": {"enabled": True}, "semantic": {"enabled": False}}
                    cfg["policies"].append(
                        cache_policy("only-cache", "only", backend={"type": "memory"}, **spec)
                    )
                async with gateway(config(**cfg)) as client:
                    before = tasks()
                    resp = await client.post("/v1/chat/completions", json=ask("only", True))
                    text = await resp.text()
                    assert resp.status == 200
                    assert "oops" not in text
                    events = parse_events(text)
                    assert [e["choices"][0]["delta"]["content"] for e in events[:2]] == [
                        "Hello",
                        " {",
                    ]
                    assert len(events) == 3
                    assert events[-1]["error"]["type"] == "api_error"
                    assert events[-1]["error"]["code"] == "upstream_stream"
                    assert "malformed event" in events[-1]["error"]["message"]
                    samples = await scrape(client)
                    assert total(samples, "frugal_gateway_requests_total", code="502") == 1
                    await settled(client, bad, before)
            finally:
                await bad.stop()

    run(test)


def test_hung_upstream_does_not_hold_up_others_and_leaving_clients_free_their_slot() -> None:
    """Requests stuck on a silent tier (long read timeout) do not slow the healthy tier, and a
    client that gives up cancels its request: the upstream call and its in-flight slot go."""

    async def test() -> None:
        async with sims() as fleet:
            good_url = await fleet.start("good", **FAST)
            bad = await BadUpstream().start()
            try:
                cfg = config(**fault_config(bad.url("hang"), good_url, read_timeout=300))
                async with gateway(cfg) as client:
                    before = tasks()
                    hung = [
                        asyncio.create_task(client.post("/v1/chat/completions", json=ask("only")))
                        for _ in range(5)
                    ]

                    async def all_hung() -> bool:
                        return bad.open == 5 and await in_flight(client) == 5

                    await until(all_hung)
                    answers = await asyncio.gather(
                        *(
                            client.post("/v1/chat/completions", json=ask("healthy"))
                            for _ in range(20)
                        )
                    )
                    assert [r.status for r in answers] == [200] * 20
                    assert not any(t.done() for t in hung)
                    for task in hung:
                        task.cancel()
                    await asyncio.gather(*hung, return_exceptions=True)
                    await settled(client, bad, before)
                    samples = await scrape(client)
                    assert total(samples, "frugal_gateway_requests_total", code="499") == 5
            finally:
                await bad.stop()

    run(test)


class Wakes:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, upstream: Upstream) -> None:
        self.calls += 1


def test_flood_at_a_tier_at_zero_is_bounded_and_served_exactly_once() -> None:
    """300 requests at once for a sleeping tier with a queue of 8: 8 are held, the rest get 503
    with Retry-After at once (before the wake); a held client that leaves frees its place; when
    the replica is up every held request is sent upstream exactly once."""

    async def test() -> None:
        async with sims() as fleet:
            fleet.reserve("sleepy", **FAST)
            wakes = Wakes()
            cfg = config(
                namespace="ml",
                upstreams={
                    "sleepy": {
                        "url": fleet.url("sleepy"),
                        "servedName": "sleepy",
                        "scaledToZero": True,
                        "coldStartBudget": "60s",
                    }
                },
                policies=[
                    routing_policy(
                        "chat",
                        "chat",
                        [{"name": "small", "endpointRef": {"name": "sleepy"}, "weight": 100}],
                        namespace="ml",
                    )
                ],
                limits={"wakeQueue": 8, "probeIntervalSeconds": 0.05},
            )
            server = TestServer(make_app(cfg, wake=wakes))
            async with TestClient(server, connector=aiohttp.TCPConnector(limit=0)) as client:

                async def waiting() -> float:
                    return total(await scrape(client), "frugal_gateway_waiting")

                def post(i: int) -> asyncio.Task[aiohttp.ClientResponse]:
                    body = {"model": "chat", "messages": [{"role": "user", "content": f"q{i}"}]}
                    return asyncio.create_task(client.post("/v1/chat/completions", json=body))

                flood = [post(i) for i in range(300)]

                async def refused_all_but_eight() -> bool:
                    return sum(t.done() for t in flood) == 292

                await until(refused_all_but_eight)
                refused = [t.result() for t in flood if t.done()]
                held = [t for t in flood if not t.done()]
                assert {r.status for r in refused} == {503}
                for resp in refused:
                    assert (await resp.json())["error"]["code"] == "wake_queue_full"
                    assert int(resp.headers["Retry-After"]) >= 1
                assert await waiting() == 8
                assert len(held) == 8

                # three held clients give up: their places go to newcomers, not to nobody
                for task in held[:3]:
                    task.cancel()
                await asyncio.gather(*held[:3], return_exceptions=True)

                async def five_left() -> bool:
                    return await waiting() == 5

                await until(five_left)
                newcomers = [post(1000 + i) for i in range(3)]

                async def eight_again() -> bool:
                    return await waiting() == 8

                await until(eight_again)
                await fleet.start("sleepy")
                served = await asyncio.gather(*held[3:], *newcomers)
                assert [r.status for r in served] == [200] * 8
                assert fleet.calls["sleepy"] == 8  # each held request sent exactly once
                assert wakes.calls == 1
                assert await waiting() == 0
                assert total(await scrape(client), "frugal_gateway_in_flight") == 0

    run(test)
