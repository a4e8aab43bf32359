"""Pure parts of the gateway: features and classes, tier choice, fallback order, affinity."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from frugal.api.routing import Classifier, FeatureRule, RoutingPolicy
from frugal.gateway import classify, routing


def chat(*contents: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    for i, text in enumerate(contents):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return {"model": "m", "messages": messages}


def test_features_estimate_tokens_turns_code_and_maths() -> None:
    f = classify.features(chat("a" * 40, "ok", "more"), "chat")
    assert f.prompt_tokens == -(-len("user: " + "a" * 40 + "\nassistant: ok\nuser: more") // 4)
    assert f.turns == 2
    assert not f.has_code
    assert not f.has_math
    assert classify.features(chat("fix this:\n```py\nprint(1)\n```"), "chat").has_code
    assert classify.features(chat("def add(a, b):\n    return a + b"), "chat").has_code
    assert classify.features(chat("solve for x: 3x + 4 = 10"), "chat").has_math
    assert classify.features(chat("what is \\frac{1}{2} of 8?"), "chat").has_math
    assert not classify.features(chat("tell me about the weather in Paris"), "chat").has_code
    completion = classify.features({"prompt": "SELECT * FROM users;"}, "completion")
    assert completion.has_code
    assert completion.turns == 1


def test_content_parts_count_as_text() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}]}
    assert classify.prompt_text(body, "chat") == "user: hi there"


def test_rules_in_order_then_heuristic_then_default() -> None:
    classifier = Classifier(
        type="heuristic",
        rules=[
            FeatureRule(**{"class": "legal", "keywords": ["contract", "liability"]}),
            FeatureRule(**{"class": "long-chat", "minTurns": 3}),
            FeatureRule(**{"class": "short", "maxPromptTokens": 5}),
        ],
        default_class="general",
    )

    def cls(body: dict) -> str:
        return classify.classify(classifier, classify.features(body, "chat"))

    assert cls(chat("review this Contract please, it is long enough")) == "legal"
    assert cls(chat("contractual is not the keyword here at all")) != "legal"
    assert cls(chat("one one one", "a", "two two two", "b", "three three")) == "long-chat"
    assert cls(chat("hi")) == "short"
    assert cls(chat("please write code:\n```\nx = 1\n```")) == "code"
    assert cls(chat("integrate x^2 from 0 to 1, show the derivative too")) == "math"
    assert cls(chat("tell me a story about a friendly dragon")) == "general"
    rules_only = Classifier(type="rules", default_class="general")
    assert classify.classify(rules_only, classify.features(chat("```x```"), "chat")) == "general"


def test_allowed_tiers_by_match_or_all() -> None:
    matches = [frozenset(), frozenset({"code"}), frozenset({"math", "code"})]
    assert classify.allowed(matches, "code") == [0, 1, 2]
    assert classify.allowed(matches, "general") == [0]
    assert classify.allowed([frozenset({"code"})], "general") == [0]  # nobody claims it: all


def test_weighted_pick_follows_weights_and_is_seeded() -> None:
    weights = {"small": 70, "medium": 20, "large": 10}
    names = list(weights)
    counts = Counter(routing.pick(names, weights, random.Random(7)) for _ in range(1))
    rng = random.Random(42)
    counts = Counter(routing.pick(names, weights, rng) for _ in range(10_000))
    assert 0.67 < counts["small"] / 10_000 < 0.73
    assert 0.17 < counts["medium"] / 10_000 < 0.23
    assert 0.08 < counts["large"] / 10_000 < 0.12
    first = [routing.pick(names, weights, random.Random(3)) for _ in range(5)]
    assert first == [routing.pick(names, weights, random.Random(3)) for _ in range(5)]
    assert routing.pick(["a", "b"], {"a": 0, "b": 0}, rng) == "a"
    assert {routing.pick(["a", "b"], {"a": 0, "b": 5}, rng) for _ in range(50)} == {"b"}


def test_attempt_order_uses_fallback_order_or_more_capable_tiers() -> None:
    tiers = ["small", "medium", "large"]
    assert routing.attempt_order("small", tiers, []) == ["small", "medium", "large"]
    assert routing.attempt_order("medium", tiers, []) == ["medium", "large"]
    assert routing.attempt_order("large", tiers, []) == ["large"]
    assert routing.attempt_order("medium", tiers, ["large", "medium", "small"]) == [
        "medium",
        "large",
        "small",
    ]


def policy(status: dict | None = None) -> RoutingPolicy:
    doc = {
        "metadata": {"name": "p"},
        "spec": {
            "modelName": "m",
            "tiers": [
                {"name": "small", "endpointRef": {"name": "s"}, "weight": 80, "maxWeight": 90},
                {"name": "large", "endpointRef": {"name": "l"}, "weight": 20},
            ],
        },
    }
    if status is not None:
        doc["status"] = status
    return RoutingPolicy.model_validate(doc)


def test_status_weights_override_spec_when_they_fit() -> None:
    assert routing.effective_weights(policy()) == {"small": 80, "large": 20}
    assert routing.effective_weights(policy({"weights": {"small": 50, "large": 50}})) == {
        "small": 50,
        "large": 50,
    }
    # above small's maxWeight, or not summing to 100: the spec's weights stand
    assert routing.effective_weights(policy({"weights": {"small": 95, "large": 5}})) == {
        "small": 80,
        "large": 20,
    }
    assert routing.effective_weights(policy({"weights": {"small": 10}})) == {
        "small": 80,
        "large": 20,
    }


def test_prefix_affinity_is_stable_and_minimally_disruptive() -> None:
    system = "You are a helpful banking assistant. " * 40
    key = routing.prefix_key(system + "question one", 64)
    assert key == routing.prefix_key(system + "a different question", 64)
    assert routing.prefix_key("short prompt", 64) is None
    replicas = [f"http://r{i}" for i in range(4)]
    keys = [routing.prefix_key(f"{i:04d}" + system, 64) for i in range(400)]
    assert all(k is not None for k in keys)
    before = {k: routing.rendezvous(k, replicas) for k in keys if k}
    assert len(set(before.values())) == 4
    after = {k: routing.rendezvous(k, replicas[:3]) for k in keys if k}
    moved = [k for k in before if before[k] != after[k]]
    assert all(before[k] == "http://r3" for k in moved)  # only r3's prefixes moved
    assert routing.choose_replica(["only"], None, random.Random()) == "only"


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://h:8000", "http://h:8000"),
        ("http://h:8000/", "http://h:8000"),
        ("http://h:8000/v1", "http://h:8000"),
        ("https://api.example.com/v1/", "https://api.example.com"),
    ],
)
def test_base_url(url: str, base: str) -> None:
    from frugal.gateway.snapshot import base_url

    assert base_url(url) == base
