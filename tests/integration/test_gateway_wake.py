"""Scale from zero: requests for a sleeping endpoint are held, the endpoint is woken once, and
the requests are served when it is up; past the budget they fall back or get 503."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from frugal.gateway.snapshot import Upstream
from frugal.gateway.testing import Sims, config, gateway, routing_policy, scrape, sims, total

FAST = {"ttft_seconds": 0.0, "tokens_per_second": 0.0, "answer_tokens": 8}


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


def ask(text: str, model: str = "chat", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


class Wakes:
    """A wake callback that records its calls; the test decides when the endpoint comes up."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.called = asyncio.Event()

    async def __call__(self, upstream: Upstream) -> None:
        self.calls.append(f"{upstream.namespace}/{upstream.endpoint}")
        self.called.set()


def sleepy_config(fleet: Sims, budget: str, **extra: Any) -> dict[str, Any]:
    tiers = [{"name": "small", "endpointRef": {"name": "sleepy"}, "weight": 100}]
    upstreams: dict[str, Any] = {
        "sleepy": {
            "url": fleet.url("sleepy"),
            "servedName": "sleepy",
            "scaledToZero": True,
            "coldStartBudget": budget,
        }
    }
    if "large" in fleet.ports:
        tiers.append({"name": "large", "endpointRef": {"name": "large"}, "weight": 0})
        upstreams["large"] = {"url": fleet.url("large"), "servedName": "large"}
    return {
        "namespace": "ml",
        "upstreams": upstreams,
        "policies": [routing_policy("chat", "chat", tiers, namespace="ml")],
        "limits": {"probeIntervalSeconds": 0.05, **extra.pop("limits", {})},
        **extra,
    }


async def waiting(client: Any) -> float:
    return total(await scrape(client), "frugal_gateway_waiting", endpoint="sleepy", namespace="ml")


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_hold_wake_once_and_serve_when_up() -> None:
    async def test() -> None:
        async with sims() as fleet:
            fleet.reserve("sleepy", **FAST)
            wakes = Wakes()
            async with gateway(config(**sleepy_config(fleet, "30s")), wake=wakes) as client:
                held = [
                    asyncio.create_task(client.post("/v1/chat/completions", json=ask(f"q{i}")))
                    for i in range(3)
                ]
                stream = asyncio.create_task(
                    client.post("/v1/chat/completions", json=ask("s", stream=True))
                )
                await asyncio.wait_for(wakes.called.wait(), 5)  # asked within a second or so

                async def all_held() -> bool:
                    return await waiting(client) == 4

                await until(all_held)
                assert not any(t.done() for t in [*held, stream])
                await fleet.start("sleepy")  # the endpoint comes up
                responses = await asyncio.gather(*held)
                assert [r.status for r in responses] == [200] * 3
                for resp in responses:
                    assert (await resp.json())["usage"]["completion_tokens"] == 8
                    assert resp.headers["x-frugal-tier"] == "small"
                text = await (await stream).text()
                assert text.rstrip().endswith("data: [DONE]")
                assert wakes.calls == ["ml/sleepy"]  # one wake for everyone
                assert fleet.calls["sleepy"] == 4  # each request sent exactly once
                assert await waiting(client) == 0
                # awake now: no more holding, no more wake calls
                resp = await client.post("/v1/chat/completions", json=ask("later"))
                assert resp.status == 200
                assert wakes.calls == ["ml/sleepy"]

    run(test)


def test_budget_exceeded_gives_503_with_retry_after() -> None:
    async def test() -> None:
        async with sims() as fleet:
            fleet.reserve("sleepy", **FAST)
            wakes = Wakes()
            async with gateway(config(**sleepy_config(fleet, "500ms")), wake=wakes) as client:
                resp = await client.post("/v1/chat/completions", json=ask("q"))
                assert resp.status == 503
                assert int(resp.headers["Retry-After"]) >= 1
                error = (await resp.json())["error"]
                assert error["code"] == "cold_start_timeout"
                assert resp.headers["x-frugal-tier"] == "small"
                assert wakes.calls == ["ml/sleepy"]
                assert await waiting(client) == 0

    run(test)


def test_budget_exceeded_falls_back_to_the_next_tier() -> None:
    async def test() -> None:
        async with sims() as fleet:
            fleet.reserve("sleepy", **FAST)
            await fleet.start("large", **FAST)
            wakes = Wakes()
            async with gateway(config(**sleepy_config(fleet, "300ms")), wake=wakes) as client:
                resp = await client.post("/v1/chat/completions", json=ask("q"))
                assert resp.status == 200
                assert resp.headers["x-frugal-tier"] == "large"
                samples = await scrape(client)
                assert total(samples, "frugal_gateway_fallbacks_total", reason="scaledToZero") == 1

    run(test)


def test_full_wake_queue_refuses_at_once() -> None:
    async def test() -> None:
        async with sims() as fleet:
            fleet.reserve("sleepy", **FAST)
            wakes = Wakes()
            cfg = sleepy_config(fleet, "30s", limits={"wakeQueue": 2})
            async with gateway(config(**cfg), wake=wakes) as client:
                held = [
                    asyncio.create_task(client.post("/v1/chat/completions", json=ask(f"q{i}")))
                    for i in range(2)
                ]

                async def two_held() -> bool:
                    return await waiting(client) == 2

                await until(two_held)
                resp = await client.post("/v1/chat/completions", json=ask("one too many"))
                assert resp.status == 503
                assert (await resp.json())["error"]["code"] == "wake_queue_full"
                assert "Retry-After" in resp.headers
                await fleet.start("sleepy")
                assert [r.status for r in await asyncio.gather(*held)] == [200, 200]
                assert fleet.calls["sleepy"] == 2
                assert wakes.calls == ["ml/sleepy"]

    run(test)


def test_connection_refused_means_asleep() -> None:
    """An endpoint the config thinks is up, but whose socket refuses: hold, wake, serve."""

    async def test() -> None:
        async with sims() as fleet:
            fleet.reserve("sleepy", **FAST)
            wakes = Wakes()
            cfg = sleepy_config(fleet, "30s")
            cfg["upstreams"]["sleepy"]["scaledToZero"] = False
            async with gateway(config(**cfg), wake=wakes) as client:
                task = asyncio.create_task(client.post("/v1/chat/completions", json=ask("q")))
                await asyncio.wait_for(wakes.called.wait(), 5)
                await fleet.start("sleepy")
                resp = await task
                assert resp.status == 200
                assert fleet.calls["sleepy"] == 1

    run(test)
