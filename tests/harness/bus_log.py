"""Everything on a bus so far, decoded, and folded the way the scaler folds it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kedahttp.activity.aggregate import Aggregator
from kedahttp.activity.bus import CAUGHT_UP, open_transport
from kedahttp.activity.codec import decode


async def messages_on(url: str) -> list[Any]:
    transport = open_transport(url)
    await transport.connect()
    found = []
    try:
        async with asyncio.timeout(10):
            async for item in transport.subscribe(since=0.0):
                if item is CAUGHT_UP:
                    break
                found.append(decode(item))  # type: ignore[arg-type]
    finally:
        await transport.close()
    return found


async def aggregated(url: str) -> Aggregator:
    """The scaler's Aggregator after folding every message on the bus at ``url``."""
    aggregator = Aggregator()
    now = time.time()
    for message in await messages_on(url):
        aggregator.fold(message, now)
    return aggregator
