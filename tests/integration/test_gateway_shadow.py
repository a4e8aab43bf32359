"""Shadow sampling: the quality gauge of a tier of quality q, measured against a quality-1.0
reference tier, comes out at q (exactly the simulator's fraction of right answers)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from frugal.enginesim import answers
from frugal.gateway.testing import config, gateway, routing_policy, scrape, sims, total


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


def test_quality_gauge_tracks_tier_quality() -> None:
    prompts = [f"question {i} about the weather" for i in range(150)]
    expected = sum(answers.answers_correctly(f"user: {p}", 0, 0.6) for p in prompts) / len(prompts)

    async def test() -> None:
        async with sims() as fleet:
            fast = {"ttft_seconds": 0.0, "tokens_per_second": 0.0, "answer_tokens": 16}
            await fleet.start("small", quality=0.6, **fast)
            await fleet.start("large", quality=1.0, **fast)
            tiers = [
                {"name": "small", "endpointRef": {"name": "small"}, "weight": 100},
                {"name": "large", "endpointRef": {"name": "large"}, "weight": 0},
            ]
            cfg = config(
                namespace="ml",
                upstreams={
                    "small": {"url": fleet.url("small"), "servedName": "small"},
                    "large": {
                        "url": fleet.url("large"),
                        "servedName": "large",
                        "inputPricePer1M": 5,
                        "outputPricePer1M": 15,
                    },
                },
                policies=[
                    routing_policy(
                        "chat",
                        "chat",
                        tiers,
                        namespace="ml",
                        shadow={"sampleRate": 1.0, "referenceTier": "large"},
                    )
                ],
                limits={"shadowConcurrency": 200, "qualityWindow": 1000},
            )
            async with gateway(cfg, rng=random.Random(0)) as client:
                for i in range(0, len(prompts), 10):
                    batch = [
                        client.post(
                            "/v1/chat/completions",
                            json={"model": "chat", "messages": [{"role": "user", "content": p}]},
                        )
                        for p in prompts[i : i + 10]
                    ]
                    for resp in await asyncio.gather(*batch):
                        assert resp.status == 200
                        assert resp.headers["x-frugal-tier"] == "small"
                deadline = asyncio.get_running_loop().time() + 30
                while True:
                    samples = await scrape(client)
                    compared = total(
                        samples, "frugal_gateway_shadow_requests_total", result="compared"
                    )
                    if compared == len(prompts):
                        break
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.05)
                quality = {"policy": "chat", "namespace": "ml"}
                small = total(samples, "frugal_gateway_quality_ratio", **quality, tier="small")
                large = total(samples, "frugal_gateway_quality_ratio", **quality, tier="large")
                assert abs(small - expected) < 1e-9
                assert abs(small - 0.6) < 0.1
                assert large == 1.0
                # shadow calls are metered apart: the reference tier served no user request
                assert fleet.calls["large"] == len(prompts)
                assert total(samples, "frugal_gateway_requests_total", tier="large") == 0
                assert total(samples, "frugal_gateway_shadow_cost_usd_total", tier="large") > 0

    run(test)
