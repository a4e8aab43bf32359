"""Polling with a generous deadline: tests wait for a state, never assert on durations."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 90.0, what: str = "condition") -> T:
    """Call ``check`` until it returns something truthy (returned) or the deadline passes.

    Exceptions raised by ``check`` count as "not yet" (objects may not exist yet); the last one
    is chained to the timeout error.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as err:
            last_error = err
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}") from last_error
        time.sleep(0.25)
