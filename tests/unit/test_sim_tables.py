"""Each table's arithmetic against hand-computed values, on a tiny workload.

Prices are the shipped list prices: frontier $10 in / $30 out per 1M tokens, mid $2.50 / $10
(cached input $1.25), small $0.15 / $0.60; embedding $0.02 per 1M tokens; vector reads $16 per
1M read units; gateway and cache $0.288/h; an l4 GPU is $0.805/h on-demand.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from frugal.sim.engine import simulate
from frugal.sim.levers import Levers
from frugal.sim.prices import load_prices
from frugal.sim.study import FleetStudy, Study
from frugal.sim.tables import PAPER, table1, table2, to_json
from frugal.sim.workload import Workload

PRICES = load_prices()
NO_REROUTE = replace(Levers(), auto_reroute=False)


def tiny(**changes: Any) -> Workload:
    """1,000 flat queries/day for 2 days, one class, no retrieval, no repeats."""
    data: dict[str, Any] = {
        "seed": 7,
        "volume": {"queriesPerDay": 1000, "days": 2, "diurnalAmplitude": 0.0},
        "tokens": {"systemPrompt": 100, "query": 20, "history": 0, "answer": 50},
        "rag": {"share": 0.0, "chunks": 4, "chunkTokens": 100, "storeChunks": 0},
        "cache": {"exactRepeatRate": 0.0, "paraphraseRate": 0.0, "topics": 0.001},
        "classes": [
            {
                "name": "general",
                "share": 1.0,
                "cacheable": True,
                "quality": {"frontier": 1.0, "mid": 1.0, "small": 0.9, "hosted-large": 1.0},
            }
        ],
        "fleets": {
            "api": {
                "performance": {
                    t: {"ttftSeconds": 0.5, "tokensPerSecond": 50}
                    for t in ("frontier", "mid", "small")
                },
                "routing": {
                    "modelName": "m",
                    "tiers": [
                        {"name": "small", "weight": 50},
                        {"name": "frontier", "weight": 50},
                    ],
                    "objectives": {"minQuality": 0.9},
                },
                "frontier": "frontier",
            },
            "selfHosted": {
                "tiers": {
                    "hosted-large": {
                        "performance": {
                            "ttftSeconds": 0.1,
                            "prefillTps": 1000,
                            "decodeTps": 25,
                            "coldStartSeconds": 60,
                        },
                        "endpoint": {
                            "model": {"uri": "hf://o/m", "servedName": "m", "parameters": 4e9},
                            "resources": {"gpu": {"type": "l4", "count": 1}},
                            "scaling": {"minReplicas": 1, "maxReplicas": 1},
                            "capacity": {"preference": ["on-demand"]},
                        },
                    }
                },
                "routing": {"modelName": "m", "tiers": [{"name": "hosted-large", "weight": 100}]},
                "frontier": "hosted-large",
            },
        },
    }
    for path, value in changes.items():
        node = data
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return Workload.model_validate(data)


def test_baseline_pays_every_token_at_frontier_prices() -> None:
    run = simulate(tiny(), PRICES, "api", Levers.baseline())
    n = run.requests
    assert n == pytest.approx(2000, rel=0.05)  # Poisson around 2 × 1,000
    # in: 100 + 20 + 0 = 120 tokens × $10/1M = $0.0012; out: 50 × $30/1M = $0.0015
    assert run.cost["input"] == pytest.approx(n * 0.0012)
    assert run.cost["output"] == pytest.approx(n * 0.0015)
    assert run.cost["retrieval"] == 0  # no retrieval in this workload
    assert run.cost["infrastructure"] == 0  # no gateway, empty vector store
    assert run.monthly == pytest.approx(n * 0.0027 * 15)  # 2 days → 30-day month
    assert run.quality == 1.0


def test_routing_splits_cost_and_quality_by_weight() -> None:
    run = simulate(tiny(), PRICES, "api", NO_REROUTE)
    n = run.requests
    # half on small: 120 × 0.15 + 50 × 0.60 = $48e-6; half on frontier: $2,700e-6
    assert run.cost["input"] + run.cost["output"] == pytest.approx(
        n * (0.5 * 48 + 0.5 * 2700) / 1e6
    )
    assert run.quality == pytest.approx(0.5 * 0.9 + 0.5 * 1.0)
    # the gateway and cache run all 48 hours at $0.288/h
    assert run.cost["infrastructure"] == pytest.approx(48 * 0.288)


def test_fewer_tokens_compress_history_and_retrieved_context() -> None:
    w = tiny(**{"tokens.history": 200, "rag.share": 0.5})
    run = simulate(w, PRICES, "api", replace(NO_REROUTE, routing=False))
    n = run.requests
    # fresh context caps history at 100; retrieval adds 0.5 × 4 × 100 = 200 on average;
    # compression keeps half of the 300: in = 100 + 20 + 150 = 270 tokens on the frontier tier
    assert run.cost["input"] == pytest.approx(n * 270 * 10 / 1e6)
    assert run.quality == pytest.approx(0.99 * 0.995)
    off = simulate(
        w, PRICES, "api", replace(NO_REROUTE, routing=False, compression=False, fresh_context=False)
    )
    assert off.cost["input"] == pytest.approx(off.requests * (100 + 20 + 200 + 200) * 10 / 1e6)


def test_retrieval_pays_query_embedding_and_index_reads() -> None:
    w = tiny(**{"rag.share": 0.5, "rag.storeChunks": 100_000})
    run = simulate(w, PRICES, "api", Levers.baseline())
    # store: 100,000 × 1536 dims × 4 B × 1.5 = 0.9216 GB → 0.9216 read units per query
    # per query: 0.5 × (20 × $0.02/1M + 0.9216 × $16/1M) = 0.5 × 1.51456e-5
    assert run.cost["retrieval"] == pytest.approx(run.requests * 0.5 * 1.51456e-5)
    # storage: 0.9216 GB × $0.33 per GB-month, for 48 of 720 hours
    assert run.cost["infrastructure"] == pytest.approx(0.9216 * 0.33 * 48 / 720)


def test_prompt_caching_needs_a_prefix_of_1024_tokens() -> None:
    mid = {"modelName": "m", "tiers": [{"name": "mid", "weight": 100}]}
    long = tiny(**{"tokens.systemPrompt": 2000, "fleets.api.routing": mid})
    run = simulate(long, PRICES, "api", NO_REROUTE)
    # 2,000 → 1,920 cached tokens (15 blocks of 128) at $1.25 + 100 fresh at $2.50 per 1M
    assert run.cost["input"] == pytest.approx(run.requests * (1920 * 1.25 + 100 * 2.5) / 1e6)
    short = simulate(tiny(**{"fleets.api.routing": mid}), PRICES, "api", NO_REROUTE)
    assert short.cost["input"] == pytest.approx(short.requests * 120 * 2.5 / 1e6)


def test_cache_hits_skip_the_model_call() -> None:
    w = tiny(**{"cache.exactRepeatRate": 0.1, "cache.paraphraseRate": 0.2})
    run = simulate(w, PRICES, "api", replace(NO_REROUTE, routing=False))
    n = run.requests
    # hit = 0.1 exact + 0.9 × 0.2 semantic = 0.28 (the cache is warm from the first step on)
    assert run.exact_hits == pytest.approx(0.1 * n, rel=1e-3)
    assert run.semantic_hits == pytest.approx(0.18 * n, rel=1e-3)
    assert run.cost["output"] == pytest.approx(0.72 * n * 0.0015, rel=1e-3)


def test_self_hosted_pays_gpu_hours() -> None:
    run = simulate(tiny(), PRICES, "self-hosted", Levers.baseline())
    # one l4 replica on-demand for 48 h at $0.805/h; no per-token charges
    assert run.cost["infrastructure"] == pytest.approx(48 * 0.805)
    assert run.cost["input"] == run.cost["output"] == 0
    assert run.gpu == {"hosted-large": "l4×1"}
    assert run.gpu_hours["on-demand"] == pytest.approx(48)


def test_table_rows_carry_the_saving_and_the_papers_headline() -> None:
    w = tiny()
    base = simulate(w, PRICES, "api", Levers.baseline())
    plan = simulate(w, PRICES, "api", NO_REROUTE)
    study = Study(w, PRICES, {"api": FleetStudy("api", 0.9, base, plan, NO_REROUTE)})
    rows = {r["scenario"]: r for r in table1(study)}
    assert rows["baseline"]["saving"] == 0
    assert rows["frugal plan"]["saving"] == pytest.approx(1 - plan.monthly / base.monthly)
    assert rows["frugal plan"]["total"] == pytest.approx(plan.monthly)
    quality = {r["scenario"]: r for r in table2(study)}
    assert quality["frugal plan"]["retention_vs_baseline"] == pytest.approx(0.95)
    report = to_json(study)
    assert report["paper"] == PAPER
    assert PAPER["saving"] == pytest.approx(1 - 3980 / 18420, abs=5e-4)  # the paper's 78.4%
