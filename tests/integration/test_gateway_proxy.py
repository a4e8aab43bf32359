"""The gateway in front of real engine simulators: pass-through, errors, fallback, tenancy,
metering. Everything runs on loopback sockets in-process; nothing is mocked."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from frugal.enginesim import answers
from frugal.gateway.testing import Sims, config, gateway, routing_policy, scrape, sims, total

FAST = {"ttft_seconds": 0.0, "tokens_per_second": 0.0, "answer_tokens": 12}


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


def ask(text: str, model: str = "chat", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def two_tiers(fleet: Sims, **spec: Any) -> dict[str, Any]:
    """small (weight 100) and large, both engine simulators."""
    return {
        "upstreams": {
            "small": {
                "url": fleet.url("small"),
                "servedName": "small",
                "inputPricePer1M": 1.0,
                "outputPricePer1M": 2.0,
            },
            "large": {
                "url": fleet.url("large"),
                "servedName": "large",
                "inputPricePer1M": 10.0,
                "outputPricePer1M": 30.0,
            },
        },
        "policies": [
            routing_policy(
                "chat",
                "chat",
                [
                    {"name": "small", "endpointRef": {"name": "small"}, "weight": 100},
                    {"name": "large", "endpointRef": {"name": "large"}, "weight": 0},
                ],
                **spec,
            )
        ],
    }


async def events(resp: aiohttp.ClientResponse) -> list[Any]:
    out = []
    async for line in resp.content:
        if line.startswith(b"data: "):
            data = line[6:].strip().decode()
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_non_streaming_pass_through_and_headers() -> None:
    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", **FAST)
            await fleet.start("large", **FAST)
            async with gateway(config(**two_tiers(fleet))) as client:
                resp = await client.post("/v1/chat/completions", json=ask("hello there"))
                body = await resp.json()
                assert resp.status == 200
                assert resp.headers["x-frugal-cache"] == "miss"
                assert resp.headers["x-frugal-tier"] == "small"
                expected = answers.reference_answer("user: hello there", 0, 12)
                assert body["choices"][0]["message"]["content"] == expected
                assert body["usage"]["completion_tokens"] == 12
                assert body["model"] == "small"
                # completions and a direct call of an endpoint's served name
                resp = await client.post(
                    "/v1/completions", json={"model": "large", "prompt": "once upon"}
                )
                assert resp.status == 200
                assert resp.headers["x-frugal-tier"] == "large"
                text = (await resp.json())["choices"][0]["text"]
                assert text == answers.reference_answer("once upon", 0, 12)
                resp = await client.post(
                    "/v1/embeddings", json={"model": "chat", "input": ["a", "b"]}
                )
                assert resp.status == 200
                assert len((await resp.json())["data"]) == 2
                models = await (await client.get("/v1/models")).json()
                assert {m["id"] for m in models["data"]} == {"chat", "small", "large"}
                health = await client.get("/healthz")
                assert (await health.json())["generation"] == 1

    run(test)


def test_stream_is_relayed_chunk_by_chunk() -> None:
    """The first chunk reaches the client while the engine still has most of the answer to
    generate: at 1 token/s, 30 tokens take 30 s, and the engine is sped up only afterwards."""

    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", ttft_seconds=0.0, tokens_per_second=1.0, answer_tokens=30)
            await fleet.start("large", **FAST)
            async with gateway(config(**two_tiers(fleet))) as client:
                resp = await client.post("/v1/chat/completions", json=ask("tell me", stream=True))
                assert resp.status == 200
                assert resp.headers["x-frugal-tier"] == "small"
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                received = []
                while not any(
                    e["choices"][0]["delta"].get("content") for e in received if e != "[DONE]"
                ):
                    line = await resp.content.readline()
                    if line.startswith(b"data: "):
                        received.append(json.loads(line[6:]))
                engine = fleet.engine("small")
                assert engine.running == 1  # still generating: nothing was buffered
                assert engine.metrics.generation_tokens.labels("small", "0")._value.get() < 30
                await engine.reconfigure(engine.config.updated({"tokens_per_second": 0}))
                received += await events(resp)
                assert received[-1] == "[DONE]"
                chunks = [e for e in received if e != "[DONE]"]
                text = "".join(e["choices"][0]["delta"].get("content") or "" for e in chunks)
                assert text == answers.reference_answer("user: tell me", 0, 30)
                assert all("usage" not in e or e["usage"] is None for e in chunks)
                # asked for usage: the usage chunk comes through
                usage = await events(
                    await client.post(
                        "/v1/chat/completions",
                        json=ask("again", stream=True, stream_options={"include_usage": True}),
                    )
                )
                assert usage[-2]["usage"]["completion_tokens"] == 30
                assert usage[-2]["choices"] == []

    run(test)


def test_upstream_errors_become_openai_errors() -> None:
    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", failure_rate=1.0, **FAST)
            await fleet.start("large", healthy=False, **FAST)
            cfg = two_tiers(fleet, fallback={"on": ["overload"]})
            async with gateway(config(**cfg)) as client:
                resp = await client.post("/v1/chat/completions", json=ask("hi"))
                assert resp.status == 502  # an engine's 500 is a bad gateway, not ours
                error = (await resp.json())["error"]
                assert error["type"] == "api_error"
                assert error["message"] == "simulated engine failure"
                assert error["code"] == "upstream_500"
                assert resp.headers["x-frugal-tier"] == "small"
                # the request's own mistake keeps its status and is never retried elsewhere
                resp = await client.post("/v1/chat/completions", json=ask("hi", max_tokens=0))
                assert resp.status == 400
                assert "max_tokens" in (await resp.json())["error"]["message"]
                # an overloaded engine (503) says so, with its own status
                resp = await client.post("/v1/chat/completions", json=ask("hi", model="large"))
                assert resp.status == 503
                assert (await resp.json())["error"]["type"] == "api_error"

    run(test)


def test_fallback_on_failing_tier() -> None:
    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", failure_rate=1.0, **FAST)
            await fleet.start("large", **FAST)
            async with gateway(config(**two_tiers(fleet))) as client:
                statuses = []
                for i in range(5):
                    resp = await client.post("/v1/chat/completions", json=ask(f"q{i}"))
                    statuses.append((resp.status, resp.headers["x-frugal-tier"]))
                    await resp.read()
                stream = await client.post("/v1/chat/completions", json=ask("s", stream=True))
                assert (await events(stream))[-1] == "[DONE]"
                assert stream.headers["x-frugal-tier"] == "large"
                assert statuses == [(200, "large")] * 5
                assert fleet.calls["small"] == 6
                assert fleet.calls["large"] == 6
                samples = await scrape(client)
                assert (
                    total(
                        samples,
                        "frugal_gateway_fallbacks_total",
                        from_tier="small",
                        to_tier="large",
                        reason="error",
                    )
                    == 6
                )

    run(test)


def test_classes_and_status_weights_pick_tiers() -> None:
    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", **FAST)
            await fleet.start("large", **FAST)
            cfg = two_tiers(fleet)
            rp = cfg["policies"][0]
            rp["spec"]["tiers"][0]["weight"] = 50
            rp["spec"]["tiers"][1]["weight"] = 50
            rp["spec"]["tiers"][0]["match"] = ["general"]
            rp["spec"]["classifier"] = {
                "rules": [{"class": "legal", "keywords": ["contract"]}],
                "defaultClass": "general",
            }
            rp["status"] = {"weights": {"small": 100, "large": 0}}
            async with gateway(config(**cfg), rng=random.Random(1)) as client:

                async def tier_of(text: str) -> tuple[str, str]:
                    resp = await client.post("/v1/chat/completions", json=ask(text))
                    await resp.read()
                    return resp.headers["x-frugal-tier"], resp.headers["x-frugal-class"]

                # status weights (100/0) override the spec's 50/50
                assert {await tier_of(f"plain question {i}") for i in range(8)} == {
                    ("small", "general")
                }
                # code is only for large (small matches general only), despite weight 0
                assert await tier_of("fix:\n```python\nprint(1)\n```") == ("large", "code")
                assert await tier_of("review this contract") == ("large", "legal")

    run(test)


def test_bad_input_is_refused_without_hurting_others() -> None:
    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", ttft_seconds=0.0, tokens_per_second=50.0, answer_tokens=10)
            await fleet.start("large", **FAST)
            cfg = two_tiers(fleet)
            cfg["limits"] = {"maxBodyBytes": 2048}
            async with gateway(config(**cfg)) as client:
                url = "/v1/chat/completions"
                good = [client.post(url, json=ask(f"good {i}")) for i in range(4)]
                bad = [
                    client.post(
                        url,
                        data=b'{"model": "chat", "messages": [',
                        headers={"Content-Type": "application/json"},
                    ),
                    client.post(url, data=b"[1, 2]"),
                    client.post(url, json=ask("x" * 5000)),
                    client.post(url, json=ask("hi", model="no-such-model")),
                    client.post(url, json={"model": "chat"}),
                    client.post(url, json={"messages": [{"role": "user", "content": "x"}]}),
                    client.post(url, json=ask("hi", stream="yes")),
                    client.get(url),
                    client.post("/v1/nothing", json=ask("hi")),
                ]
                responses = await asyncio.gather(*good, *bad)
                statuses = [r.status for r in responses]
                assert statuses[:4] == [200] * 4
                assert statuses[4:] == [400, 400, 413, 404, 400, 400, 400, 405, 404]
                for resp in responses[4:]:
                    error = (await resp.json())["error"]
                    assert set(error) == {"message", "type", "param", "code"}
                    assert resp.headers["x-frugal-cache"] == "miss"
                assert (await responses[7].json())["error"]["code"] == "model_not_found"
                for resp in responses[:4]:
                    assert (await resp.json())["usage"]["completion_tokens"] == 10
                assert fleet.calls["small"] == 4  # no bad request reached an engine

    run(test)


def test_tenants_auth_rate_limits_and_metered_labels() -> None:
    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", **FAST)
            await fleet.start("large", **FAST)
            cfg = two_tiers(fleet)
            cfg["auth"] = {"required": True}
            cfg["tenants"] = [
                {
                    "name": "search",
                    "apiKeys": ["sk-search"],
                    "cost": {"team": "search", "project": "ranker", "environment": "prod"},
                },
                {
                    "name": "batch",
                    "apiKeys": ["sk-batch"],
                    "rateLimit": {"requestsPerSecond": 0.01, "burst": 2},
                },
            ]
            async with gateway(config(**cfg)) as client:
                url = "/v1/chat/completions"
                resp = await client.post(url, json=ask("hi"))
                assert resp.status == 401
                assert (await resp.json())["error"]["type"] == "authentication_error"
                resp = await client.post(
                    url, json=ask("hi"), headers={"Authorization": "Bearer nope"}
                )
                assert resp.status == 401
                assert (await client.get("/v1/models")).status == 401
                search = {"Authorization": "Bearer sk-search"}
                for i in range(3):
                    resp = await client.post(url, json=ask(f"q{i}"), headers=search)
                    assert resp.status == 200
                batch = {"x-api-key": "sk-batch"}
                codes = []
                for i in range(3):
                    resp = await client.post(url, json=ask(f"b{i}"), headers=batch)
                    codes.append(resp.status)
                assert codes == [200, 200, 429]
                assert int(resp.headers["Retry-After"]) >= 1
                assert (await resp.json())["error"]["type"] == "rate_limit_error"

                samples = await scrape(client)
                labels = {
                    "policy": "chat",
                    "namespace": "default",
                    "tier": "small",
                    "endpoint": "small",
                    "tenant": "search",
                    "team": "search",
                    "project": "ranker",
                    "env": "prod",
                }
                assert (
                    total(
                        samples, "frugal_gateway_requests_total", **labels, cache="miss", code="200"
                    )
                    == 3
                )
                tokens_in = total(samples, "frugal_gateway_tokens_total", **labels, direction="in")
                tokens_out = total(
                    samples, "frugal_gateway_tokens_total", **labels, direction="out"
                )
                assert tokens_out == 3 * 12
                assert tokens_in > 0
                cost = total(samples, "frugal_gateway_cost_usd_total", **labels)
                assert cost == tokens_in * 1.0 / 1e6 + tokens_out * 2.0 / 1e6
                assert (
                    total(samples, "frugal_gateway_request_duration_seconds_count", **labels) == 3
                )
                assert total(samples, "frugal_gateway_ttft_seconds_count", **labels) == 3
                assert (
                    total(samples, "frugal_gateway_requests_total", tenant="batch", code="429") == 1
                )
                assert (
                    total(samples, "frugal_gateway_rejected_total", reason="rate_limit_exceeded")
                    == 1
                )

    run(test)


def test_prefix_affinity_keeps_a_system_prompt_on_one_replica() -> None:
    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("r0", model="shared", **FAST)
            await fleet.start("r1", model="shared", **FAST)
            cfg = {
                "upstreams": {
                    "pool": {"urls": [fleet.url("r0"), fleet.url("r1")], "servedName": "shared"}
                },
                "policies": [
                    routing_policy(
                        "p", "m", [{"name": "only", "endpointRef": {"name": "pool"}, "weight": 100}]
                    ),
                    {
                        "apiVersion": "frugal.dev/v1alpha1",
                        "kind": "CachePolicy",
                        "metadata": {"name": "c"},
                        "spec": {
                            "targetRef": {"kind": "RoutingPolicy", "name": "p"},
                            "exact": {"enabled": False},
                            "prefix": {"affinity": True, "minPrefixTokens": 32},
                        },
                    },
                ],
            }
            async with gateway(config(**cfg)) as client:
                system = "You are the assistant of ACME bank; answer briefly and politely. " * 3
                for i in range(10):
                    body = {
                        "model": "m",
                        "messages": [
                            {"role": "system", "content": system},
                            {"role": "user", "content": f"question {i}"},
                        ],
                    }
                    assert (await client.post("/v1/chat/completions", json=body)).status == 200
                assert sorted(fleet.calls.get(r, 0) for r in ("r0", "r1")) == [0, 10]
                for i in range(20):  # distinct prefixes spread over both replicas
                    body = {
                        "model": "m",
                        "messages": [{"role": "system", "content": f"{i:03d} {system}"}],
                    }
                    body["messages"].append({"role": "user", "content": "hi"})
                    assert (await client.post("/v1/chat/completions", json=body)).status == 200
                assert min(fleet.calls.get(r, 0) for r in ("r0", "r1")) > 0

    run(test)


def test_embedding_classifier_routes_by_nearest_example() -> None:
    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", **FAST)
            await fleet.start("large", **FAST)
            cfg = two_tiers(fleet)
            rp = cfg["policies"][0]
            rp["spec"]["tiers"][0]["match"] = ["billing", "general"]
            rp["spec"]["tiers"][1]["match"] = ["tech"]
            rp["spec"]["classifier"] = {
                "type": "embedding",
                "examples": [
                    {"class": "billing", "text": "How much does my subscription cost per month?"},
                    {"class": "billing", "text": "Please refund my last payment"},
                    {"class": "tech", "text": "The app crashes when I open it"},
                    {"class": "tech", "text": "I cannot log in, the login page shows an error"},
                ],
            }
            async with gateway(config(**cfg)) as client:

                async def route_of(text: str) -> tuple[str, str]:
                    resp = await client.post("/v1/chat/completions", json=ask(text))
                    await resp.read()
                    return resp.headers["x-frugal-class"], resp.headers["x-frugal-tier"]

                assert await route_of("the app crashes when I open it on my phone") == (
                    "tech",
                    "large",
                )
                assert await route_of("please refund my last payment, thanks") == (
                    "billing",
                    "small",
                )

    run(test)


def test_client_leaving_a_stream_frees_the_tier() -> None:
    async def test() -> None:
        async with sims() as fleet:
            await fleet.start("small", ttft_seconds=0.0, tokens_per_second=2.0, answer_tokens=40)
            await fleet.start("large", **FAST)
            async with gateway(config(**two_tiers(fleet))) as client:
                resp = await client.post("/v1/chat/completions", json=ask("long", stream=True))
                assert resp.status == 200
                await resp.content.readline()
                resp.close()  # the client goes away mid-answer
                deadline = asyncio.get_running_loop().time() + 20
                while True:
                    samples = await scrape(client)
                    left = total(samples, "frugal_gateway_requests_total", code="499")
                    in_flight = total(samples, "frugal_gateway_in_flight", endpoint="small")
                    if left == 1 and in_flight == 0 and fleet.engine("small").running == 0:
                        break
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.05)
                resp = await client.post("/v1/chat/completions", json=ask("next", model="large"))
                assert resp.status == 200

    run(test)
