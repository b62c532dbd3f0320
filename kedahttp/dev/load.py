"""A small closed-loop load generator for the dev loop: N workers, each sending its next request when the
last one is answered, for a fixed time. Enough to watch an app scale out; not a benchmark (use wrk).

    python -m kedahttp.dev.load --host hello.localhost --concurrency 20 --duration 20 --sleep-ms 200

It reports requests, status codes, latency percentiles, the replicas that answered (the sample app's
``X-Replica-Id``) and how many responses were cold starts (``X-KEDAHTTP-Cold-Start``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    cold_starts: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    replicas: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(int(len(ordered) * p / 100), len(ordered) - 1)]

    def summary(self) -> str:
        rate = self.requests / self.seconds if self.seconds else 0.0
        statuses = " ".join(f"{code}:{n}" for code, n in sorted(self.statuses.items())) or "-"
        return (
            f"{self.requests} requests in {self.seconds:.1f}s ({rate:.1f}/s), errors {self.errors}, "
            f"statuses {statuses}, cold starts {self.cold_starts}\n"
            f"latency p50 {self.percentile(50) * 1000:.0f} ms, p90 {self.percentile(90) * 1000:.0f} ms, "
            f"p99 {self.percentile(99) * 1000:.0f} ms, max {max(self.latencies, default=0) * 1000:.0f} ms\n"
            f"replicas answering: {len(self.replicas)} "
            f"({', '.join(f'{r}:{n}' for r, n in sorted(self.replicas.items()))})"
        )


async def run_load(url: str, host: str | None, concurrency: int, duration_seconds: float,
                   sleep_ms: float = 0.0, timeout_seconds: float = 90.0,
                   stop: asyncio.Event | None = None) -> LoadResult:
    """Runs the load until ``duration_seconds`` pass or ``stop`` is set."""
    result = LoadResult()
    headers = {"Host": host} if host else {}
    if sleep_ms > 0:
        url += ("&" if "?" in url else "?") + f"sleep_ms={sleep_ms:g}"
    deadline = time.monotonic() + duration_seconds
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            began = time.monotonic()
            try:
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    result.statuses[response.status] += 1
                    replica = response.headers.get("X-Replica-Id")
                    if replica:
                        result.replicas[replica] += 1
                    if response.headers.get("X-KEDAHTTP-Cold-Start") == "true":
                        result.cold_starts += 1
            except (TimeoutError, aiohttp.ClientError):
                result.errors += 1
                await asyncio.sleep(0.05)
            result.requests += 1
            result.latencies.append(time.monotonic() - began)

    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    result.seconds = time.monotonic() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kedahttp.dev.load", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080/")
    parser.add_argument("--host", default="hello.localhost", help="Host header (empty: the URL's)")
    parser.add_argument("--concurrency", "-c", type=int, default=20)
    parser.add_argument("--duration", "-d", type=float, default=20.0, help="seconds")
    parser.add_argument("--sleep-ms", type=float, default=200.0, help="ask the sample app to take this long")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.duration <= 0:
        parser.error("--concurrency must be at least 1 and --duration greater than 0")
    print(f"load: {args.concurrency} concurrent requests for {args.duration:g}s to {args.url} "
          f"(Host: {args.host or '-'}, sleep_ms={args.sleep_ms:g})", file=sys.stderr)
    result = asyncio.run(run_load(args.url, args.host or None, args.concurrency, args.duration, args.sleep_ms))
    print(result.summary())
    return 0 if result.requests and not result.errors else 1


if __name__ == "__main__":
    sys.exit(main())
