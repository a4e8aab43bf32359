"""Who is calling: API keys to tenants, and a token bucket per tenant.

Keys are kept only as SHA-256 digests, so a heap dump or a debug print of the snapshot does not
leak them, and lookup is a dict access (no early-exit string comparison to time).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from frugal.gateway.config import RateLimit
from frugal.gateway.errors import GatewayError

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class TenantInfo:
    name: str
    team: str = ""
    project: str = ""
    env: str = ""
    rate_limit: RateLimit | None = None


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(headers: dict[str, str] | object) -> str | None:
    """The API key of a request: ``Authorization: Bearer KEY`` or ``x-api-key: KEY``."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    auth = get("Authorization") or ""
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return (get("x-api-key") or "").strip() or None


def authenticate(
    key: str | None, keys: dict[str, TenantInfo], required: bool, anonymous: TenantInfo
) -> TenantInfo:
    """The caller's tenant; 401 for a wrong key, or for no key when auth is required."""
    if key is None:
        if required:
            raise GatewayError(401, "missing API key (Authorization: Bearer KEY)", code="no_key")
        return anonymous
    tenant = keys.get(key_digest(key))
    if tenant is None:
        raise GatewayError(401, "invalid API key", code="invalid_api_key")
    return tenant


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """Token buckets by tenant; state survives configuration reloads."""

    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def check(self, tenant: str, limit: RateLimit | None) -> None:
        """Take one token or raise 429 with the seconds until the next one."""
        if limit is None:
            return
        now = self.clock()
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = _Bucket(float(limit.burst), now)
        rate = limit.requests_per_second
        bucket.tokens = min(float(limit.burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return
        wait = (1 - bucket.tokens) / rate
        raise GatewayError(
            429,
            f"rate limit of {rate:g} requests/s exceeded for tenant {tenant}",
            code="rate_limit_exceeded",
            retry_after=math.ceil(wait),
        )
