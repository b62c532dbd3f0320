"""Keeps Python's cyclic garbage collector off the big structures a process builds once and then keeps.

At 10,000 apps a proxy holds hundreds of thousands of long-lived objects (the route table, the watch
caches, the metrics layout). Every full collection walks all of them: 30 to 90 ms with the event loop
stopped, which a scrape, a live-page tick or a request then waits for. Once such a structure has been
built and has stayed unchanged for a moment, everything alive is moved to the collector's permanent
generation (``gc.freeze``), so later full collections walk only what came after. Reference counting
still frees frozen objects that are dropped; only garbage in reference cycles among them would wait,
and the young generations are collected just before each freeze so that little is caught.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Final

from kedahttp.process.lifecycle import BaseComponent
from kedahttp.process.tasks import TaskOwner

log = logging.getLogger("kedahttp.process")

CHECK_SECONDS: Final = 1.0


class FreezeWhenSettled(BaseComponent):
    """Freezes what is alive once ``version()`` has changed and then held still for one check."""

    name = "gc-freeze"

    def __init__(self, version: Callable[[], object], check_seconds: float = CHECK_SECONDS) -> None:
        self.version = version
        self.check_seconds = check_seconds
        self.freezes = 0
        self.frozen = asyncio.Event()  # set at the first freeze
        self._tasks = TaskOwner("gc-freeze")

    async def start(self) -> None:
        self._tasks.spawn(self._watch(), "watch")

    async def close(self) -> None:
        await self._tasks.close()

    async def _watch(self) -> None:
        seen = self.version()
        pending = True  # what start-up built is frozen once it has settled too
        while True:
            await asyncio.sleep(self.check_seconds)
            now = self.version()
            if now != seen:
                seen, pending = now, True
            elif pending:
                self.freeze()
                pending = False

    def freeze(self) -> None:
        gc.collect(1)  # the young generations' garbage is freed, not frozen with the rest
        gc.freeze()
        self.freezes += 1
        self.frozen.set()
        log.debug("long-lived objects frozen", extra={"frozen": gc.get_freeze_count()})
