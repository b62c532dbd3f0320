"""A Server-Sent Events reader over an aiohttp response, for tests of event streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp


class EventReader:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.events: list[tuple[str, Any]] = []

    async def next(self) -> tuple[str, Any]:
        name, data = "message", []
        while True:
            raw = await self.response.content.readline()
            if not raw:
                raise EOFError("event stream ended")
            line = raw.decode().rstrip("\n")
            if not line:
                if data:
                    event = (name, json.loads("\n".join(data)))
                    self.events.append(event)
                    return event
                name = "message"
                continue
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)

    async def until(self, predicate: Callable[[str, Any], bool], timeout: float) -> tuple[str, Any]:
        """The first event (from now on) for which ``predicate(name, data)`` holds."""
        async with asyncio.timeout(timeout):
            while True:
                name, data = await self.next()
                if predicate(name, data):
                    return name, data
