"""The push hub and the freshness rule, driven directly with explicit time."""

from __future__ import annotations

import asyncio

from kedahttp.activity.bus import open_transport
from kedahttp.activity.model import BackendActivity, Report
from kedahttp.scaler.state import ScalerState
from kedahttp.scaler.streams import StreamHub, Watch

T0 = 1_700_000_000.0


class Activity:
    """A stand-in for Aggregator.is_active: a set of active backends."""

    def __init__(self) -> None:
        self.active: set[str] = set()

    def __call__(self, backend: str, now: float, window: float) -> bool:
        return backend in self.active


async def pushed(hub: StreamHub, watch: Watch) -> bool:
    """Whether a true is due on the watch right now (next_push returns at once)."""
    try:
        return await asyncio.wait_for(hub.next_push(watch), 0.01)
    except TimeoutError:
        return False


async def test_true_at_open_only_when_active_and_fresh() -> None:
    activity = Activity()
    hub = StreamHub(activity)
    hub.set_fresh(True, T0)
    activity.active.add("ns/a")
    assert await pushed(hub, hub.open("ns/a", 60, T0))
    assert not await pushed(hub, hub.open("ns/b", 60, T0))
    assert hub.pushes == 1 and hub.open_streams == 2


async def test_notify_wakes_only_inactive_watches_of_touched_backends() -> None:
    activity = Activity()
    hub = StreamHub(activity)
    hub.set_fresh(True, T0)
    a, b = hub.open("ns/a", 60, T0), hub.open("ns/b", 60, T0)
    activity.active.add("ns/a")
    hub.notify(["ns/a"], T0 + 1)
    assert await pushed(hub, a)
    assert not await pushed(hub, b)
    hub.notify(["ns/a"], T0 + 2)  # still active: nothing more
    assert not await pushed(hub, a)
    activity.active.clear()
    hub.reevaluate(T0 + 70)  # the slow timer notices it went inactive, and sends nothing
    assert not await pushed(hub, a)
    activity.active.add("ns/a")
    hub.notify(["ns/a"], T0 + 80)
    assert await pushed(hub, a)
    assert hub.pushes == 2


async def test_nothing_is_pushed_while_not_fresh_and_active_ones_push_on_recovery() -> None:
    activity = Activity()
    hub = StreamHub(activity)
    hub.set_fresh(True, T0)
    activity.active.add("ns/a")
    a = hub.open("ns/a", 60, T0)
    assert await pushed(hub, a)
    hub.set_fresh(False, T0 + 1)
    b = hub.open("ns/b", 60, T0 + 1)
    activity.active.add("ns/b")
    hub.notify(["ns/b"], T0 + 2)
    hub.reevaluate(T0 + 2)
    assert not await pushed(hub, b)
    hub.set_fresh(True, T0 + 3)  # what KEDA saw during the outage is unknown: active ones say so again
    assert await pushed(hub, a) and await pushed(hub, b)


async def test_shutdown_ends_every_stream_and_new_ones() -> None:
    hub = StreamHub(Activity())
    hub.set_fresh(True, T0)
    watches = [hub.open(f"ns/a{i}", 60, T0) for i in range(3)]
    waiting = [asyncio.ensure_future(hub.next_push(w)) for w in watches]
    await asyncio.sleep(0)
    hub.shutdown()
    assert await asyncio.gather(*waiting) == [False, False, False]
    assert await hub.next_push(hub.open("ns/late", 60, T0)) is False
    for watch in watches:
        hub.close(watch)
    assert hub.open_streams == 1


def test_freshness_needs_the_feed_and_a_voice_from_known_proxies() -> None:
    state = ScalerState(open_transport("memory://freshness-test"))
    assert not state.fresh(T0)  # not connected yet
    state.feed.state.connected = True
    assert not state.fresh(T0)  # still replaying
    state.feed.state.caught_up = True
    assert state.fresh(T0)  # no proxy ever reported: nothing to miss
    state.fold(Report("p1", 1, T0, T0 - 0.25, 0.25, (BackendActivity("ns/a", in_flight=1),)), T0)
    assert state.fresh(T0 + 4.9)
    assert not state.fresh(T0 + 5.1)  # every proxy silent for 5 s while they were reporting: stale
    state.fold(Report("p1", 2, T0 + 6, T0, 0.25, ()), T0 + 6)
    assert state.fresh(T0 + 6)
