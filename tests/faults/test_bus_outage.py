"""Redis, and separately NATS, SIGKILLed under steady traffic and started again, with a real proxy and a
real scaler as processes. Every request is still answered by the upstream, exactly once; while it cannot
see the bus the scaler answers UNAVAILABLE and IsActive never says idle; it answers again once its
reconnect backoff lets it (seconds, see the README) with the concurrency the clients saw; and the requests
it counted (request rate x window) are exactly the requests the clients sent, the ones reported during the
outage included. A zero concurrency right after the reconnect is a bug, shown deterministically by the
last test here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest

from kedahttp.activity.bus import BusUnavailable, CaughtUp, Transport, open_transport
from kedahttp.proxy.assembly import build
from kedahttp.proxy.sources import Backend
from tests.harness.fault_clients import OK, KedaClient, Poller, Traffic, ref
from tests.harness.faulty_upstream import FaultyUpstream
from tests.harness.procs import KedahttpProcess, ProxyProcess, ScalerProcess, scrape
from tests.harness.proxy import RunningProxy, proxy_settings
from tests.harness.servers import NatsServer, RedisServer
from tests.harness.static_source import StaticSource
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(90)

WARM_SECONDS = 2.0
OUTAGE_SECONDS = 2.5
AFTER_SECONDS = 4.0
COUNT_WINDOW = 600  # seconds: the longest rate window, so rate x window is every request of the test
# The rate window ends a lag (report interval + 0.25 s) before now, on a whole second: the last report of
# the traffic is inside it 2.5 s after the last request.
SETTLE_SECONDS = 2.5


async def test_bus_killed_under_traffic(tmp_path: Path, procs: list[KedahttpProcess], upstream: FaultyUpstream,
                                        bus_server: RedisServer | NatsServer) -> None:
    proxy = ProxyProcess(tmp_path, {"app": upstream.port}, bus_server.url)
    scaler = ScalerProcess(tmp_path, bus_server.url)
    procs += [proxy, scaler]
    await asyncio.to_thread(proxy.wait_listening)
    await asyncio.to_thread(scaler.wait_listening)
    keda = KedaClient(scaler.target)
    await keda.wait_fresh()
    traffic = Traffic(proxy.port, "app.test", concurrency=4, prefix="b", query="delay=20").start()
    poller = Poller(keda, ref("app", targetConcurrency="1"), every=0.1)
    try:
        await asyncio.sleep(WARM_SECONDS)
        poller.start()
        await asyncio.sleep(1.0)
        down = time.monotonic()
        bus_server.stop()
        await asyncio.sleep(OUTAGE_SECONDS)
        up = time.monotonic()
        bus_server.start()
        await asyncio.sleep(AFTER_SECONDS)
        await poller.stop()
        await traffic.stop()
        ended = time.monotonic()
        await asyncio.sleep(SETTLE_SECONDS)
        counted = await keda.started_total("app", COUNT_WINDOW)
    finally:
        await poller.stop()
        await traffic.stop()
        await keda.close()

    outcomes = traffic.outcomes
    assert traffic.by_kind() == {OK: len(outcomes)}, traffic.by_kind()
    received = [r.rid for r in upstream.received]
    assert sorted(received) == sorted(o.rid for o in outcomes)  # each answered by the upstream, once

    samples = poller.samples
    # IsActive never said idle; a zero concurrency right after the reconnect is the bug shown below
    assert not [z for z in poller.false_zeros() if z[3] == grpc.StatusCode.OK and not z[4]]
    zeros = len(poller.false_zeros())
    during = poller.between(down + 0.5, up)
    assert during and all(s[1] == grpc.StatusCode.UNAVAILABLE for s in during), during[:3]
    ok_again = [s[0] - up for s in samples if s[0] > up and s[1] == grpc.StatusCode.OK and s[3] == grpc.StatusCode.OK]
    assert ok_again, "never answered again after the bus came back"
    unavailable_after = [s for s in samples if s[0] > up + ok_again[0]
                         and grpc.StatusCode.UNAVAILABLE in (s[1], s[3])]
    assert not unavailable_after, unavailable_after[:3]
    recovered = ok_again[0]
    values = [s[2] for s in samples if s[0] > up + recovered]
    seconds = ended - outcomes[0].started
    client_concurrency = sum(o.ended - o.started for o in outcomes) / seconds
    print(f"{bus_server.name} outage: {len(outcomes)} requests, all answered; scaler UNAVAILABLE while "
          f"down, answering again {recovered:.2f} s after the bus came back; concurrency after "
          f"{min(values):.2f}-{max(values):.2f} (clients saw {client_concurrency:.2f}); counted {counted:.3f} of "
          f"{len(outcomes)} requests; {zeros} zero concurrency answers")
    assert recovered < 6.0  # the reconnect backoff (5 s at most) dominates; see the README
    last = [s[2] for s in samples if s[1] == grpc.StatusCode.OK and s[2] > 0][-1]  # zeros: the bug below
    assert abs(last - client_concurrency) < 0.25 * client_concurrency, (last, client_concurrency)
    if abs(counted - len(outcomes)) >= 0.01:  # what each side saw of the bus
        print(scrape(scaler.metrics_port, "kedahttp_scaler_"), scrape(proxy.metrics_port, "kedahttp_proxy_"))
    assert abs(counted - len(outcomes)) < 0.01, (counted, len(outcomes))


class GatedTransport:
    """A real transport behind a switch: while it is shut, this proxy cannot reach the bus."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.url = inner.url
        self.shut = False

    async def connect(self) -> None:
        if self.shut:
            raise BusUnavailable(f"{self.url}: shut by the test")
        await self.inner.connect()

    async def publish(self, payloads: Sequence[bytes]) -> None:
        if self.shut:
            raise BusUnavailable(f"{self.url}: shut by the test")
        await self.inner.publish(payloads)

    def subscribe(self, since: float) -> AsyncIterator[bytes | CaughtUp]:
        return self.inner.subscribe(since)

    async def close(self) -> None:
        await self.inner.close()


async def test_no_zero_while_the_proxies_have_not_caught_up_after_an_outage(
        tmp_path: Path, procs: list[KedahttpProcess], upstream: FaultyUpstream, redis_server: RedisServer) -> None:
    """The scaler reconnects before the proxy does. Their backoffs are independent and jittered, so
    either may come first; here the proxy's side stays shut until the scaler is seen subscribed again
    (its feed_connected gauge) and then 1 s longer, so the scaler is certainly waiting for this proxy's
    kept-back reports. The proxy's own backoff (at most 1 s) then brings them well within the scaler's
    catch-up give-up (4 s): every answer meanwhile must be UNAVAILABLE, never a zero."""
    scaler = ScalerProcess(tmp_path, redis_server.url, concurrency_window_seconds="1")
    procs.append(scaler)
    gate = GatedTransport(open_transport(redis_server.url))
    settings = proxy_settings(bus=redis_server.url)
    source = StaticSource([Backend(key="default/app", hosts=("app.test",))], {"default/app": [upstream.endpoint]})
    proxy = await RunningProxy(build(settings, source, gate)).start()
    await asyncio.to_thread(scaler.wait_listening)
    keda = KedaClient(scaler.target)
    traffic = Traffic(proxy.port, "app.test", concurrency=4, prefix="g", query="delay=20").start()
    poller = Poller(keda, ref("app", targetConcurrency="1"), every=0.1)

    async def gauge(name: str) -> float:
        page = await asyncio.to_thread(scrape, scaler.metrics_port)
        return page.get(f"kedahttp_scaler_{name}", -1.0)

    async def gauge_reaches(name: str, value: float, what: str) -> None:
        deadline = time.monotonic() + 10
        while await gauge(name) != value:
            assert time.monotonic() < deadline, f"{what} not seen within 10 s"
            await asyncio.sleep(0.05)

    try:
        await keda.wait_fresh()
        await asyncio.sleep(2.0)
        poller.start()
        gate.shut = True
        await asyncio.to_thread(redis_server.stop)
        await gauge_reaches("feed_connected", 0.0, "the scaler seeing the bus go")
        await asyncio.sleep(0.5)
        await asyncio.to_thread(redis_server.start)
        await gauge_reaches("feed_connected", 1.0, "the scaler subscribing again")
        await asyncio.sleep(1.0)
        assert await gauge("feed_fresh") == 0.0, "the scaler must wait for the proxy it heard before the outage"
        gate.shut = False
        opened = time.monotonic()
        await until(lambda: any(x[0] > opened and x[1] == grpc.StatusCode.OK for x in poller.samples), 10,
                    "the scaler answers again once the proxy's reports arrive")
    finally:
        await poller.stop()
        await traffic.stop()
        await keda.close()
        await proxy.stop()
    assert traffic.by_kind() == {OK: len(traffic.outcomes)}
    zeros = poller.false_zeros()
    assert not zeros, f"{len(zeros)} answers said idle (concurrency 0), e.g. {zeros[0]}"
