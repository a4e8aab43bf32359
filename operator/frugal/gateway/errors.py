"""OpenAI-style errors: every refusal is ``{"error": {message, type, param, code}}``.

Clients written against the OpenAI SDK branch on the status and on ``error.type``; keeping both
faithful (400 invalid_request_error, 401 authentication_error, 404 not_found_error, 413, 429
rate_limit_error, 5xx api_error) lets them retry, back off or give up correctly.
"""

from __future__ import annotations

import json
from typing import Any

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_type(status: int) -> str:
    return TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


class GatewayError(Exception):
    """A request the gateway answers with an error, in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        kind: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.param = param
        self.kind = kind or error_type(status)
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return error_body(str(self), self.kind, self.code, self.param)

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after + 0.499)))}


def error_body(
    message: str, kind: str, code: str | int | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def upstream_status(status: int) -> int:
    """What the client sees for an upstream's error status.

    The caller's own mistakes (400, 404, 413, 422) keep their status; 429 and 503 keep theirs so
    clients back off; an upstream's 401/403 is the gateway's credential problem, not the
    caller's, and like every other failure it becomes 502 Bad Gateway.
    """
    if status in {400, 404, 413, 422, 429, 503}:
        return status
    return 502


def from_upstream(status: int, payload: bytes, tier: str) -> GatewayError:
    """The client-facing error for an upstream's error answer, keeping its message and code."""
    message, code, param = f"tier {tier} answered HTTP {status}", None, None
    try:
        data = json.loads(payload)
    except ValueError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        message = str(err.get("message") or message)
        code = err.get("code") if isinstance(err.get("code"), str) else None
        param = err.get("param") if isinstance(err.get("param"), str) else None
    elif isinstance(err, str):
        message = err
    # The type follows the status the client sees (engines name their types their own way).
    return GatewayError(
        upstream_status(status), message, code=code or f"upstream_{status}", param=param
    )
