"""The scaler's side of the bus: replay recent history, follow live, and say whether what we see is fresh.

``run`` subscribes, decodes every envelope and hands it to ``on_message`` with the time it arrived. A
lost connection is not an error to the scaler, only a state: ``fresh`` turns False at once (the scaler
then answers UNAVAILABLE rather than a zero it cannot vouch for) and the feed subscribes again with
backoff. The first subscription replays ``replay_seconds`` of history so a new replica starts with the
same windows as its peers. A re-subscription replays from a margin before the last message received,
taking the earlier of its arrival time and the time it carries (a report's ``sent_at``, a wake's
``at``): the bus stored it no earlier than it was sent, so this stays right even when the connection
drops in the middle of a replay, when arrival times are far later than storage times. Replays overlap
on purpose: the aggregator drops reports whose (instance, seq) it has already folded. A message that
does not decode is counted and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from kedahttp.activity.bus import RETENTION_SECONDS, BusUnavailable, CaughtUp, Transport
from kedahttp.activity.codec import DecodeError, decode
from kedahttp.activity.model import ReportLike, WakeLike
from kedahttp.process.backoff import Backoff
from kedahttp.process.secrets import redact_url

log = logging.getLogger("kedahttp.activity.feed")

# How far before the last received message a re-subscription starts: covers the clocks of proxies,
# scalers and the bus server (Redis and JetStream stamp entries with their own clock) disagreeing.
RESUBSCRIBE_MARGIN_SECONDS = 5.0


@dataclass
class FeedState:
    connected: bool = False  # subscribed and reading
    caught_up: bool = False  # history replayed since the last (re)subscription; live from here
    last_message_at: float = 0.0  # time.time() when the last envelope arrived
    errors: int = 0  # lost connections and failed subscriptions
    decode_errors: int = 0  # envelopes skipped because they did not decode
    handler_errors: int = 0  # envelopes whose on_message raised (a bug; logged, skipped)


class ActivityFeed:
    def __init__(
        self,
        transport: Transport,
        on_message: Callable[[ReportLike | WakeLike, float], object],  # e.g. Aggregator.fold; result unused
        *,
        replay_seconds: float = RETENTION_SECONDS,
        on_state: Callable[[FeedState], None] | None = None,
        backoff_initial_seconds: float = 0.1,
        backoff_max_seconds: float = 1.0,
    ) -> None:
        self.transport = transport
        self.on_message = on_message
        self.replay_seconds = replay_seconds
        self.on_state = on_state
        self.backoff_initial_seconds = backoff_initial_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.state = FeedState()
        self._resume_from = 0.0  # earlier of arrival and carried time of the last message; 0: none yet

    @property
    def fresh(self) -> bool:
        """True when the feed is connected and has replayed the history: its metrics can be trusted."""
        return self.state.connected and self.state.caught_up

    async def run(self) -> None:
        """Reads the bus until cancelled; closes the transport when it ends."""
        since = time.time() - self.replay_seconds
        backoff = Backoff(self.backoff_initial_seconds, self.backoff_max_seconds, jitter=(0.5, 1.0))
        try:
            while True:
                try:
                    await self.transport.connect()
                    items = self.transport.subscribe(since)
                    try:
                        self._set(connected=True, caught_up=False)
                        async for item in items:
                            if isinstance(item, CaughtUp):
                                self._set(connected=True, caught_up=True)
                                backoff.reset()
                            else:
                                self._deliver(item)
                    finally:
                        aclose = getattr(items, "aclose", None)  # end the subscription now, not at GC
                        if aclose is not None:
                            await aclose()
                    raise BusUnavailable(f"{redact_url(self.transport.url)}: subscription ended")
                except BusUnavailable as exc:
                    self.state.errors += 1
                    if self.state.connected or self.state.errors == 1:
                        log.warning("bus unavailable: metrics are not fresh", extra={"error": str(exc)})
                    self._set(connected=False, caught_up=False)
                if self._resume_from:
                    since = self._resume_from - RESUBSCRIBE_MARGIN_SECONDS
                await asyncio.sleep(backoff.next_delay())
        finally:
            self._set(connected=False, caught_up=False)
            with contextlib.suppress(Exception):
                await self.transport.close()

    def _deliver(self, payload: bytes) -> None:
        now = time.time()
        state = self.state
        state.last_message_at = now
        try:
            message = decode(payload)
        except DecodeError:
            state.decode_errors += 1
            if state.decode_errors == 1 or state.decode_errors % 1000 == 0:
                log.warning(
                    "skipping messages that are not activity envelopes",
                    extra={"decode_errors": state.decode_errors},
                )
            return
        carried = getattr(message, "sent_at", None)
        if carried is None:
            carried = getattr(message, "at", None)
        self._resume_from = now if carried is None else min(now, float(carried))
        try:
            self.on_message(message, now)
        except Exception:
            state.handler_errors += 1
            if state.handler_errors == 1 or state.handler_errors % 1000 == 0:
                log.exception("activity handler failed", extra={"handler_errors": state.handler_errors})

    def _set(self, *, connected: bool, caught_up: bool) -> None:
        state = self.state
        if state.connected == connected and state.caught_up == caught_up:
            return
        state.connected = connected
        state.caught_up = caught_up
        if caught_up:
            log.info("activity feed caught up", extra={"transport": redact_url(self.transport.url)})
        if self.on_state is not None:
            self.on_state(state)
