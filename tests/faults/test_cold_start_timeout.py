"""A cold start that never ends: 400 requests held for a backend that never accepts a connection are all
answered 504 with Retry-After at the cold-start timeout, and the proxy's memory and descriptors return to
where they were. Three rounds: the allocator keeps some memory after the first ones (about 1 MiB each,
then flat), so a leak shows as growth in the last round."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from pathlib import Path

import pytest

from tests.harness.fault_clients import STATUS, HttpConnection, send
from tests.harness.procs import ProxyProcess, hwm_kb
from tests.harness.servers import free_port
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(90)

HELD = 400
ROUNDS = 3
TIMEOUT_SECONDS = 1.5
# Bounds on the proxy's resident memory, in KiB: after every round relative to before the first, and the
# last round relative to the one before (a leak of 4 KiB per held request would pass it).
BACK_NEAR_BASELINE_KB = 6 * 1024
LAST_ROUND_GROWTH_KB = 1536


def held_gauge(proxy: ProxyProcess) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{proxy.metrics_port}/metrics", timeout=5).read().decode()
    match = re.search(r'kedahttp_proxy_held_requests\{app="cold",namespace="default"\} (\S+)', text)
    return float(match.group(1)) if match else 0.0


async def test_hundreds_held_for_a_backend_that_never_starts_get_504_and_memory_returns(
        tmp_path: Path, procs: list[ProxyProcess]) -> None:
    proxy = ProxyProcess(tmp_path, {"cold": free_port()}, "memory://cold",
                         cold_start_timeout_seconds=str(TIMEOUT_SECONDS), max_held_requests="500")
    procs.append(proxy)
    await asyncio.to_thread(proxy.wait_listening)
    await asyncio.sleep(0.5)  # settle after start-up
    rss = [proxy.rss_kb()]
    fds = proxy.fd_count()
    for round_ in range(1, ROUNDS + 1):
        conns = [HttpConnection(proxy.port) for _ in range(HELD)]
        await asyncio.gather(*(c.connect() for c in conns))
        began = time.monotonic()
        pending = [asyncio.ensure_future(send(c, "GET", "ok", f"c{round_}-{i}", "cold.test", timeout=15))
                   for i, c in enumerate(conns)]
        gauge = await asyncio.to_thread(_wait_held, proxy)
        outcomes = await asyncio.gather(*pending)
        answered = time.monotonic() - began
        for c in conns:
            c.close()
        assert gauge == HELD, f"round {round_}: {gauge} held at once, expected {HELD}"
        wrong = [o for o in outcomes if (o.kind, o.status) != (STATUS, 504) or "retry-after" not in o.headers]
        assert not wrong, wrong[:5]
        waits = sorted(o.ended - o.started for o in outcomes)
        assert waits[0] >= TIMEOUT_SECONDS - 0.05, f"released early: {waits[0]:.3f} s"
        assert waits[-1] < TIMEOUT_SECONDS + 3, f"answered late: {waits[-1]:.3f} s"
        await until(lambda: proxy.fd_count() <= fds, 10, f"round {round_}: descriptors back to {fds}")
        await asyncio.sleep(0.3)
        rss.append(proxy.rss_kb())
        print(f"round {round_}: {HELD} held, 504 after {waits[0]:.3f}-{waits[-1]:.3f} s (all in {answered:.2f} s); "
              f"RSS {rss[-1] / 1024:.1f} MiB")
    peak = hwm_kb(proxy.pid)
    print(f"proxy RSS: baseline {rss[0] / 1024:.1f} MiB, after each round "
          f"{', '.join(f'{r / 1024:.1f}' for r in rss[1:])} MiB, peak {peak / 1024:.1f} MiB; descriptors back to {fds}")
    assert max(rss[1:]) - rss[0] < BACK_NEAR_BASELINE_KB
    assert rss[-1] - rss[-2] < LAST_ROUND_GROWTH_KB


def _wait_held(proxy: ProxyProcess) -> float:
    """The held gauge once it stops rising (every request has arrived), read before the timeout."""
    deadline = time.monotonic() + TIMEOUT_SECONDS * 0.8
    value = 0.0
    while time.monotonic() < deadline:
        value = held_gauge(proxy)
        if value >= HELD:
            break
        time.sleep(0.05)
    return value
