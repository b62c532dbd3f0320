"""The NATS transport (``nats://``): a JetStream stream holds every envelope, an ephemeral push consumer reads it.

Key decisions:

* One stream ``KEDAHTTP_ACTIVITY`` on subjects ``kedahttp.activity.>``, file storage, ``max_age`` =
  retention, created when missing. A stream that already exists (an operator may pre-create it with
  replicas) is used as it is, provided it covers our subject.
* Every envelope goes to one subject, so the stream keeps reports and wakes in one order. A batch is
  published asynchronously and its acks awaited together: one round trip, not one per envelope.
  ``Nats-Msg-Id`` is a digest of the envelope's bytes (they carry instance and sequence number, or the
  wake's backend, instance and time), so JetStream drops a batch the publisher sends again after a lost
  ack, without the transport decoding what it carries.
* Reads use an ephemeral push consumer (no acks, delivery from a start time, idle heartbeats) feeding a
  local queue. Our own checks replace the client's ordered-consumer machinery: a gap in the consumer
  sequence, a missed heartbeat or a closed connection ends the subscription with BusUnavailable and the
  feed subscribes again from a slightly earlier time. Wakes reach a live reader as soon as JetStream
  stores them; nothing waits on a poll.
* nats-py's own reconnect is off: while it reconnects, calls would hang. A lost connection fails every
  call at once and the next call connects afresh.

URL: ``nats://[user:password@]host:port`` with more servers comma-separated (``nats://a:4222,b:4222``
or ``nats://a:4222,nats://b:4222``).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from kedahttp.activity.bus import CAUGHT_UP, RETENTION_SECONDS, BusUnavailable, CaughtUp
from kedahttp.process.secrets import redact_url

log = logging.getLogger("kedahttp.activity.nats")

STREAM: Final = "KEDAHTTP_ACTIVITY"
SUBJECTS: Final = "kedahttp.activity.>"
SUBJECT: Final = "kedahttp.activity.envelope"
DUPLICATE_WINDOW_SECONDS: Final = 120.0
CONNECT_TIMEOUT_SECONDS: Final = 1
REQUEST_TIMEOUT_SECONDS: Final = 2.0  # JetStream API calls and publish acks
PING_INTERVAL_SECONDS: Final = 2  # a silent (not closed) server is noticed after two missed pings
HEARTBEAT_SECONDS: Final = 1.0
STALL_SECONDS: Final = 3 * HEARTBEAT_SECONDS  # no message and no heartbeat for this long: consumer lost
CONSUMER_INACTIVE_SECONDS: Final = 30.0  # the server drops an ephemeral consumer its reader abandoned
_STREAM_NAME_IN_USE: Final = 10058  # JetStream err_code: same name, different configuration

_ERRORS: Final = (nats.errors.Error, OSError, asyncio.TimeoutError)

_LOST: Final = object()  # put into subscription queues when the connection closes


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Reads a cancelled gather's outcome (it keeps one) so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()


def server_list(url: str) -> list[str]:
    """``nats://a:1,b:2`` and ``nats://a:1,nats://b:2`` both become ``["nats://a:1", "nats://b:2"]``."""
    servers = []
    for part in url.split(","):
        part = part.strip()
        if part:
            servers.append(part if "://" in part else f"nats://{part}")
    if not servers:
        raise ValueError(f"bus URL {redact_url(url)!r}: no NATS server")
    return servers


def message_id(payload: bytes) -> str:
    return hashlib.blake2b(payload, digest_size=12).hexdigest()


def stream_config() -> api.StreamConfig:
    return api.StreamConfig(
        name=STREAM,
        subjects=[SUBJECTS],
        retention=api.RetentionPolicy.LIMITS,
        discard=api.DiscardPolicy.OLD,
        storage=api.StorageType.FILE,
        max_age=float(RETENTION_SECONDS),
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )


def covers(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, ``>`` the rest."""
    want = subject.split(".")
    for i, token in enumerate(pattern.split(".")):
        if token == ">":
            return len(want) > i
        if i >= len(want) or (token != "*" and token != want[i]):
            return False
    return len(pattern.split(".")) == len(want)


class _Connection:
    """One live nats-py client; ``lost`` completes when it closes, and never reconnects."""

    def __init__(self) -> None:
        self.nc = NatsClient()
        self.js: JetStreamContext = self.nc.jetstream(timeout=REQUEST_TIMEOUT_SECONDS)
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queues: set[asyncio.Queue[Any]] = set()
        self.stream_ready = False

    async def open(self, servers: list[str]) -> None:
        await self.nc.connect(
            servers=servers,
            name="kedahttp",
            allow_reconnect=False,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            # The initial connect still walks the server list; without these it retries each server
            # every 2 s for two minutes before giving up.
            max_reconnect_attempts=1,
            reconnect_time_wait=0,
            ping_interval=PING_INTERVAL_SECONDS,
            max_outstanding_pings=2,
            error_cb=self._on_error,
            disconnected_cb=self._on_lost,
            closed_cb=self._on_lost,
        )

    @property
    def alive(self) -> bool:
        return not self.lost.done() and self.nc.is_connected

    async def _on_error(self, exc: Exception) -> None:
        log.debug("nats client error", extra={"error": repr(exc)})

    async def _on_lost(self) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
            for queue in self.queues:
                queue.put_nowait(_LOST)

    async def close(self) -> None:
        await self._on_lost()
        if not self.nc.is_closed:
            try:
                await self.nc.close()
            except _ERRORS:
                pass


class NatsTransport:
    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = redact_url(url)  # the URL as messages show it: no credentials
        self.servers = server_list(url)
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()

    async def _ensure(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.alive and conn.stream_ready:
            return conn
        async with self._lock:
            conn = self._conn
            if conn is None or not conn.alive:
                if conn is not None:
                    await conn.close()
                self._conn = None
                conn = _Connection()
                try:
                    await conn.open(self.servers)
                except _ERRORS as exc:
                    await conn.close()
                    raise BusUnavailable(f"{self.shown}: cannot connect: {exc!r}") from exc
                self._conn = conn
            if not conn.stream_ready:
                await self._ensure_stream(conn.js)
                conn.stream_ready = True
            return conn

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        try:
            try:
                await js.add_stream(stream_config())
                return
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _STREAM_NAME_IN_USE:
                    raise
            info = await js.stream_info(STREAM)
        except _ERRORS as exc:
            raise BusUnavailable(f"{self.shown}: cannot create stream {STREAM}: {exc!r}") from exc
        subjects = info.config.subjects or []
        if not any(covers(s, SUBJECT) for s in subjects):
            raise BusUnavailable(f"{self.shown}: existing stream {STREAM} does not take {SUBJECT} ({subjects})")
        log.info(
            "using existing stream as configured", extra={"stream": STREAM, "max_age": info.config.max_age}
        )

    async def connect(self) -> None:
        await self._ensure()

    async def publish(self, payloads: Sequence[bytes]) -> None:
        if not payloads:
            return
        conn = await self._ensure()
        futures: list[asyncio.Future[api.PubAck]] = []
        try:
            for payload in payloads:
                # Appended one by one so the finally clause cancels those sent before a failure.
                future = await conn.js.publish_async(
                    SUBJECT, payload, headers={"Nats-Msg-Id": message_id(payload)}
                )
                futures.append(future)
            acks = asyncio.gather(*futures, return_exceptions=True)
            done, _ = await asyncio.wait(
                (acks, conn.lost), timeout=REQUEST_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            if acks not in done:
                acks.cancel()
                acks.add_done_callback(_retrieve)
                reason = "connection lost" if conn.lost.done() else "no ack in time"
                raise BusUnavailable(f"{self.shown}: publish failed: {reason}")
            for outcome in acks.result():
                if isinstance(outcome, BaseException):
                    raise outcome
        except BusUnavailable:
            raise
        except nats.js.errors.NoStreamResponseError as exc:
            conn.stream_ready = False  # deleted under us: create it again on the next call
            raise BusUnavailable(f"{self.shown}: publish failed: no stream for {SUBJECT}") from exc
        except _ERRORS as exc:
            raise BusUnavailable(f"{self.shown}: publish failed: {exc!r}") from exc
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()

    async def subscribe(self, since: float) -> AsyncIterator[bytes | CaughtUp]:
        conn = await self._ensure()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        conn.queues.add(queue)
        if conn.lost.done():
            queue.put_nowait(_LOST)
        sub = None

        async def deliver(msg: Msg) -> None:
            queue.put_nowait(msg)

        try:
            inbox = conn.nc.new_inbox()
            sub = await conn.nc.subscribe(inbox, cb=deliver)
            config = api.ConsumerConfig(
                deliver_subject=inbox,
                deliver_policy=api.DeliverPolicy.BY_START_TIME,
                opt_start_time=datetime.datetime.fromtimestamp(max(0.0, since), tz=datetime.UTC),
                ack_policy=api.AckPolicy.NONE,
                filter_subject=SUBJECTS,
                idle_heartbeat=HEARTBEAT_SECONDS,
                inactive_threshold=CONSUMER_INACTIVE_SECONDS,
                mem_storage=True,
                num_replicas=1,
            )
            info = await conn.js.add_consumer(STREAM, config=config)
            # Messages at or after ``since`` when the consumer was created: the history to replay.
            history = (info.num_pending or 0) + (info.delivered.consumer_seq if info.delivered else 0)
            caught_up = history == 0
            if caught_up:
                yield CAUGHT_UP
            last = 0  # consumer sequence of the last message handed out
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), STALL_SECONDS)
                except TimeoutError:
                    raise BusUnavailable(
                        f"{self.shown}: no message or heartbeat for {STALL_SECONDS}s"
                    ) from None
                if item is _LOST:
                    raise BusUnavailable(f"{self.shown}: connection lost")
                msg: Msg = item
                headers = msg.headers or {}
                status = headers.get("Status")
                if status is not None:
                    if status != "100":  # e.g. 409 consumer deleted: this subscription is over
                        raise BusUnavailable(f"{self.shown}: consumer status {status} {headers}")
                    seen = headers.get("Nats-Last-Consumer")  # an idle heartbeat
                    if seen is not None and int(seen) != last:
                        raise BusUnavailable(f"{self.shown}: missed messages (consumer at {seen}, read {last})")
                    continue
                meta = msg.metadata
                if meta.sequence.consumer != last + 1:
                    raise BusUnavailable(
                        f"{self.shown}: missed messages (got {meta.sequence.consumer} after {last})"
                    )
                last = meta.sequence.consumer
                yield msg.data
                if not caught_up and (meta.num_pending == 0 or last >= history):
                    caught_up = True
                    yield CAUGHT_UP
        except BusUnavailable:
            raise
        except nats.js.errors.NotFoundError as exc:
            conn.stream_ready = False
            raise BusUnavailable(f"{self.shown}: stream {STREAM} not found") from exc
        except _ERRORS as exc:
            raise BusUnavailable(f"{self.shown}: read failed: {exc!r}") from exc
        finally:
            conn.queues.discard(queue)
            if sub is not None and conn.alive:
                try:
                    await sub.unsubscribe()  # the server then drops the ephemeral consumer
                except _ERRORS:
                    pass

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
