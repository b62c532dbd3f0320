"""The client side of the data path: an HTTP/1.1 server at the asyncio.Protocol level (uvloop + llhttp).

``ClientConnection`` parses requests with llhttp (heads.RequestReader: our C binding, or httptools in plain
Python; strict llhttp either way: it rejects CL+TE, duplicate
Content-Length, bad chunk sizes, obs-fold and other smuggling vectors; we map those to 400 + close and an
oversized header block to 431), keeps pipelined requests in order (one active exchange; later ones wait
with reading paused), applies backpressure both ways, and batches its writes: everything produced while
handling one read goes out in one write. After a refused request (400, 431, 501, 505), or an answer
given before the request body was read, the connection closes lingering, as nginx's lingering_close: writes are shut down, then input is read and dropped for up
to LINGER_SECONDS or LINGER_BYTES, so a client still sending gets the error instead of a reset that can
destroy it. ``ProxyServer`` owns the listening socket, a one-second sweep
(slow-header clients, idle keep-alive connections, idle upstream connections) and the drain on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Any, Final

import httptools

from kedahttp.proxy import heads, http1
from kedahttp.proxy.counters import UnroutedCounters
from kedahttp.proxy.deadlines import NOT_DUE, REASONS, overdue, sweep_interval, tunnel_overdue
from kedahttp.proxy.dispatch import Dispatcher
from kedahttp.proxy.forward import DONE, SENT, TUNNEL, ClientSide, Exchange
from kedahttp.proxy.forwarded import TrustedProxies
from kedahttp.proxy.http1 import BadRequest
from kedahttp.proxy.pausing import PAUSE_PIPELINE
from kedahttp.proxy.routing import RouteTable
from kedahttp.proxy.upstream import UpstreamPool
from kedahttp.proxy.waiting_page import accepts_html

_RequestReader: Final = heads.RequestReader  # Final: a C static when compiled, not a dict lookup per call

log = logging.getLogger("kedahttp.proxy.server")

HEADER_TIMEOUT_SECONDS: Final = 10.0  # a request head must be complete this long after its first byte
KEEP_ALIVE_TIMEOUT_SECONDS: Final = 75.0  # an idle client connection is closed after this (nginx's default)
LINGER_SECONDS: Final = 2.0  # after a refused request, input is drained this long at most (nginx: 5 s / 30 s)
LINGER_BYTES: Final = 64 * 1024  # ... and this much at most



def _small(pieces: list[bytes]) -> bool:
    """Under 16 KiB in all (a compiled loop: sum(map(len, ...)) costs generic calls)."""
    n = 0
    for piece in pieces:
        n += len(piece)
    return n < 16384


class _Closing(Exception):
    """Stops the parser: the connection is closing, so the requests after the last answered are not read."""


class ClientConnection(asyncio.Protocol, ClientSide):
    __slots__ = (
        "batching", "client_ip", "close_pending", "closing", "head_bytes", "in_head", "linger", "lingering", "parser",
        "paused", "queue", "reading", "server", "since", "transport", "trusted", "tunnel", "upgraded", "wbuf",
        "write_paused",
    )

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser: heads.RequestReader | None = _RequestReader(self)
        self.client_ip = b"unknown"
        self.trusted = False  # the peer is in TRUSTED_PROXIES: its forwarded headers are believed
        # pipelined exchanges in order, the active one first; a list, not a deque: compiled, its
        # operations are C calls (a deque's are generic method calls), and it rarely holds more than two
        self.queue: list[Exchange] = []
        self.reading: Exchange | None = None  # the exchange whose request body the parser is reading
        self.in_head = False
        self.head_bytes = 0
        self.since = 0.0  # when the current head began, or when the connection went idle
        self.wbuf: list[bytes] = []
        self.batching = False
        self.paused = 0
        self.write_paused = False
        self.closing = False  # close once the last response is written
        self.close_pending = False
        self.linger = False  # close lingering (a request was refused)
        self.lingering = 0  # bytes still to drop while lingering; 0 when not lingering
        self.tunnel: Any = None  # the upstream transport once upgraded
        self.upgraded: Exchange | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip = str(peer[0]).encode()
            self.trusted = self.server.trusted_proxies.trusts(self.client_ip)
        self.since = self.server.now
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.since = self.server.now  # tunnel activity, for its idle timeout
            self.tunnel.write(data)
            return
        if self.upgraded is not None:
            self.upgraded.tunnel_data(data)
            return
        parser = self.parser
        if parser is None:  # a bad request is being answered; nothing more is read
            if self.lingering:
                self.lingering = max(0, self.lingering - len(data))
                if not self.lingering:
                    self.transport.close()
            return
        self.batching = True
        try:
            parser.feed_data(data)
            if self.in_head:  # a head still incomplete at the end of this read: bound it
                if self.head_bytes >= 0:  # it began in an earlier read: all of this read is head
                    self.head_bytes += len(data)
                else:  # it began in this read, after whatever came before it (rare: a split head)
                    # (what the parser handed over so far; the line in progress counts from the next read)
                    self.head_bytes = parser.partial_head_bytes()
                if self.head_bytes > http1.MAX_HEADER_BYTES:
                    self.bad_request(431)
        except httptools.HttpParserUpgrade as exc:
            ex = self.reading
            if ex is not None and ex.upgrade:
                self.upgraded = ex
                rest = data[exc.args[0]:]
                if rest:
                    ex.tunnel_data(rest)
            else:
                self.bad_request(400)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Closing):
                self.in_head = False  # the connection closes: what follows is not read
            elif isinstance(cause, BadRequest):
                self.bad_request(cause.status)
            else:
                log.error("request handling failed", exc_info=cause or exc)
                self.bad_request(500)
        except httptools.HttpParserError as exc:
            h2 = self.server.h2
            if h2 is not None and parser.target() == b"*" and not self.queue and str(exc).startswith("Pause on PRI"):
                # the HTTP/2 connection preface: the connection is the HTTP/2 side's from here on
                self.server.connections.discard(self)
                self.parser = None
                self.in_head = False
                h2.take_over(self.transport, data, self.client_ip, self.trusted)
            else:
                self.bad_request(400)
        finally:
            self.batching = False
            self.flush_all()

    def eof_received(self) -> bool | None:
        # A client that half-closes (FIN) once its request is complete and its response has begun still
        # gets the rest of that response. Before that it has left, as nginx takes it: its request is
        # ended (499 unless answered) and its upstream connection closed, rather than kept until an
        # upstream that may never answer does; so are the pipelined requests behind it.
        queue = self.queue
        if queue and self.tunnel is None:
            ex = queue[0]
            if ex.req_done and ex.resp_started and ex.up is not None:
                self.closing = True
                while len(queue) > 1:
                    queue.pop().client_gone()
                self.parser = None
                return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        queue = self.queue
        while queue:
            queue.pop(0).client_gone()
        self.parser = None
        if self.tunnel is not None:
            tunnel, self.tunnel = self.tunnel, None
            tunnel.close()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.queue:
            up = self.queue[0].up
            if up is not None and up.transport is not None:
                up.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.queue:
            up = self.queue[0].up
            if up is not None and up.transport is not None:
                up.reading_resumed(self.server.now)  # it was not read meanwhile: not idle time
                up.transport.resume_reading()

    # -- the request reader's callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        # At the first byte of a request (llhttp calls this before the method is complete, where on_url
        # would wait for the whole method): the header clock starts here, so "GE" alone is cut at the
        # header timeout, not at the keep-alive one.
        self.in_head = True
        self.head_bytes = -1  # began in the current read
        self.since = self.server.now

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        if parser is None:  # the connection is closing (a reply that ends it went out in this read)
            raise _Closing
        # checked (CONNECT, the version, a missing Host: 405, 400, 505) and rewritten for the upstream
        method, keep_alive, http10, head, host, path, body, expect_continue, upgrade = parser.request(
            self.client_ip, b"http", self.trusted)
        server = self.server
        route = server.routes.lookup(host, path)
        dispatcher = server.dispatcher
        ex = Exchange(self, dispatcher, method, head, body, expect_continue, upgrade, route, keep_alive, http10)
        if route is None:
            ex.error = 404
            server.unrouted.unrouted += 1
        else:
            if not route.endpoints and route.limits.page is not None and (method == b"GET" or method == b"HEAD"):
                ex.wants_page = accepts_html(parser.headers())  # cold, and the app answers browsers with a page
            dispatcher.admit(ex, route)
        self.reading = ex
        queue = self.queue
        queue.append(ex)
        if len(queue) > 1:
            self.pause_reading(PAUSE_PIPELINE)
        elif route is not None and route.endpoints:
            dispatcher.send(ex, False)  # the common case, without activate() and dispatch()
        else:
            ex.activate()

    def on_body(self, body: bytes) -> None:
        ex = self.reading
        if ex is not None:
            ex.request_body(body)

    def on_message_complete(self) -> None:
        # only for a request with a body (the reader's rule): one without is done from its head on
        ex = self.reading
        if ex is not None and not ex.req_done:
            ex.request_done()

    # -- called by exchanges -----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.batching:
            self.wbuf.append(data)
        else:
            self.transport.write(data)

    def flush_all(self) -> None:
        """After a batch (a read from the client or from the active exchange's upstream): that exchange's
        bytes for its upstream, then ours for the client."""
        queue = self.queue
        if queue:
            ex = queue[0]
            if ex.out and ex.up is not None:
                ex.flush_upstream()
        if self.wbuf or self.close_pending:
            self.flush()

    def closes_after_this(self) -> bool:
        return (self.closing and len(self.queue) <= 1) or self.server.draining

    def tunnel_to(self, transport: Any) -> None:
        self.tunnel = transport

    def flush(self) -> None:
        wbuf = self.wbuf
        if wbuf:
            if len(wbuf) == 1:
                self.transport.write(wbuf[0])
            elif len(wbuf) < 8 and _small(wbuf):
                self.transport.write(b"".join(wbuf))  # one write() beats a writev() of small pieces
            else:
                self.transport.writelines(wbuf)
            wbuf.clear()  # the transport keeps the pieces, not the list: one list per connection
        if self.close_pending:
            self.close_pending = False
            self._close()

    def exchange_done(self, ex: Exchange, close: bool) -> None:
        queue = self.queue
        if queue and queue[0] is ex:
            del queue[0]
        if close or (self.closing and not queue):
            self._close_after_writes()
            return
        self.since = self.server.now
        if queue:
            if len(queue) == 1:
                self.resume_reading(PAUSE_PIPELINE)
            queue[0].activate()
        elif self.paused & PAUSE_PIPELINE:
            self.resume_reading(PAUSE_PIPELINE)

    def bad_request(self, status: int) -> None:
        """The request being parsed is malformed: answer it in its turn, then close (lingering)."""
        self.server.unrouted.refuse(status)
        self.parser = None
        self.closing = True
        self.linger = True
        self.in_head = False
        ex = self.reading
        if ex is not None and not ex.req_done and ex.state != DONE:
            if self.queue and self.queue[0] is ex:
                ex.req_done = True
                ex.fail(status, close=True)
                return
            ex.error = status
            return
        # a new request: answer after the ones before it
        bad = Exchange(self, self.server.dispatcher, b"GET", b"", http1.NO_BODY, False, False, None, False, False)
        bad.error = status
        self.reading = bad
        self.queue.append(bad)
        if len(self.queue) == 1:
            bad.activate()

    def pause_reading(self, reason: int) -> None:
        if not self.paused:
            self.transport.pause_reading()
        self.paused |= reason

    def resume_reading(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def abort(self) -> None:
        self.wbuf = []
        self.transport.abort()

    def _close_after_writes(self) -> None:
        self.closing = True
        self.parser = None
        if self.batching:
            self.close_pending = True
        else:
            self.flush()
            self._close()

    def _close(self) -> None:
        transport = self.transport
        if not self.linger or transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        self.linger = False
        self.lingering = LINGER_BYTES
        self.since = self.server.now
        transport.write_eof()  # after what is buffered: the client reads the answer, then EOF
        self.paused = 0
        transport.resume_reading()

    def sweep(self, now: float) -> None:
        server = self.server
        queue = self.queue
        if queue:
            ex = queue[0]
            if ex.state == SENT or ex.state == TUNNEL:
                self._check_upstream_timeouts(ex, now)
        if self.lingering:
            if now - self.since >= LINGER_SECONDS + server.sweep_interval_seconds:
                self.transport.close()
        elif self.in_head:
            # ``since`` comes from the coarse clock, up to one sweep early: allow for it
            if now - self.since >= server.header_timeout_seconds + server.sweep_interval_seconds:
                self.transport.abort()
        elif not self.queue and self.upgraded is None:
            if now - self.since >= server.keep_alive_timeout_seconds:
                self.transport.close()
            elif self.parser is not None:
                self.parser.trim()  # idle between requests: the reader's head buffer is given back

    def _check_upstream_timeouts(self, ex: Exchange, now: float) -> None:
        route = ex.route
        up = ex.up
        if route is None or up is None:
            return
        slack = self.server.tick_seconds  # coarse stamps may be early by one sweep
        if ex.state == TUNNEL:
            if tunnel_overdue(route.limits, now, slack, max(self.since, up.last_read)):
                ex.tunnel_idle()
            return
        if not ex.sent_at and ex.req_done:
            ex.sent_at = now  # the first sweep to see it sent in full: no clock read per request
        due = overdue(route.limits, now, slack, sent_at=ex.sent_at, req_done=ex.req_done,
                      resp_started=ex.resp_started, streaming=ex.resp_body != http1.LENGTH,
                      last_read=up.last_read, reading_paused=self.write_paused,
                      last_taken=up.upload_taken_at(now))
        if due != NOT_DUE:
            ex.timed_out(REASONS[due])

    @property
    def idle(self) -> bool:
        return not self.queue and self.upgraded is None and not self.in_head


class ProxyServer:
    """The listening socket, its connections, and the shared state they reach through ``server``."""

    def __init__(self, routes: RouteTable, dispatcher: Dispatcher, pool: UpstreamPool, *,
                 header_timeout_seconds: float = HEADER_TIMEOUT_SECONDS,
                 keep_alive_timeout_seconds: float = KEEP_ALIVE_TIMEOUT_SECONDS,
                 sweep_interval_seconds: float = 1.0,
                 trusted_proxies: TrustedProxies | None = None,
                 unrouted: UnroutedCounters | None = None) -> None:
        self.routes = routes
        self.dispatcher = dispatcher
        self.pool = pool
        self.h2: Any = None  # the HTTP/2 side (h2/side.py): takes the connections that open with its preface
        self.trusted_proxies = trusted_proxies or TrustedProxies()
        self.unrouted = unrouted or UnroutedCounters()
        self.connections: set[ClientConnection] = set()
        self.draining = False
        # timeouts are checked by a sweep every ``sweep_interval_seconds``, so they fire up to one late
        self.header_timeout_seconds = header_timeout_seconds
        self.keep_alive_timeout_seconds = keep_alive_timeout_seconds
        self.sweep_interval_seconds = sweep_interval_seconds
        self.tick_seconds = sweep_interval_seconds  # the period in use: see _schedule_sweep
        self.now = time.monotonic()  # coarse clock for timeouts, updated by the sweep
        self._server: Any = None  # an asyncio.Server; uvloop gives .sockets as a list, asyncio as a tuple
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False,
                    sock: socket.socket | None = None) -> None:
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(lambda: ClientConnection(self), sock=sock, backlog=4096)
        else:
            self._server = await loop.create_server(
                lambda: ClientConnection(self), host or None, port, reuse_port=reuse_port or None,
                reuse_address=True, backlog=4096,
            )
        self._schedule_sweep()

    def set_timeouts(self, *, header_timeout_seconds: float | None = None,
                     keep_alive_timeout_seconds: float | None = None,
                     sweep_interval_seconds: float | None = None) -> None:
        """Changes the timeouts of a running server; the sweep is re-armed at the new interval at once."""
        if header_timeout_seconds is not None:
            self.header_timeout_seconds = header_timeout_seconds
        if keep_alive_timeout_seconds is not None:
            self.keep_alive_timeout_seconds = keep_alive_timeout_seconds
        if sweep_interval_seconds is not None:
            self.sweep_interval_seconds = sweep_interval_seconds
            self.now = time.monotonic()  # else stale by up to the old interval, more than the new margin
            if self._sweeper is not None:
                self._sweeper.cancel()
                self._schedule_sweep()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def _schedule_sweep(self) -> None:
        # at most sweep_interval_seconds apart; closer when an app has a short upstream timeout (deadlines.py)
        self.tick_seconds = sweep_interval(self.routes.shortest_timeout_seconds, self.sweep_interval_seconds)
        self._sweeper = asyncio.get_running_loop().call_later(self.tick_seconds, self._sweep)

    def _sweep(self) -> None:
        now = self.now = time.monotonic()
        for conn in list(self.connections):
            conn.sweep(now)
        self.pool.sweep(now)
        self._schedule_sweep()

    def active_exchanges(self) -> int:
        return sum(len(c.queue) + (c.upgraded is not None) for c in self.connections)

    async def stop_accepting(self) -> None:
        self.draining = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.idle:
                conn.transport.close()
            else:
                conn.closing = True

    async def drain(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < deadline and any(not c.idle for c in self.connections):
            for conn in list(self.connections):
                if conn.idle:
                    conn.transport.close()
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            # still held or in flight after the drain deadline: held requests get a 503, the rest a cut
            for ex in list(conn.queue):
                if ex is conn.queue[0] and not ex.resp_started:
                    with contextlib.suppress(Exception):
                        ex.fail(503, close=True)
            conn.flush()
            conn.transport.abort() if conn.queue else conn.transport.close()
        self.pool.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
