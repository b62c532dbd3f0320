"""A route source the test controls: the proxy gets these backends and endpoints, then whatever the test sets."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from kedahttp.proxy.sources import Backend, RouteSink


class StaticSource:
    name = "static"

    def __init__(self, backends: Sequence[Backend], endpoints: dict[str, list[str]]) -> None:
        self.backends = list(backends)
        self.endpoints = endpoints

    async def run(self, sink: RouteSink) -> None:
        sink.replace_backends(self.backends)
        for key, endpoints in self.endpoints.items():
            sink.set_endpoints(key, endpoints)
        await asyncio.Event().wait()
