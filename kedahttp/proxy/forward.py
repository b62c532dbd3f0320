"""One request's journey through the proxy: the exchange between a client connection and an upstream one.

An ``Exchange`` is created when a request's head is parsed and lives until its response is written (or
it fails). It carries the request body to the upstream as it arrives (buffered only while there is no
upstream yet: held, connecting, or queued behind a pipelined request), the response back to the client
re-framed by http1.py, the activity counters (started at arrival, finished exactly once), and the retry
rule: a request is sent again only when nothing of it can have been acted on (the connection failed to
open), or when it is idempotent and a reused keep-alive connection closed before any byte of the response
while the whole body is still replayable (the stale keep-alive race); otherwise the client gets a 502.
A POST is never sent twice.

An upstream failure after the response began can no longer be answered 502: the client connection is
cut (so the client sees a truncated response, never a complete one), and the request is counted as an
upstream error with status 502 (class 5xx), the answer it would have had a moment earlier. A body that
ends with the connection is complete only on a clean close (EOF), never on a reset.

Bytes a client sends after an Upgrade request are held (bounded) until the upstream answers 101, and
dropped with the client connection if it declines: sent early, a declining upstream would read them as
a request that never went through the proxy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

from mypy_extensions import trait

from kedahttp.proxy import heads, http1
from kedahttp.proxy.access_log import AccessLog
from kedahttp.proxy.counters import STATUS_CLIENT_CLOSED, BackendCounters
from kedahttp.proxy.events import EventLog
from kedahttp.proxy.http1 import CHUNKED, LAST_CHUNK, NO_BODY
from kedahttp.proxy.pausing import PAUSE_BUFFER
from kedahttp.proxy.routing import Route

_rewrite_response: Final = heads.rewrite_response  # Final: a C static when compiled, not a dict lookup per call

# Final: compiled, each is a C constant; a plain module global is a dict lookup at every use
QUEUED: Final = 0
HELD: Final = 1
CONNECTING: Final = 2
SENT: Final = 3
TUNNEL: Final = 4
DONE: Final = 5
REPLAY_LIMIT: Final = 64 * 1024  # request body kept for a retry on a stale keep-alive connection
BUFFER_LIMIT: Final = 64 * 1024  # request body buffered before the client is paused
MAX_ATTEMPTS: Final = 3
RETRY_AFTER_SECONDS: Final = 5
STATUS_CLIENT_GONE: Final = STATUS_CLIENT_CLOSED

_clock: Final = time.monotonic  # Final: compiled, a C static rather than a lookup in the module dict

NOT_FOUND_BODY = b"kedahttp: no backend for this host and path\n"
UPSTREAM_TIMEOUT_BODY = b"kedahttp: the backend did not answer in time\n"  # 504 not from holding
BODIES = {
    400: b"kedahttp: bad request\n",
    405: b"kedahttp: method not allowed\n",
    431: b"kedahttp: request header fields too large\n",
    502: b"kedahttp: the backend failed to answer\n",
    503: b"kedahttp: too many requests waiting for this backend to start\n",
    504: b"kedahttp: the backend did not start in time\n",
    500: b"kedahttp: internal error\n",
    501: b"kedahttp: transfer coding not implemented\n",
    505: b"kedahttp: HTTP version not supported\n",
}


# The exchange's three collaborators, each seen through only what the exchange needs of it (as uvicorn's
# RequestResponseCycle is handed a transport, flow control and a callback), so this module imports none
# of theirs and they import it. They are mypyc traits, the compiled form of an interface: the implementing
# classes name them as bases and calls through them stay native C calls (a typing.Protocol would turn
# every call on the hot path into a generic attribute lookup). In plain Python they are ordinary bases.


@trait
class ClientSide:
    """The client connection (server.py's ClientConnection): its output, flow control and pipeline."""

    transport: asyncio.Transport
    batching: bool  # handling a read: writes are collected and go out in one at the end
    linger: bool  # close lingering: the client may still be sending a body nobody read
    client_ip: bytes  # the peer's address, for the access log

    def write(self, data: bytes) -> None: ...
    def flush(self) -> None: ...
    def flush_all(self) -> None: ...
    def pause_reading(self, reason: int) -> None: ...
    def resume_reading(self, reason: int) -> None: ...
    def closes_after_this(self) -> bool:
        """The connection closes after the answer now being written (draining, or nothing may follow)."""
        raise NotImplementedError
    def exchange_done(self, ex: Exchange, close: bool) -> None: ...
    def tunnel_to(self, transport: Any) -> None: ...
    def abort(self) -> None: ...


@trait
class UpstreamSide:
    """The upstream connection (upstream.py's UpstreamConnection) carrying the exchange's request."""

    transport: asyncio.Transport
    ex: Exchange | None
    open: bool
    reused: bool  # has carried a response before this one
    got_bytes: bool  # a byte of the current response has arrived
    last_read: float  # when the last byte arrived (coarse clock), for the idle timeouts

    def bind(self, ex: Exchange) -> None: ...
    def reading_resumed(self, now: float) -> None:
        """Reading paused on purpose (the client was not reading) is over: idle time counts from ``now``."""
    def release(self) -> None: ...
    def upload_taken_at(self, now: float) -> float:
        """While request bytes wait for the upstream: when it last took one (coarse clock); 0.0 when none wait.
        Asked by the sweep only (deadlines.py), never per request."""
        raise NotImplementedError
    def tunnel_to(self, transport: Any) -> None: ...
    def reset_on_close(self) -> None:
        """Closing this connection will reset it (RST), not wait to hand over what is still unsent."""
    def abort(self) -> None: ...


@trait
class Dispatch:
    """Where an exchange goes (dispatch.py's Dispatcher): an endpoint, the hold queue, a retry."""

    on_unreachable: Callable[[str], None] | None
    events: EventLog | None  # event lines: upstream errors
    access_log: AccessLog | None  # None unless sampling is on

    def dispatch(self, ex: Exchange) -> None: ...
    def send(self, ex: Exchange, fresh: bool) -> None: ...
    def unhold(self, ex: Exchange) -> None: ...


class Exchange:
    # No __slots__: most fields start at these class-level defaults, so creating an exchange per
    # request sets only the handful that differ (measurably cheaper on the hot path).
    counters: BackendCounters | None = None
    state = QUEUED
    error = 0  # a status to answer with when this exchange becomes active
    t_start = 0.0
    out_bytes = 0  # bytes in ``out``
    replay: list[bytes] | None = None  # every framed body piece so far, while under REPLAY_LIMIT
    replay_bytes = 0  # -1 once the body outgrew REPLAY_LIMIT
    up: UpstreamSide | None = None
    endpoint = ""
    attempts = 0
    held = False
    held_at = 0.0
    continued = False
    status = 0
    resp_started = False
    resp_body = NO_BODY
    resp_close = False
    up_until_close = False
    early: list[bytes] | None = None  # client bytes after an Upgrade request, held until the 101
    early_bytes = 0
    sent_at = 0.0  # when the sweep first saw the request sent in full (coarse clock); 0 before (deadlines.py)
    wants_page = False  # a browser's GET/HEAD to an app with the waiting page (set only when it is cold)

    def __init__(self, conn: ClientSide, dispatcher: Dispatch, method: bytes, head: bytes, body: int,
                 expect_continue: bool, upgrade: bool, route: Route | None, keep_alive: bool, http10: bool) -> None:
        self.conn = conn
        self.dispatcher = dispatcher
        self.method = method
        self.is_head = method == b"HEAD"
        self.head = head  # the request head for the upstream (kept for a retry)
        self.body = body  # request body framing
        self.expect_continue = expect_continue
        self.upgrade = upgrade
        self.route = route
        self.keep_alive = keep_alive
        self.http10 = http10
        self.out: list[bytes] = [head]  # bytes for the upstream not written yet
        self.req_done = body == NO_BODY

    # -- request side ------------------------------------------------------------------------------

    def activate(self) -> None:
        """This exchange is now first in its connection's pipeline."""
        if self.error:
            self.fail(self.error, close=self.error != 404)
        else:
            self.dispatcher.dispatch(self)

    def request_body(self, data: bytes) -> None:
        if self.state == DONE:
            return
        if self.body == CHUNKED:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.out.append(data)
        n = len(data)
        self.out_bytes += n
        if self.replay_bytes >= 0:
            if self.replay_bytes + n <= REPLAY_LIMIT:
                if self.replay is None:
                    self.replay = []
                self.replay.append(data)
                self.replay_bytes += n
            else:
                self.replay = None
                self.replay_bytes = -1
        if self.state == SENT:
            if not self.conn.batching:
                self.flush_upstream()
        elif self.out_bytes > BUFFER_LIMIT:
            self.conn.pause_reading(PAUSE_BUFFER)

    def request_done(self) -> None:
        if self.req_done:
            return
        self.req_done = True
        if self.state != DONE and self.body == CHUNKED:
            self.request_body_raw(LAST_CHUNK)

    def request_body_raw(self, data: bytes) -> None:
        """Bytes for the upstream as they are (the last chunk of a chunked body)."""
        self.out.append(data)
        if self.replay is not None:
            self.replay.append(data)
        if (self.state == SENT and not self.conn.batching) or self.state == TUNNEL:
            self.flush_upstream()

    def flush_upstream(self) -> None:
        out = self.out
        up = self.up
        if not out or up is None:
            return
        if len(out) == 1:
            up.transport.write(out[0])
        else:
            up.transport.writelines(out)
        self.out = []
        if self.out_bytes > BUFFER_LIMIT:
            self.conn.resume_reading(PAUSE_BUFFER)
        self.out_bytes = 0

    # -- dispatch (called by the dispatcher and the pool) --------------------------------------------

    def waiting_for_connection(self) -> bool:
        return self.state == CONNECTING

    def attach(self, up: UpstreamSide) -> None:
        self.up = up
        self.state = SENT
        up.bind(self)
        if self.expect_continue and not self.continued and not self.http10:
            self.continued = True
            self.conn.write(http1.CONTINUE_100)
            if not self.conn.batching:
                self.conn.flush()
        if not self.conn.batching:
            self.flush_upstream()

    def connect_failed(self, endpoint: str, exc: BaseException) -> None:
        if self.state != CONNECTING:
            return
        self.upstream_error(f"connect failed: {str(exc) or type(exc).__name__}", 502)
        route = self.route
        dispatcher = self.dispatcher
        if route is not None and dispatcher.on_unreachable is not None:
            dispatcher.on_unreachable(route.key)
        if self.attempts < MAX_ATTEMPTS and route is not None and route.endpoints:
            dispatcher.send(self, True)
        else:
            self.fail(502)
        self.conn.flush()

    def upstream_lost(self, up: UpstreamSide, clean: bool) -> None:
        """The upstream connection closed while this exchange was using it; ``clean``: by EOF, not a reset."""
        if self.state != SENT or self.up is not up:
            return
        if self.resp_started and self.up_until_close and clean:
            self.response_complete(up, False)
            self.conn.flush()
            return
        self.upstream_error("connection closed mid-response" if self.resp_started
                            else "connection closed before a response", 502)
        if self.resp_started:
            self.abort(502)  # a cut response: counted as the 502 it would have been a moment earlier
            self.conn.flush()
            return
        if (up.reused and not up.got_bytes and self.replay_bytes >= 0 and self.attempts < MAX_ATTEMPTS
                and self.method in http1.IDEMPOTENT):
            self.retry()
        else:
            self.up = None
            self.fail(502)
        self.conn.flush()

    def upstream_failed(self, up: UpstreamSide, reason: str) -> None:
        """The upstream sent something that is not HTTP."""
        if self.up is not up:
            return
        self.upstream_error(reason, 502)
        self.up = None
        up.ex = None
        if self.resp_started:
            self.abort(502)
        else:
            self.fail(502)

    def upstream_misbound(self, up: UpstreamSide) -> None:
        """``up`` was handed to this exchange while the rest of a read still held another response (an
        upstream answering twice). If the head has not gone out on it yet, a fresh connection takes the
        request; otherwise the upstream misbehaved with this request in its hands: 502."""
        if self.up is not up or self.state != SENT:
            return
        if self.out and self.out[0] is self.head and not self.resp_started:
            if self.counters is not None:
                self.counters.upstream_errors += 1
            self.up = None
            up.ex = None
            self.sent_at = 0.0
            self.dispatcher.send(self, True)
        else:
            self.upstream_failed(up, "a response to no request")

    def retry(self) -> None:
        self.up = None
        self.sent_at = 0.0
        self.out = [self.head, *(self.replay or ())]
        self.out_bytes = 0
        self.dispatcher.send(self, True)

    # -- response side (called by the upstream connection) ---------------------------------------

    def response_head(self, status: int, head: bytes) -> None:
        self.status = status
        conn = self.conn
        if status < 200 and status != 101:
            if status != 100 and not self.http10:  # our own 100 answered Expect already
                # positional: (status, head, bodiless, client_http10, keep_alive, cold)
                conn.write(_rewrite_response(status, head, True, False, True, False)[0])
            return
        keep = self.keep_alive and self.req_done and not self.upgrade and not conn.closes_after_this()
        out, self.resp_body, self.resp_close, self.up_until_close = _rewrite_response(
            status, head, self.is_head or status == 204 or status == 304, self.http10, keep, self.held)
        self.resp_started = True
        conn.write(out)

    def response_body(self, body: bytes) -> None:
        mode = self.resp_body
        if mode == CHUNKED:
            self.conn.write(b"%x\r\n%s\r\n" % (len(body), body))
        elif mode != NO_BODY:
            self.conn.write(body)

    def response_complete(self, up: UpstreamSide, upstream_keep_alive: bool) -> None:
        if self.state != SENT:
            return
        if self.resp_body == CHUNKED:
            self.conn.write(LAST_CHUNK)
        self.state = DONE
        self.up = None
        if upstream_keep_alive and self.req_done and up.open:
            up.release()
        else:
            up.abort()
        counters = self.counters
        if counters is not None:
            t = _clock()
            counters.finish(t, self.t_start, self.status, False)
            log = self.dispatcher.access_log
            if log is not None:
                log.record(counters.key, self.conn.client_ip, self.head, self.status, t - self.t_start, self.held)
        self.conn.exchange_done(self, self.resp_close or not self.req_done)

    def response_upgraded(self, up: UpstreamSide, rest: bytes) -> None:
        """101 Switching Protocols: from now on bytes pass through both ways untouched."""
        if self.status != 101 or self.state != SENT:
            self.upstream_failed(up, "unexpected upgrade")
            up.abort()
            return
        self.state = TUNNEL
        conn = self.conn
        if rest:
            conn.write(rest)
        up.ex = None
        up.tunnel_to(conn.transport)
        conn.tunnel_to(up.transport)
        early = self.early
        if early:  # the client's first bytes of the new protocol, held until now
            self.early = None
            self.out.extend(early)
            self.out_bytes += self.early_bytes
        self.flush_upstream()

    def tunnel_data(self, data: bytes) -> None:
        """Client bytes after an upgrade request: held until the 101 (dropped if it never comes)."""
        if self.state == TUNNEL and self.up is not None:
            self.up.transport.write(data)
        elif self.state != DONE:
            if self.early is None:
                self.early = []
            self.early.append(data)
            self.early_bytes += len(data)
            if self.early_bytes > BUFFER_LIMIT:
                self.conn.pause_reading(PAUSE_BUFFER)

    # -- endings -----------------------------------------------------------------------------------

    def fail(self, status: int, close: bool = False, retry_after: int | None = None,
             body: bytes | None = None) -> None:
        """Ends the exchange with the proxy's own reply (or a cut connection if a response began)."""
        if self.state == DONE:
            return
        if self.resp_started:
            self.abort(self.status)
            return
        if status in (503, 504) and retry_after is None:
            retry_after = RETRY_AFTER_SECONDS
        close = close or self.must_close()
        if body is None:
            body = NOT_FOUND_BODY if status == 404 else BODIES.get(status, b"kedahttp: error\n")
        self.reply(status, http1.error_response(status, body, close=close, retry_after=retry_after,
                                                head_only=self.is_head), close)

    def must_close(self) -> bool:
        """Whether the connection must close after an answer of the proxy's own to this request."""
        conn = self.conn
        return not self.req_done or not self.keep_alive or self.upgrade or conn.closes_after_this()

    def reply(self, status: int, response: bytes, close: bool) -> None:
        """Ends the exchange with a whole response of the proxy's own (an error, the waiting page), made
        with ``close`` from ``must_close()`` or stronger."""
        if self.state == DONE or self.resp_started:
            return
        conn = self.conn
        if not self.req_done:  # the client may still be sending the body: let it read the answer first
            conn.linger = True
        conn.write(response)
        self._end(status)
        conn.exchange_done(self, close)

    # -- upstream timeouts (found by the server's sweep: deadlines.py) -----------------------------------

    def upstream_error(self, reason: str, status: int) -> None:
        """Counts an upstream failure and logs it (rate-limited per app)."""
        counters = self.counters
        if counters is not None:
            counters.upstream_errors += 1
            events = self.dispatcher.events
            if events is not None:
                events.upstream_error(counters.key, self.endpoint, reason, status)

    def timed_out(self, reason: str) -> None:
        """The upstream ran past a timeout: 504 if no response began, else the response is cut (counted as
        a 504, the answer it would have had)."""
        if self.state != SENT:
            return
        if self.up is not None:
            # given up on: reset, so neither the app nor our kernel keeps the connection (an app that stopped
            # reading would otherwise hold an orphaned socket and its full send buffer)
            self.up.reset_on_close()
        if self.counters is not None:
            self.counters.upstream_timeouts += 1
        self.upstream_error(reason, 504)
        if self.resp_started:
            self.abort(504)
        else:
            self.fail(504, body=UPSTREAM_TIMEOUT_BODY)
        self.conn.flush()

    def tunnel_idle(self) -> None:
        """A tunnel carried nothing either way past its idle timeout: both sides are closed."""
        if self.state != TUNNEL:
            return
        if self.counters is not None:
            self.counters.tunnel_idle_closes += 1
        self._end(101)
        self.conn.transport.close()

    def abort(self, status: int) -> None:
        """Ends the exchange by closing the client connection (a response was already under way)."""
        if self._end(status or 502):
            self.conn.abort()

    def client_gone(self) -> None:
        """The client connection closed (or half-closed with this request unanswered or incomplete): forget
        the exchange wherever it is, closing its upstream connection."""
        if self.state == TUNNEL:
            self._end(101)
        else:
            self._end(self.status if self.resp_started and self.req_done else STATUS_CLIENT_GONE)

    def _end(self, status: int) -> bool:
        """Leaves whatever state the exchange is in and counts it finished, once."""
        state = self.state
        if state == DONE:
            return False
        self.state = DONE
        if state == HELD:
            self.dispatcher.unhold(self)
        elif state in (SENT, TUNNEL):
            up = self.up
            self.up = None
            if up is not None:
                up.abort()
        counters = self.counters
        if counters is not None:
            t = _clock()
            counters.finish(t, self.t_start, status, state == HELD)
            log = self.dispatcher.access_log
            if log is not None:
                log.record(counters.key, self.conn.client_ip, self.head, status, t - self.t_start, self.held)
        return True
