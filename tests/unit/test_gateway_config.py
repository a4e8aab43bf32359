"""The gateway config file: parsing with the API models, secrets, validation, compilation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from frugal.gateway.config import load_config, parse_config
from frugal.gateway.snapshot import build
from frugal.gateway.testing import cache_policy, routing_policy

EXAMPLE = """
namespace: team-a
auth: {required: true}
tenants:
  - name: search
    apiKeys: [sk-inline, {env: SEARCH_KEY}, {file: KEYFILE}]
    cost: {team: search, project: ranker, environment: prod}
    rateLimit: {requestsPerSecond: 5, burst: 10}
upstreams:
  small:
    urls: [http://small-0:8000, http://small-1:8000/v1]
    servedName: llama-8b
    pricePerHour: 2.0
    tokensPerSecond: 1000
    scaledToZero: true
    coldStartBudget: 90s
  large:
    url: http://large:8000
    servedName: llama-70b
    inputPricePer1M: 0.5
    outputPricePer1M: 1.5
secrets:
  openai/key: {env: OPENAI_KEY}
policies:
  - apiVersion: frugal.dev/v1alpha1
    kind: RoutingPolicy
    metadata: {name: chat}
    spec:
      modelName: chat
      tiers:
        - {name: small, endpointRef: {name: small}, weight: 60}
        - {name: large, endpointRef: {name: large}, weight: 30, match: [code]}
        - name: gpt
          weight: 10
          external:
            url: https://api.example.com/v1
            model: gpt-x
            inputPricePer1M: 2.5
            outputPricePer1M: 10
            apiKeySecretRef: {name: openai, key: key}
      fallback: {order: [large, gpt]}
      shadow: {sampleRate: 0.05, referenceTier: gpt}
    status:
      weights: {small: 40, large: 40, gpt: 20}
  - apiVersion: frugal.dev/v1alpha1
    kind: CachePolicy
    metadata: {name: chat-cache}
    spec:
      targetRef: {kind: RoutingPolicy, name: chat}
      semantic: {enabled: true, threshold: 0.9, embedding: {model: hashed-ngram}}
      exclude: {patterns: ['\\b\\d{16}\\b']}
"""


def test_example_file_parses_and_compiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keyfile = tmp_path / "key.txt"
    keyfile.write_text("sk-from-file\n")
    path = tmp_path / "gateway.yaml"
    path.write_text(EXAMPLE.replace("KEYFILE", str(keyfile)))
    monkeypatch.setenv("SEARCH_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_KEY", "sk-openai")
    config = load_config(path)
    made = []

    def make_cache(policy, ns):
        made.append((policy.metadata.name, ns))
        return "cache-object"

    snap = build(config, make_cache)  # type: ignore[arg-type]
    assert made == [("chat-cache", "team-a")]
    route = snap.resolve("chat")
    assert route.weights == {"small": 40, "large": 40, "gpt": 20}  # status wins
    assert route.cache == "cache-object"
    assert route.fallback_order == ("large", "gpt")
    small, large, gpt = route.tiers
    assert small.upstream.urls == ("http://small-0:8000", "http://small-1:8000")
    assert small.upstream.scaled_to_zero
    assert small.upstream.cold_start_budget == 90
    # $2/h over 1000 tokens/s = $2 / 3.6M tokens
    assert small.upstream.price_in_per_1m == pytest.approx(2.0 / 3.6)
    assert large.match == frozenset({"code"})
    assert (large.upstream.price_in_per_1m, large.upstream.price_out_per_1m) == (0.5, 1.5)
    assert gpt.upstream.external
    assert gpt.upstream.api_key == "sk-openai"
    assert gpt.upstream.urls == ("https://api.example.com",)
    # An endpoint called by its served name: its metrics are labelled with its own name.
    assert snap.resolve("llama-70b").policy == "large"
    tenants = {t.name for t in snap.keys.values()}
    assert tenants == {"search"}
    assert len(snap.keys) == 3
    assert snap.auth_required


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"upstreams": {}}, "not in upstreams"),
        ({"policies": [routing_policy("a", "m", [])]}, "tiers"),
        (
            {"upstreams": {"x": {"servedName": "x"}}},
            "exactly one of url or urls",
        ),
        (
            {"tenants": [{"name": "t", "apiKeys": [{"value": "a", "env": "B"}]}]},
            "exactly one of value, env or file",
        ),
    ],
)
def test_invalid_configs_are_refused(change: dict, message: str) -> None:
    data = {
        "upstreams": {"s": {"url": "http://s:8000", "servedName": "s"}},
        "policies": [
            routing_policy("p", "m", [{"name": "s", "endpointRef": {"name": "s"}, "weight": 100}])
        ],
    }
    with pytest.raises((ValidationError, ValueError), match=message):
        parse_config({**data, **change})


def test_duplicate_model_names_and_unknown_fallback_tiers_are_refused() -> None:
    up = {"s": {"url": "http://s:8000", "servedName": "s"}}
    tier = [{"name": "s", "endpointRef": {"name": "s"}, "weight": 100}]
    with pytest.raises(ValidationError, match="two RoutingPolicies"):
        parse_config(
            {
                "upstreams": up,
                "policies": [routing_policy("a", "m", tier), routing_policy("b", "m", tier)],
            }
        )
    with pytest.raises(ValidationError, match="unknown tiers"):
        parse_config(
            {
                "upstreams": up,
                "policies": [routing_policy("a", "m", tier, fallback={"order": ["x"]})],
            }
        )


def test_missing_secret_is_an_error_at_compile_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_KEY", raising=False)
    config = parse_config({"tenants": [{"name": "t", "apiKeys": [{"env": "NOPE_KEY"}]}]})
    with pytest.raises(KeyError, match="NOPE_KEY"):
        build(config, lambda p, ns: None)  # type: ignore[arg-type, return-value]


def test_two_cache_policies_on_one_target_are_refused() -> None:
    config = parse_config(
        {
            "upstreams": {"s": {"url": "http://s:8000", "servedName": "s"}},
            "policies": [
                cache_policy("a", "s", kind="InferenceEndpoint"),
                cache_policy("b", "s", kind="InferenceEndpoint"),
            ],
        }
    )
    with pytest.raises(ValueError, match="two CachePolicies"):
        build(config, lambda p, ns: None)  # type: ignore[arg-type, return-value]
