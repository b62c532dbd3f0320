"""What being observed costs the proxy at 10,000 apps: a /metrics scrape, and the live page's event stream.

Scenario (issue 18): one proxy process with 10,000 backends, every one with counters as a day of traffic
leaves them (2xx, 4xx and 5xx answers, cold starts and their waits). Figures:

* ``metrics``: wall time of a whole ``GET /metrics`` scrape by curl (goal: under 100 ms), its size and
  its series (the per-app budget of docs/metrics.md times 10,000, plus the proxy-wide series). The first
  scrape comes once the apps have settled (the proxy writes the text's layout in the background then);
  before each of the next ones 10 % of the apps see traffic, and the reporter is given the time to publish
  it, as it would have between two scrapes 15 s apart; the CPU time of the same render without the
  network is measured too. Last, one app is added and the proxy scraped at once, before it could prepare:
  that scrape makes the layout for 10,001 apps itself, the worst case;
* ``live``: while 1 and then 10 viewers hold the live page's event stream open and 1 % of the apps change
  every tick (traffic on 100 apps at once), the ticker's own cost per tick (sampling + folding 10,000 apps),
  the proxy process's CPU share, and what each viewer receives per second. Bound set here: a tick under
  25 ms (10 % of one core at 4 ticks a second) and at most 4 event batches a second per viewer, whatever
  the traffic. Viewers are curl processes, so their reading costs the proxy nothing it would not pay.

Also counted: the interpreter's full garbage collections over the whole run and the longest of them. A
full collection walks every object the proxy keeps for its 10,000 apps and holds the event loop meanwhile;
one that lands during a scrape or a tick adds its pause to that figure.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import random
import statistics
import subprocess
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from prometheus_client import generate_latest

from kedahttp.activity.bus import open_transport
from kedahttp.process import settings as settings_mod
from kedahttp.process.gcfreeze import FreezeWhenSettled
from kedahttp.proxy import compiled
from kedahttp.proxy.assembly import Proxy, build
from kedahttp.proxy.sources import Backend
from kedahttp.proxy.telemetry import PREPARE_SECONDS

NAME = "observability"
APPS = 10_000
# The proxy process freezes its settled structures out of the collector's way (process/gcfreeze.py), as
# `kedahttp proxy` does; BENCH_FREEZE_GC=0 measures without, for the comparison in RESULTS.md.
FREEZE_GC = os.environ.get("BENCH_FREEZE_GC", "1") != "0"
SCRAPES = 30
TICK_BOUND_MS = 25.0
EVENTS_BOUND_PER_SECOND = 4.0
_buses = itertools.count()


class _Static:
    name = "bench-static"

    def __init__(self, backends: list[Backend]) -> None:
        self.backends = backends

    async def run(self, sink: Any) -> None:
        sink.replace_backends(self.backends)
        for i, backend in enumerate(self.backends):
            if i % 2:
                sink.set_endpoints(backend.key, [f"127.0.0.1:{20000 + i % 1000}"])
        await asyncio.Event().wait()


def seed(proxy: Proxy, rng: random.Random) -> None:
    for c in proxy.counters.backends.values():
        n = rng.randint(1, 5000)
        c.started = c.completed = n
        c.by_class[2] = n - n // 20
        c.by_class[4] = n // 40
        c.by_class[5] = n // 20 - n // 40
        for _ in range(rng.randint(0, 3)):
            c.cold_starts += 1
            wait = rng.uniform(0.3, 8.0)
            c.cold_wait_buckets[rng.randint(2, 7)] += 1
            c.cold_wait_sum += wait


def curl_time(url: str) -> tuple[float, float, int]:
    """(seconds to the first byte: the proxy's work, seconds in all, bytes) of one GET."""
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_starttransfer} %{time_total} %{size_download}",
                          url], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


async def scrape_figures(proxy: Proxy, rng: random.Random) -> dict[str, Any]:
    assert proxy.metrics is not None
    url = f"http://127.0.0.1:{proxy.metrics.port}/metrics"
    # the reporter publishes the seeded counters (one report of 10,000 apps), the metrics server sees the
    # apps settled and prepares (two looks PREPARE_SECONDS apart)
    await asyncio.sleep(2.5 * PREPARE_SECONDS)
    _, first, size = await asyncio.to_thread(curl_time, url)
    keys = list(proxy.counters.backends)
    times, firsts = [], []
    for _ in range(SCRAPES):
        for key in rng.sample(keys, APPS // 10):  # traffic between two scrapes on 10 % of the apps
            c = proxy.counters.backends[key]
            c.started += 3
            c.completed += 3
            c.by_class[2] += 3
            c.duration_sum += 0.03
        await asyncio.sleep(0.6)  # as between two real scrapes, the reporter has reported that traffic
        to_first_byte, seconds, size = await asyncio.to_thread(curl_time, url)
        times.append(seconds * 1000)
        firsts.append(to_first_byte * 1000)
    cpu = []
    for _ in range(SCRAPES):  # the same work without the network and curl: CPU time, less sensitive to load
        for key in rng.sample(keys, APPS // 10):
            proxy.counters.backends[key].started += 1
            proxy.counters.backends[key].completed += 1
        t0 = time.process_time()
        proxy.metrics.exposition.parts()
        generate_latest(proxy.metrics.registry)
        cpu.append((time.process_time() - t0) * 1000)
    proxy.counters.for_backend("ns0/app-new")  # what a new route does
    _, after_new_app, _ = await asyncio.to_thread(curl_time, url)
    text = await asyncio.to_thread(lambda: subprocess.run(["curl", "-s", url], capture_output=True, text=True).stdout)
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    per_app = sum(1 for line in text.splitlines() if 'app="app-00001"' in line)
    times.sort()
    return {"first_scrape_ms": round(first * 1000, 1), "scrape_ms_p50": round(statistics.median(times), 1),
            "first_byte_ms_p50": round(statistics.median(firsts), 1),
            "scrape_ms_p90": round(times[int(len(times) * 0.9)], 1), "scrape_ms_max": round(max(times), 1),
            "scrape_after_new_app_ms": round(after_new_app * 1000, 1),
            "under_100_ms": max(*times, first * 1000, after_new_app * 1000) < 100,
            "render_cpu_ms_p50": round(statistics.median(cpu), 1), "bytes": size, "series": series, "series_app_00001": per_app}


async def live_figures(proxy: Proxy, viewers: int, seconds: float, rng: random.Random) -> dict[str, Any]:
    assert proxy.admin is not None and proxy.live is not None
    live = proxy.live
    url = f"http://127.0.0.1:{proxy.admin.port}/live/events?limit=50"
    keys = list(proxy.counters.backends)
    with TemporaryDirectory() as tmp:
        outputs = [Path(tmp) / f"viewer-{i}" for i in range(viewers)]
        procs = [await asyncio.create_subprocess_exec("curl", "-sN", "-o", str(out), url) for out in outputs]
        await asyncio.sleep(1.0)  # connected, first page sent
        sizes0 = [out.stat().st_size for out in outputs]  # count what arrives from here on
        costs: list[float] = []
        cpu0, wall0, sent0, ticks0 = time.process_time(), time.monotonic(), live.batches_sent, live.ticks
        page_keys = keys[:50]  # what a viewer on the first page sees: make it change too
        while time.monotonic() - wall0 < seconds:
            for key in rng.sample(keys, APPS // 100) + rng.sample(page_keys, 5):
                c = proxy.counters.backends[key]
                c.started += rng.randint(1, 20)
                c.in_flight = rng.randint(0, 3)
            await asyncio.sleep(live.tick_seconds)
            costs.append(live.tick_cost_seconds * 1000)
        cpu = time.process_time() - cpu0
        wall = time.monotonic() - wall0
        per_viewer = (live.batches_sent - sent0) / viewers / wall
        for proc in procs:
            proc.terminate()
            await proc.wait()
        texts = [out.read_bytes()[s0:] for out, s0 in zip(outputs, sizes0, strict=True)]
    events = [t.count(b"\n\n") for t in texts]
    received = [len(t) for t in texts]
    costs.sort()
    return {
        "viewers": viewers,
        "tick_cpu_ms_p50": round(costs[len(costs) // 2], 2),
        "tick_cpu_ms_p99": round(costs[int(len(costs) * 0.99)], 2),
        "tick_under_25_ms": costs[int(len(costs) * 0.99)] < TICK_BOUND_MS,
        "ticks_per_second": round((live.ticks - ticks0) / wall, 2),
        "proxy_cpu_share": round(cpu / wall, 3),
        "event_batches_per_second_per_viewer": round(per_viewer, 2),
        "within_event_bound": per_viewer <= EVENTS_BOUND_PER_SECOND,
        "events_per_second_per_viewer": round(max(events) / wall, 2),
        "bytes_per_second_per_viewer": round(max(received) / wall),
    }


class FullCollections:
    """Pauses of the garbage collector's full (generation 2) collections, while installed."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses.append((time.perf_counter() - self._t0) * 1000)

    def figures(self) -> dict[str, Any]:
        return {"gc_full_collections": len(self.pauses),
                "gc_full_pause_ms_max": round(max(self.pauses, default=0.0), 1)}


async def main(quick: bool) -> dict[str, Any]:
    settings = settings_mod.load({}, environ={
        "KEDAHTTP_BUS": f"memory://bench-observe-{next(_buses)}", "KEDAHTTP_PROXY_ADDR": "127.0.0.1:0",
        "KEDAHTTP_ADMIN_ADDR": "127.0.0.1:0", "KEDAHTTP_METRICS_ADDR": "127.0.0.1:0", "KEDAHTTP_ROUTES": "/x",
        "KEDAHTTP_LOG_LEVEL": "warning",
    })
    backends = [Backend(f"ns{i % 100}/app-{i:05d}", (f"app-{i:05d}.test",)) for i in range(APPS)]
    proxy = build(settings, _Static(backends), open_transport(settings.bus), freeze_gc=FREEZE_GC)
    for component in proxy.components:
        await component.start()
    freezer = next((c for c in proxy.components if isinstance(c, FreezeWhenSettled)), None)
    if freezer is not None:  # the routes settle, then what they built is frozen
        await freezer.frozen.wait()
    rng = random.Random(18)
    collections = FullCollections()
    gc.callbacks.append(collections)
    try:
        seed(proxy, rng)
        figures: dict[str, Any] = {"apps": APPS, "data_path": compiled.data_path(), "nice": os.nice(0),
                                   "gc_frozen_objects": gc.get_freeze_count(),
                                   "metrics": await scrape_figures(proxy, rng),
                                   "load_average_at_start": round(os.getloadavg()[0], 2)}
        for viewers in (1, 10):
            figures[f"live_{viewers}_viewers"] = await live_figures(proxy, viewers, 3.0 if quick else 15.0, rng)
        figures["load_average_at_end"] = round(os.getloadavg()[0], 2)
        return {**figures, **collections.figures()}
    finally:
        gc.callbacks.remove(collections)
        for component in reversed(proxy.components):
            await component.close()


def run(quick: bool) -> dict[str, Any]:
    return asyncio.run(main(quick))
