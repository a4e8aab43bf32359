"""Configuration reloads: the file is re-read on change and swapped atomically; requests in
flight finish on the configuration they started with, and none is dropped."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from frugal.gateway.testing import Sims, gateway, routing_policy, scrape, sims, total


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


def write(path: Path, data: dict[str, Any] | str) -> None:
    """Replace the file atomically, as kubelet does with a ConfigMap volume."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    os.replace(tmp, path)


def file_config(fleet: Sims, target: str) -> dict[str, Any]:
    tiers = [{"name": target, "endpointRef": {"name": target}, "weight": 100}]
    return {
        "auth": {"required": False},
        "reloadIntervalSeconds": 0.05,
        "upstreams": {
            name: {"url": fleet.url(name), "servedName": name} for name in ("old", "new")
        },
        "policies": [routing_policy("chat", "chat", tiers)],
    }


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": text}], **extra}


async def generation(client: Any) -> int:
    return (await (await client.get("/healthz")).json())["generation"]


def test_reload_swaps_config_without_dropping_requests(tmp_path: Path) -> None:
    async def test() -> None:
        async with sims() as fleet:
            slow = {"ttft_seconds": 0.0, "tokens_per_second": 40.0, "answer_tokens": 40}
            await fleet.start("old", **slow)
            await fleet.start("new", **slow)
            path = tmp_path / "gateway.yaml"
            write(path, file_config(fleet, "old"))
            async with gateway(path) as client:
                url = "/v1/chat/completions"

                async def one(i: int, stream: bool) -> tuple[int, str, str]:
                    resp = await client.post(url, json=ask(f"in flight {i}", stream=stream))
                    text = await resp.text()
                    return resp.status, resp.headers["x-frugal-tier"], text

                in_flight = [asyncio.create_task(one(i, stream=i % 2 == 0)) for i in range(20)]
                deadline = asyncio.get_running_loop().time() + 20
                while fleet.engine("old").running < 20:  # all of them are being answered
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.01)

                during: list[asyncio.Task[tuple[int, str, str]]] = []
                write(path, file_config(fleet, "new"))
                while await generation(client) < 2:
                    during.append(asyncio.create_task(one(100 + len(during), False)))
                    await asyncio.sleep(0.01)
                during += [asyncio.create_task(one(900 + i, True)) for i in range(5)]

                finished = await asyncio.gather(*in_flight)
                assert all(status == 200 for status, _, _ in finished)
                assert {tier for _, tier, _ in finished} == {"old"}
                for i, (_, _, text) in enumerate(finished):
                    if i % 2 == 0:
                        assert text.rstrip().endswith("data: [DONE]")
                    else:
                        assert '"completion_tokens": 40' in text or '"completion_tokens":40' in text
                later = await asyncio.gather(*during)
                assert all(status == 200 for status, _, _ in later)
                assert later[-1][1] == "new"

                # a broken file is refused: the running configuration stays
                write(path, "policies: [this is not: valid")
                samples = await scrape(client)
                before = total(samples, "frugal_gateway_config_reloads_total", result="error")
                deadline = asyncio.get_running_loop().time() + 20
                while (
                    total(
                        await scrape(client), "frugal_gateway_config_reloads_total", result="error"
                    )
                    == before
                ):
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.02)
                assert await generation(client) == 2
                status, tier, _ = await one(999, False)
                assert (status, tier) == (200, "new")

    run(test)


def test_reload_keeps_cache_entries_and_applies_new_weights(tmp_path: Path) -> None:
    async def test() -> None:
        async with sims() as fleet:
            fast = {"ttft_seconds": 0.0, "tokens_per_second": 0.0, "answer_tokens": 5}
            await fleet.start("old", **fast)
            await fleet.start("new", **fast)
            cfg = file_config(fleet, "old")
            cfg["policies"][0]["spec"]["tiers"].append(
                {"name": "new", "endpointRef": {"name": "new"}, "weight": 0}
            )
            cfg["policies"].append(
                {
                    "apiVersion": "frugal.dev/v1alpha1",
                    "kind": "CachePolicy",
                    "metadata": {"name": "c"},
                    "spec": {"targetRef": {"kind": "RoutingPolicy", "name": "chat"}},
                }
            )
            path = tmp_path / "gateway.yaml"
            write(path, cfg)
            async with gateway(path) as client:
                resp = await client.post("/v1/chat/completions", json=ask("remember me"))
                assert resp.headers["x-frugal-tier"] == "old"
                # the reroute loop moved all weight to "new" (status.weights)
                cfg["policies"][0]["status"] = {"weights": {"old": 0, "new": 100}}
                write(path, cfg)
                deadline = asyncio.get_running_loop().time() + 20
                while await generation(client) < 2:
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.02)
                resp = await client.post("/v1/chat/completions", json=ask("something new"))
                assert resp.headers["x-frugal-tier"] == "new"
                resp = await client.post("/v1/chat/completions", json=ask("remember me"))
                assert resp.headers["x-frugal-cache"] == "exact"
                assert resp.headers["x-frugal-tier"] == "old"

    run(test)
