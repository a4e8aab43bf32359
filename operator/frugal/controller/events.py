"""Kubernetes Events for decisions a user should see.

Posted with ``kopf.event`` so that they are independent of kopf's posting level, which is kept
at WARNING to keep kopf's per-handler chatter in the logs and out of ``kubectl describe``.
"""

from __future__ import annotations

from typing import Any

import kopf


def normal(body: Any, reason: str, message: str) -> None:
    kopf.event(body, type="Normal", reason=reason, message=message[:1024])


def warning(body: Any, reason: str, message: str) -> None:
    kopf.event(body, type="Warning", reason=reason, message=message[:1024])
