"""Waiting for a condition in async tests: poll briefly, fail with a message naming what never happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> float:
    """Polls ``condition`` every 10 ms until it is truthy; returns the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started
