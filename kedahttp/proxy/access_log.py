"""The opt-in access log: one JSON line per sampled request, written in batches off the request path.

ACCESS_LOG_SAMPLE_RATE (0 to 1, default 0: off) picks the fraction of finished requests that are logged.
A sampled request costs the data path one random draw and one tuple appended to a list: the references
it already holds (the upstream head it sent, the client address) and no formatting. A background task
turns the batch into JSON lines every ``FLUSH_SECONDS`` and writes it from a worker thread, so a slow
stdout never stalls the event loop. The buffer is bounded: past ``MAX_PENDING`` unwritten entries, new
ones are dropped and counted (``dropped``), never queued without limit.

Lines go to stdout (the process's own logs go to stderr), one object each:
``{"ts", "backend", "client", "method", "path", "status", "duration_ms", "cold"}``. No header is logged,
and ``path`` stops before the query string: queries carry tokens (``?access_token=``, signed URLs) and a
log must never hold a secret.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from typing import Final, TextIO

from kedahttp.process.lifecycle import BaseComponent
from kedahttp.process.tasks import TaskOwner

FLUSH_SECONDS: Final = 0.5
MAX_PENDING: Final = 20_000

# (wall time, backend, client address, upstream request head, status, duration seconds, held)
Entry = tuple[float, str, bytes, bytes, int, float, bool]


def format_entry(entry: Entry) -> str:
    """One JSON line (without the newline). Method and path (without its query) are read from the request
    line of the head."""
    at, backend, client, head, status, duration, cold = entry
    request_line = head[:head.find(b"\r\n")] if head else b""
    method, _, rest = request_line.partition(b" ")
    path = (rest.rpartition(b" ")[0] if b" " in rest else rest).partition(b"?")[0]
    return json.dumps({
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z",
        "backend": backend,
        "client": client.decode("latin-1"),
        "method": method.decode("latin-1"),
        "path": path.decode("latin-1"),
        "status": status,
        "duration_ms": round(duration * 1000, 3),
        "cold": cold,
    })


class AccessLog(BaseComponent):
    """Samples finished requests (``record``) and writes them in the background."""

    name = "access-log"

    def __init__(self, sample_rate: float, stream: TextIO | None = None, *,
                 flush_seconds: float = FLUSH_SECONDS, draw: Callable[[], float] = random.random) -> None:
        self.sample_rate = sample_rate
        self.stream = stream
        self.flush_seconds = flush_seconds
        self.draw = draw
        self.pending: list[Entry] = []
        self.written = 0
        self.dropped = 0
        self.tasks = TaskOwner("access-log")

    # -- the data path -------------------------------------------------------------------------------

    def record(self, backend: str, client: bytes, head: bytes, status: int, duration: float, cold: bool) -> None:
        """A request finished; kept with probability ``sample_rate``."""
        if self.draw() >= self.sample_rate:
            return
        pending = self.pending
        if len(pending) >= MAX_PENDING:
            self.dropped += 1
            return
        pending.append((time.time(), backend, client, head, status, duration, cold))

    # -- off it --------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.tasks.spawn(self._run(), "flush")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()

    async def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        await asyncio.to_thread(self._write, batch)
        self.written += len(batch)

    def _write(self, batch: list[Entry]) -> None:
        """In a worker thread: formatting and the write both stay off the event loop's turn."""
        stream = self.stream if self.stream is not None else sys.stdout
        stream.write("".join(format_entry(entry) + "\n" for entry in batch))
        stream.flush()

    async def close(self) -> None:
        await self.tasks.close()
        await self.flush()
