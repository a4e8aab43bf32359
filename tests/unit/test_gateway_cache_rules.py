"""Pure cache rules: exact keys, exclusions, the semantic split, the false-hit guard, stores."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest

from frugal.gateway import cachekeys, guard
from frugal.gateway.cachekeys import Exclusion
from frugal.gateway.store import MemoryStore


def body(text: str, **params: object) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **params}


def test_exact_key_ignores_whitespace_stream_and_user_but_not_answer_params() -> None:
    key = cachekeys.exact_key("m", "chat", body("Hello   world"))
    assert key == cachekeys.exact_key("m", "chat", body(" Hello world ", stream=True, user="u"))
    assert key != cachekeys.exact_key("m", "chat", body("Hello world", temperature=0.2))
    assert key != cachekeys.exact_key("m", "chat", body("Hello world", max_tokens=5))
    assert key != cachekeys.exact_key("other", "chat", body("Hello world"))
    assert key != cachekeys.exact_key("m", "chat", body("hello world"))
    assert key != cachekeys.exact_key("m", "completion", {"prompt": "user: Hello world"})


def test_exclusions() -> None:
    rule = Exclusion(True, 0.7, (re.compile(r"\b\d{4}-\d{4}-\d{4}-\d{4}\b"),))
    assert cachekeys.excluded(rule, body("hi"), "hi") is None
    assert cachekeys.excluded(rule, body("hi", tools=[{"type": "function"}]), "hi") == "tools"
    assert cachekeys.excluded(rule, body("hi", temperature=0.9), "hi") == "temperature"
    assert cachekeys.excluded(rule, body("hi", temperature=0.7), "hi") is None
    assert cachekeys.excluded(rule, body("hi", n=3), "hi") == "n"
    card = "my card 1234-5678-9012-3456 was stolen"
    assert cachekeys.excluded(rule, body(card), card) == "pattern"
    lenient = Exclusion(False, None, ())
    assert cachekeys.excluded(lenient, body("hi", tools=[{}], temperature=2.0), "hi") is None


def test_semantic_query_is_last_user_message_and_context_is_the_rest() -> None:
    a = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q"}]}
    b = {"messages": [{"role": "system", "content": "Be long."}, {"role": "user", "content": "Q"}]}
    qa, ca = cachekeys.semantic_query("chat", a) or ("", "")
    qb, cb = cachekeys.semantic_query("chat", b) or ("", "")
    assert qa == qb == "Q"
    assert ca != cb
    assert (
        cachekeys.semantic_query("chat", {"messages": [{"role": "assistant", "content": "x"}]})
        is None
    )
    assert cachekeys.context_digest("m", "chat", ca, "e1") != cachekeys.context_digest(
        "m", "chat", ca, "e2"
    )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I cancel my card?", "How do I not cancel my card?"),
        ("I can log in", "I can't log in"),
        ("Why is my card not working?", "Why is my card working?"),
        ("Transfer 50 dollars to savings", "Transfer 500 dollars to savings"),
        ("Transfer $50 to savings", "Transfer $50.01 to savings"),
        ("What happened on day 3?", "What happened on day three hundred?"),
        ("Book two tickets", "Book three tickets"),
        ("What is the capital of France?", "What is the capital of Spain?"),
        ("Can I top up with Apple Pay?", "Can I top up with Google Pay?"),
        ("Send the report to alice@example.com", "Send the report to bob@example.com"),
        ("Is the ATM fee waived?", "Is the fee waived?"),
        ("Paris hotels near the river", "London hotels near the river"),
        ("Open https://a.example/x", "Open https://b.example/x"),
        ("How do I reset my PIN?", "How do I reset my password?"),
        ("Is there a fee at the ATM?", "Is there a fee at the ATM? No?"),
    ],
)
def test_guard_refuses_different_facts(a: str, b: str) -> None:
    assert not guard.compatible(a, b)
    assert not guard.compatible(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How can I cancel a transfer?", "How do I cancel my transfer?"),
        ("Why is my card not working?", "Why isn't my card working?"),
        ("Can I change from one currency to another?", "Can I change to another currency?"),
        ("My refund is missing from my statement.", "There's a refund missing from my statement"),
        ("What is the minimum age to open an account?", "What's the minimum age for an account?"),
        ("Send $50 to Alice", "Please send $50 to Alice"),
        ("Transfer 1,000 dollars", "transfer 1000 dollars"),
        # names in either case, plural or possessive
        ("How do I reset my PIN?", "how do i reset my pin"),
        ("Can I top up with Apple Pay?", "can I top up with apple pay"),
        ("Which ATMs can I use?", "Which ATM's can I use?"),
        ("Exchange rate for my card payment is wrong", "the card payment exchange rate is wrong"),
        # worded differently: a negation alone does not tell them apart
        ("My card stopped working", "Why is my card not working anymore?"),
        ("Why won't my card show up on the app?", "how do I get my card to show in the app?"),
    ],
)
def test_guard_accepts_paraphrases_with_the_same_facts(a: str, b: str) -> None:
    assert guard.compatible(a, b)


def test_memory_store_scopes_ttl_and_bounds() -> None:
    now = [0.0]
    store = MemoryStore(max_entries=2, clock=lambda: now[0])

    async def run() -> None:
        await store.put("a", "k", {"v": 1}, ttl=10)
        assert await store.get("a", "k") == {"v": 1}
        assert await store.get("b", "k") is None  # another scope never sees it
        now[0] = 11
        assert await store.get("a", "k") is None  # expired
        for i in range(3):
            await store.put("a", f"k{i}", {"v": i}, ttl=100)
        assert await store.get("a", "k0") is None  # oldest evicted past max_entries
        assert await store.get("a", "k2") == {"v": 2}

        v = np.array([1.0, 0.0], dtype=np.float32)
        near = np.array([0.96, 0.28], dtype=np.float32)
        await store.add("a", context="c", vector=v, query="q one", entry={"e": 1}, ttl=100)
        assert await store.search("a", "c", near, 0.9, lambda q: True) == (
            {"e": 1},
            pytest.approx(0.96),
        )
        assert await store.search("a", "c", near, 0.97, lambda q: True) is None  # below threshold
        assert await store.search("a", "other", near, 0.9, lambda q: True) is None  # context
        assert await store.search("b", "c", near, 0.9, lambda q: True) is None  # scope
        assert await store.search("a", "c", near, 0.9, lambda q: False) is None  # guard
        # a refused best candidate does not hide an accepted second best
        await store.add("a", context="c", vector=near, query="q two", entry={"e": 2}, ttl=100)
        found = await store.search("a", "c", near, 0.9, lambda q: q == "q one")
        assert found is not None
        assert found[0] == {"e": 1}
        now[0] = 200
        assert await store.search("a", "c", near, 0.5, lambda q: True) is None  # expired

    asyncio.run(run())
