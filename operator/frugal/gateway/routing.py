"""Pure routing decisions: which tier first, where to fall back, which replica.

Weighted random choice takes an injected ``random.Random`` so a test (or a replay) can fix the
sequence. Replicas are chosen by rendezvous (highest-random-weight) hashing of the prompt prefix:
requests sharing a prefix land on the same replica, whose vLLM prefix cache then already holds
it, and adding or removing a replica only moves the prefixes that hashed to it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence

from frugal.api.routing import RoutingPolicy
from frugal.policy.reroute import current_weights


def effective_weights(policy: RoutingPolicy) -> dict[str, int]:
    """status.weights when they still fit the spec (the reroute loop's choice), else spec's."""
    remembered = policy.status.weights if policy.status else None
    return current_weights(policy.spec, remembered or None)


def pick(names: Sequence[str], weights: Mapping[str, int], rng: random.Random) -> str:
    """One tier by weight among ``names``; the first (cheapest) when all weigh zero."""
    positive = [(n, weights.get(n, 0)) for n in names if weights.get(n, 0) > 0]
    if not positive:
        return names[0]
    total = sum(w for _, w in positive)
    point = rng.random() * total
    for name, weight in positive:
        point -= weight
        if point < 0:
            return name
    return positive[-1][0]


def attempt_order(first: str, tiers: Sequence[str], fallback_order: Sequence[str]) -> list[str]:
    """``first``, then ``fallback.order`` (or, when empty, the more capable tiers in order).

    Tiers are listed cheapest first, so "more capable" means "later in the list".
    """
    rest = list(fallback_order) if fallback_order else list(tiers[tiers.index(first) + 1 :])
    order = [first]
    for name in rest:
        if name not in order:
            order.append(name)
    return order


def prefix_key(prompt: str, min_prefix_tokens: int, chars_per_token: int = 4) -> str | None:
    """The affinity key of a prompt: its first ``min_prefix_tokens`` tokens, or None if shorter."""
    length = min_prefix_tokens * chars_per_token
    if len(prompt) < length:
        return None
    return hashlib.blake2b(prompt[:length].encode(), digest_size=16).hexdigest()


def rendezvous(key: str, replicas: Sequence[str]) -> str:
    """The replica with the highest hash of (key, replica): stable as replicas come and go."""
    return max(
        replicas,
        key=lambda r: hashlib.blake2b(f"{key}\0{r}".encode(), digest_size=8).digest(),
    )


def choose_replica(replicas: Sequence[str], affinity_key: str | None, rng: random.Random) -> str:
    if len(replicas) == 1:
        return replicas[0]
    if affinity_key is not None:
        return rendezvous(affinity_key, replicas)
    return replicas[rng.randrange(len(replicas))]
