"""WORKERS=2 and one worker SIGKILLed while it forwards requests: the scaler stops counting its in-flight
requests within the instance expiry (3 report intervals + 0.5 s), the other worker keeps serving every new
connection, and the supervisor starts a replacement that reports under a new instance id."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from kedahttp.activity.aggregate import EXPIRY_INTERVALS, EXPIRY_MARGIN_SECONDS
from tests.harness.fault_clients import DISCONNECTED, OK, BusTap, HttpConnection, Traffic, send
from tests.harness.faulty_upstream import FaultyUpstream
from tests.harness.procs import ProxyProcess
from tests.harness.scaler import running_scaler
from tests.harness.servers import RedisServer
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)

APP = "default/app"
INTERVAL = 0.25
EXPIRY = EXPIRY_INTERVALS * INTERVAL + EXPIRY_MARGIN_SECONDS
SLOW = 20


async def test_a_killed_workers_in_flight_leaves_the_aggregate_and_the_other_keeps_serving(
        tmp_path: Path, procs: list[ProxyProcess], upstream: FaultyUpstream, redis_server: RedisServer) -> None:
    proxy = ProxyProcess(tmp_path, {"app": upstream.port}, redis_server.url, workers="2",
                         report_interval_seconds=str(INTERVAL))
    procs.append(proxy)
    tap = BusTap(redis_server.url).start()
    async with running_scaler(redis_server.url, fresh=False) as scaler:
        agg = scaler.state.aggregator
        await asyncio.to_thread(proxy.wait_listening)
        await until(lambda: len(tap.latest) == 2 and agg.live_instances == 2, 20, "both workers reporting")

        slow = [asyncio.ensure_future(send(HttpConnection(proxy.port), "GET", "ok", f"slow{i}", "app.test",
                                           query="delay=3500")) for i in range(SLOW)]
        in_flight = lambda: agg.metrics(APP, time.time()).in_flight  # noqa: E731
        await until(lambda: in_flight() == SLOW, 5, "the scaler counts every slow request")
        await until(lambda: sum(tap.in_flight_by_pid(APP).values()) == SLOW, 5, "per-worker counts")
        by_pid = tap.in_flight_by_pid(APP)
        victim, killed = max(by_pid.items(), key=lambda kv: kv[1])
        assert 0 < killed < SLOW, by_pid  # connections spread over both workers (SO_REUSEPORT)

        traffic = Traffic(proxy.port, "app.test", concurrency=3, prefix="t", pace=0.005,
                          new_connection=True).start()
        await until(lambda: len(traffic.outcomes) >= 20, 10, "traffic before the kill")
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        gone_after = await until(lambda: in_flight() == SLOW - killed, 10, "the dead worker's count leaves")
        await until(lambda: len([o for o in traffic.outcomes if o.started > t0 + 0.1]) >= 100, 15,
                    "traffic after the kill")
        replaced = await until(lambda: len(reporting_pids(tap) - {victim}) == 2, 15, "a replacement worker reports")
        await traffic.stop()
        outcomes = await asyncio.gather(*slow)
        await until(lambda: in_flight() == 0, 5, "nothing in flight at the end")
    await tap.stop()

    print(f"worker kill: {killed} of {SLOW} in flight on pid {victim}; the scaler dropped them after "
          f"{gone_after:.3f} s (expiry {EXPIRY:.2f} s); replacement reporting {replaced:.1f} s after that")
    assert gone_after <= EXPIRY + 1.0
    lost = [o for o in outcomes if o.kind != OK]
    assert len(lost) == killed and all(o.kind == DISCONNECTED for o in lost), outcomes  # only the victim's
    after = [o for o in traffic.outcomes if o.started > t0 + 0.1]
    assert all(o.kind == OK for o in after), [o for o in after if o.kind != OK][:5]
    before = [o for o in traffic.outcomes if o.started <= t0 + 0.1]
    assert {o.kind for o in before} <= {OK, DISCONNECTED}


def reporting_pids(tap: BusTap) -> set[int]:
    """The pids of the proxy processes whose reports are recent enough to count."""
    now = time.time()
    return {int(name.rsplit("-", 2)[-2]) for name, report in tap.latest.items() if now - report.sent_at < EXPIRY}
