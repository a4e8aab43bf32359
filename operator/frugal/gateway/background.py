"""Fire-and-forget work off the user's path (shadow comparisons, false-hit verifications).

At most ``limit`` tasks run at once (the caller's current limit, which a reload may change); work
that finds the bound full is refused, never queued,
so it can neither slow nor pile up behind user traffic. Tasks are kept referenced until done
(the event loop holds only weak references) and cancelled together at shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class BoundedTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Callable[[], Coroutine[Any, Any, None]], limit: int) -> bool:
        """Run ``work()`` as a task unless ``limit`` tasks run already; True if started.

        A factory, not a coroutine: refused work is never created, so never left un-awaited.
        """
        if len(self._tasks) >= limit:
            return False
        task = asyncio.create_task(work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def cancel_all(self) -> None:
        """Cancel what is outstanding and wait for it to end (shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)
