"""The clients of fault tests: a raw HTTP/1.1 client, steady traffic made of it, and a KEDA-like gRPC client.

The HTTP client is written on asyncio streams and httptools rather than taken from a library because a
library would hide exactly what these tests count: aiohttp, for one, silently sends an idempotent request
again when a kept-alive connection drops. Here every request is sent once, and its outcome is one of a
few kinds (a complete answer, a cut body, a connection closed before any byte, refused, timed out), so
"no request lost" is a sum a test can check.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import httptools

from kedahttp.process.tasks import TaskOwner
from kedahttp.protos import externalscaler_pb2 as pb
from kedahttp.protos.externalscaler_pb2_grpc import ExternalScalerStub
from tests.harness.faulty_upstream import expected_body
from tests.harness.waiting import until

OK, STATUS, TRUNCATED, DISCONNECTED, REFUSED, TIMEOUT = "ok", "status", "truncated", "disconnected", "refused", "timeout"


class ConnectionClosed(Exception):
    """The server closed (or reset) the connection; ``got_bytes`` tells whether a response had begun."""

    def __init__(self, got_bytes: bool, cause: str) -> None:
        super().__init__(cause)
        self.got_bytes = got_bytes


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


class _ResponseParser:
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class HttpConnection:
    """One client connection; requests go one at a time, kept alive while the server allows."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    @property
    def open(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, host: str, body: bytes = b"",
                      headers: tuple[tuple[str, str], ...] = ()) -> Response:
        if not self.open:
            await self.connect()
        assert self.reader is not None and self.writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers)]
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        parser = _ResponseParser()
        got = False
        try:
            while not parser.complete:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionClosed(got, "closed")
                got = True
                parser.parser.feed_data(data)
        except (ConnectionError, OSError) as exc:
            self.close()
            raise ConnectionClosed(got, type(exc).__name__) from exc
        except ConnectionClosed:
            self.close()
            raise
        keep = parser.parser.should_keep_alive()
        if not keep:
            self.close()
        return Response(parser.parser.get_status_code(), parser.headers, b"".join(parser.body), keep)


@dataclass
class Outcome:
    rid: str
    method: str
    kind: str  # OK (200 and the exact body), STATUS (another status), TRUNCATED, DISCONNECTED, REFUSED, TIMEOUT
    status: int
    started: float  # time.monotonic()
    ended: float
    headers: dict[str, str] = field(default_factory=dict)
    detail: str = ""


async def send(conn: HttpConnection, method: str, mode: str, rid: str, host: str, *, n: int = 64,
               query: str = "", body: bytes = b"", timeout: float = 10.0) -> Outcome:
    """One request for ``/<mode>/<rid>``; the outcome says whether it came back complete and exact."""
    path = f"/{mode}/{rid}?n={n}" + (f"&{query}" if query else "")
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            response = await conn.request(method, path, host, body)
    except ConnectionClosed as exc:
        kind = TRUNCATED if exc.got_bytes else DISCONNECTED
        return Outcome(rid, method, kind, 0, started, time.monotonic(), detail=str(exc))
    except ConnectionRefusedError:
        conn.close()
        return Outcome(rid, method, REFUSED, 0, started, time.monotonic())
    except TimeoutError:  # before OSError, of which it is a subclass
        conn.close()
        return Outcome(rid, method, TIMEOUT, 0, started, time.monotonic())
    except OSError as exc:  # reset while connecting
        conn.close()
        return Outcome(rid, method, DISCONNECTED, 0, started, time.monotonic(), detail=type(exc).__name__)
    except httptools.HttpParserError as exc:
        conn.close()
        return Outcome(rid, method, TRUNCATED, 0, started, time.monotonic(), detail=f"bad response: {exc}")
    ended = time.monotonic()
    if response.status != 200:
        return Outcome(rid, method, STATUS, response.status, started, ended, response.headers,
                       response.body[:200].decode("latin-1"))
    if response.body != expected_body(method, rid, n, body):
        return Outcome(rid, method, "WRONG BODY", 200, started, ended, response.headers,
                       response.body[:120].decode("latin-1"))
    return Outcome(rid, method, OK, 200, started, ended, response.headers)


class Traffic:
    """``concurrency`` clients sending ``GET /ok/<id>`` for one host in a loop, each id used once.

    ``pace`` seconds between a client's requests; ``new_connection`` opens a connection per request.
    ``pause``/``resume`` hold the clients between requests; ``stop`` ends them after their current one.
    """

    def __init__(self, port: int, host: str, *, concurrency: int = 4, prefix: str = "r", pace: float = 0.0,
                 query: str = "", n: int = 64, new_connection: bool = False, timeout: float = 15.0) -> None:
        self.port = port
        self.host = host
        self.concurrency = concurrency
        self.prefix = prefix
        self.pace = pace
        self.query = query
        self.n = n
        self.new_connection = new_connection
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self.in_flight = 0
        self._ids = itertools.count()
        self._running = asyncio.Event()
        self._stopping = False
        self._tasks = TaskOwner(f"traffic-{prefix}")

    @property
    def sent(self) -> int:
        return len(self.outcomes) + self.in_flight

    def by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            key = o.kind if o.kind != STATUS else f"{o.status}"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def start(self) -> Traffic:
        self._running.set()
        for i in range(self.concurrency):
            self._tasks.spawn(self._client(), f"client-{i}")
        return self

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    async def idle(self, timeout: float = 30.0) -> None:
        """Pauses and waits until no request of these clients is in flight."""
        self.pause()
        await until(lambda: self.in_flight == 0, timeout, f"traffic {self.prefix} idle")

    async def stop(self, timeout: float = 30.0) -> None:
        self._stopping = True
        self._running.set()
        await until(lambda: len(self._tasks) == 0, timeout, f"traffic {self.prefix} stopped")

    async def _client(self) -> None:
        conn = HttpConnection(self.port)
        try:
            while not self._stopping:
                await self._running.wait()
                if self._stopping:
                    break
                rid = f"{self.prefix}{next(self._ids)}"
                self.in_flight += 1
                try:
                    outcome = await send(conn, "GET", "ok", rid, self.host, n=self.n, query=self.query,
                                         timeout=self.timeout)
                finally:
                    self.in_flight -= 1
                self.outcomes.append(outcome)
                if self.new_connection or outcome.kind != OK:
                    conn.close()
                if self.pace:
                    await asyncio.sleep(self.pace)
                elif outcome.kind == REFUSED:
                    await asyncio.sleep(0.01)
        finally:
            conn.close()


# -- KEDA's side --------------------------------------------------------------------------------------------


def ref(name: str, namespace: str = "default", **metadata: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=name, namespace=namespace, scalerMetadata=metadata)


class KedaClient:
    """Calls one scaler the way KEDA does (GetMetrics, IsActive, StreamIsActive) over one channel."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.channel = grpc.aio.insecure_channel(target)
        self.stub = ExternalScalerStub(self.channel)

    async def close(self) -> None:
        await self.channel.close(None)

    async def metric(self, so: pb.ScaledObjectRef, name: str) -> tuple[grpc.StatusCode, float]:
        """(OK, the float value) or (the error code, -1)."""
        try:
            response = await self.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=so, metricName=name),
                                                  timeout=3)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), -1.0
        (value,) = response.metricValues
        assert value.metricValue >= 0 and value.metricValueFloat >= 0
        return grpc.StatusCode.OK, value.metricValueFloat

    async def is_active(self, so: pb.ScaledObjectRef) -> tuple[grpc.StatusCode, bool]:
        try:
            response = await self.stub.IsActive(so, timeout=3)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), False
        return grpc.StatusCode.OK, bool(response.result)

    async def started_total(self, so_name: str, window: int, timeout: float = 20.0) -> float:
        """Requests started over the last ``window`` seconds, as the scaler counts them: rate x window.

        The window ends on a whole second a lag (the report interval + 0.25 s) before now, so ask at least
        2.5 s after the last request to count all of them. Waits (bounded) while the scaler answers
        UNAVAILABLE."""
        so = ref(so_name, targetRequestRate="1", rateWindowSeconds=str(window))
        deadline = time.monotonic() + timeout
        while True:
            code, rate = await self.metric(so, "requestrate")
            if code == grpc.StatusCode.OK:
                return rate * window
            assert code == grpc.StatusCode.UNAVAILABLE, code
            assert time.monotonic() < deadline, "scaler still UNAVAILABLE"
            await asyncio.sleep(0.1)

    async def wait_fresh(self, timeout: float = 20.0) -> None:
        so = ref("nothing")
        deadline = time.monotonic() + timeout
        while (await self.is_active(so))[0] != grpc.StatusCode.OK:
            assert time.monotonic() < deadline, f"scaler {self.target} never fresh"
            await asyncio.sleep(0.05)


class Poller:
    """Polls one backend's concurrency and IsActive every ``every`` seconds, recording each answer."""

    def __init__(self, keda: KedaClient, so: pb.ScaledObjectRef, every: float = 0.1) -> None:
        self.keda = keda
        self.so = so
        self.every = every
        self.samples: list[tuple[float, grpc.StatusCode, float, grpc.StatusCode, bool]] = []
        self._tasks = TaskOwner("poller")

    def start(self) -> Poller:
        self._tasks.spawn(self._run(), "poll")
        return self

    async def stop(self) -> None:
        await self._tasks.close()

    async def _run(self) -> None:
        while True:
            code, value = await self.keda.metric(self.so, "concurrency")
            acode, active = await self.keda.is_active(self.so)
            self.samples.append((time.monotonic(), code, value, acode, active))
            await asyncio.sleep(self.every)

    def between(self, t0: float, t1: float) -> list[tuple[float, grpc.StatusCode, float, grpc.StatusCode, bool]]:
        return [s for s in self.samples if t0 <= s[0] < t1]

    def false_zeros(self) -> list[Any]:
        """Answers that said "idle" (a zero concurrency or IsActive false) although they were OK."""
        return [s for s in self.samples
                if (s[1] == grpc.StatusCode.OK and s[2] <= 0.0) or (s[3] == grpc.StatusCode.OK and not s[4])]


class StreamWatcher:
    """A KEDA-like holder of one StreamIsActive stream that reconnects to the next address when it breaks.

    KEDA reconnects with a 2 s backoff; here ``backoff`` is shorter so the test stays quick.
    """

    def __init__(self, clients: list[KedaClient], so: pb.ScaledObjectRef, first: int = 0,
                 backoff: float = 0.2) -> None:
        self.clients = clients
        self.so = so
        self.index = first
        self.backoff = backoff
        self.trues: list[tuple[float, str]] = []  # (time.monotonic(), target) per true received
        self.opened: list[tuple[float, str]] = []
        self.breaks: list[tuple[float, str, str]] = []
        self._tasks = TaskOwner("stream-watcher")

    @property
    def target(self) -> str:
        return self.clients[self.index % len(self.clients)].target

    def start(self) -> StreamWatcher:
        self._tasks.spawn(self._run(), "stream")
        return self

    async def stop(self) -> None:
        await self._tasks.close()

    async def _run(self) -> None:
        while True:
            client = self.clients[self.index % len(self.clients)]
            call = client.stub.StreamIsActive(self.so)
            self.opened.append((time.monotonic(), client.target))
            try:
                async for message in call:
                    if message.result:
                        self.trues.append((time.monotonic(), client.target))
                self.breaks.append((time.monotonic(), client.target, "OK"))
            except grpc.aio.AioRpcError as exc:
                self.breaks.append((time.monotonic(), client.target, exc.code().name))
            finally:
                with contextlib.suppress(Exception):
                    call.cancel()
            self.index += 1
            await asyncio.sleep(self.backoff)


# -- the bus, as a tap ---------------------------------------------------------------------------------------


class BusTap:
    """Reads the activity bus like a scaler does and keeps each proxy instance's latest report."""

    def __init__(self, url: str) -> None:
        from kedahttp.activity.bus import open_transport
        from kedahttp.activity.feed import ActivityFeed

        self.latest: dict[str, Any] = {}  # instance -> its newest report
        self.wakes: list[Any] = []
        self.feed = ActivityFeed(open_transport(url), self._on_message, replay_seconds=1.0)
        self._tasks = TaskOwner("bus-tap")

    def _on_message(self, message: Any, now: float) -> None:
        if hasattr(message, "backends"):
            seen = self.latest.get(message.instance)
            if seen is None or message.seq > seen.seq:
                self.latest[message.instance] = message
        else:
            self.wakes.append(message)

    def start(self) -> BusTap:
        self._tasks.spawn(self.feed.run(), "feed")
        return self

    async def stop(self) -> None:
        await self._tasks.close()

    def in_flight_by_pid(self, backend: str) -> dict[int, int]:
        """In flight per proxy process, from instance ids ``<host>-<pid>-<random>``."""
        out: dict[int, int] = {}
        for instance, report in self.latest.items():
            pid = int(instance.rsplit("-", 2)[-2])
            out[pid] = sum(b.in_flight for b in report.backends if b.backend == backend)
        return out
