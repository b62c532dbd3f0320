"""The live page on the admin server: per-app state pushed to the browser with Server-Sent Events.

``GET /live`` serves a static page (package data, no build step, no external assets) that opens
``/live/events`` with EventSource. A ticker samples the proxy's own counters every ``TICK_SECONDS`` while
at least one viewer is connected (nobody watching costs nothing), folds them in livestate.py, and each
viewer is sent only the rows of its page that changed since it was last written to: at most one event
batch per tick per viewer, whatever the traffic, and a slow viewer skips ticks without losing a change.
The ticker's cost is bounded too: sampling reads the counters a column at a time (``route_samples``) and
the model folds only the apps that moved, about 3 ms at 10,000 apps; and it sleeps at least nine times as
long as its last tick took, so it uses at most a tenth of the event loop however many apps there are.
Search and paging run on the server, so 10,000 apps never reach the browser at once.

Auth: with an admin token set, ``POST /live/login`` takes the token in the form body and answers with
an opaque session cookie (HttpOnly, SameSite=Strict, scoped to /live); the token never appears in a
URL, a cookie or a log. Without a token the page is served only when the admin server listens on a
loopback address (``is_served``), and is then open; on any other address the proxy's admin server
answers its probes only, so an install without the admin Secret shows nobody its traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import operator
import secrets
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

from kedahttp.process.lifecycle import BaseComponent
from kedahttp.process.settings import Address
from kedahttp.process.tasks import TaskOwner
from kedahttp.proxy.counters import BackendCounters
from kedahttp.proxy.livestate import ColdWaits, LiveModel, Sample, Samples, row_json
from kedahttp.proxy.routing import RouteTable

log = logging.getLogger("kedahttp.proxy.live")

TICK_SECONDS = 0.25
IDLE_PER_BUSY = 9.0  # the ticker sleeps at least this many times as long as its last tick took
HEARTBEAT_SECONDS = 15.0
SESSION_SECONDS = 12 * 3600.0
MAX_SESSIONS = 1000
PAGE_SIZE_LIMIT = 200
COOKIE = "kedahttp_live"
STATIC = ("live.html", "live.js", "live.css", "login.html")
CONTENT_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
                 "css": "text/css; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Sampler = Callable[[], Samples]
_NEVER_REQUESTED = BackendCounters("")  # the counters of a route no request has reached: all zero


def route_samples(routes: RouteTable) -> Samples:
    """Samples read straight from the route table and each route's counters (one proxy process), a column
    at a time with C-level iteration: about a millisecond for 10,000 apps."""
    table = list(routes.routes.values())
    # a route's state is None until a request reaches it; getattr(None, "counters", default) is the default
    counters = list(map(getattr, map(operator.attrgetter("state"), table), itertools.repeat("counters"),
                        itertools.repeat(_NEVER_REQUESTED)))
    return Samples(list(routes.routes), list(map(len, map(operator.attrgetter("endpoints"), table))),
                   *(list(map(operator.attrgetter(field), counters)) for field in ("in_flight", "held", "started")))


def route_cold_waits(routes: RouteTable) -> ColdWaits:
    def waits(key: str) -> tuple[int, float]:
        route = routes.get(key)
        if route is None or route.state is None:
            return 0, 0.0
        c = route.state.counters
        return sum(c.cold_wait_buckets), c.cold_wait_sum

    return waits


class SnapshotSampler:
    """Samples from the workers' summed snapshots (WORKERS > 1; they arrive once a second). The cold waits
    of a transition are read from the snapshot of the same tick: summing the workers' snapshots is the
    expensive part, done once per tick."""

    def __init__(self, routes: RouteTable, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.routes = routes
        self.snapshot = snapshot
        self.backends: dict[str, Any] = {}

    def sample(self) -> Samples:
        self.backends = backends = self.snapshot().get("backends", {})
        out: list[Sample] = []
        for key, route in self.routes.routes.items():
            b = backends.get(key)
            if b is None:
                out.append((key, len(route.endpoints), 0, 0, 0))
            else:
                out.append((key, len(route.endpoints), b["in_flight"], b["held"], b["started"]))
        return Samples.of(out)

    def cold_waits(self, key: str) -> tuple[int, float]:
        b = self.backends.get(key)
        return (sum(b["cold_wait_buckets"]), b["cold_wait_sum"]) if b else (0, 0.0)


class _Viewer:
    """One open event stream: its page, what it was last sent, and a wake-up for the next tick."""

    def __init__(self, query: str, offset: int, limit: int) -> None:
        self.query = query
        self.offset = offset
        self.limit = limit
        self.keys: list[str] = []
        self.keys_version = -1
        self.sent: dict[str, tuple[Any, ...] | None] = {}
        self.summary = ""
        self.version = -1
        self.tick = asyncio.Event()


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def is_served(token: str | None, address: Address) -> bool:
    """The page shows every app's traffic: beyond a loopback address only behind the admin token."""
    return bool(token) or address.is_loopback


class LivePage(BaseComponent):
    name = "live"

    def __init__(self, token: str | None, sample: Sampler, cold_waits: ColdWaits,
                 scale_down_after: Callable[[str], float | None] = lambda key: None,
                 tick_seconds: float = TICK_SECONDS, clock: Callable[[], float] = time.time) -> None:
        self.token = token
        self.sample = sample
        self.model = LiveModel(scale_down_after, cold_waits)
        self.tick_seconds = tick_seconds
        self.clock = clock
        self.viewers: set[_Viewer] = set()
        self.sessions: dict[str, float] = {}  # session id -> expiry (monotonic)
        self.tasks = TaskOwner("live")
        self.closing = False
        self.tick_cost_seconds = 0.0  # CPU seconds of the last tick's sampling and folding
        self.ticks = 0
        self.batches_sent = 0  # writes to event streams (one per viewer per tick at most), for the benchmark
        self._ticker: asyncio.Task[None] | None = None
        self._static = {name: resources.files("kedahttp.proxy").joinpath("static", name).read_bytes()
                        for name in STATIC}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/live", self._page)
        app.router.add_get("/live/live.js", self._asset)
        app.router.add_get("/live/live.css", self._asset)
        app.router.add_post("/live/login", self._login)
        app.router.add_post("/live/logout", self._logout)
        app.router.add_get("/live/events", self._events)

    # -- auth -------------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        if not self.token:
            return True
        session = request.cookies.get(COOKIE, "")
        expiry = self.sessions.get(session)
        if expiry is None:
            return False
        if expiry < time.monotonic():
            del self.sessions[session]
            return False
        return True

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        given = str(form.get("token", ""))
        if not self.token or hmac.compare_digest(given.encode(), self.token.encode()):
            response = web.Response(status=303, headers={"Location": "/live"})
            if self.token:
                now = time.monotonic()
                for sid in [s for s, e in self.sessions.items() if e < now]:
                    del self.sessions[sid]
                if len(self.sessions) >= MAX_SESSIONS:
                    self.sessions.pop(next(iter(self.sessions)))
                session = secrets.token_urlsafe(32)
                self.sessions[session] = now + SESSION_SECONDS
                response.set_cookie(COOKIE, session, path="/live", httponly=True, samesite="Strict",
                                    max_age=int(SESSION_SECONDS), secure=request.secure)
            return response
        await asyncio.sleep(0.2)  # slows guessing; the admin token is long anyway
        return self._file("login.html", status=401, error="wrong token")

    async def _logout(self, request: web.Request) -> web.Response:
        self.sessions.pop(request.cookies.get(COOKIE, ""), None)
        response = web.Response(status=303, headers={"Location": "/live"})
        response.del_cookie(COOKIE, path="/live")
        return response

    # -- the page ---------------------------------------------------------------------------------

    def _file(self, name: str, status: int = 200, error: str = "") -> web.Response:
        body = self._static[name]
        if name == "login.html":
            body = body.replace(b"{error}", error.encode())
        return web.Response(body=body, status=status, headers={
            "Content-Type": CONTENT_TYPES[name.rpartition(".")[2]], **SECURITY_HEADERS})

    async def _page(self, request: web.Request) -> web.Response:
        return self._file("live.html" if self._authorized(request) else "login.html")

    async def _asset(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            raise web.HTTPUnauthorized()
        return self._file(request.path.rpartition("/")[2])

    # -- the event stream -------------------------------------------------------------------------

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            raise web.HTTPUnauthorized(text="log in at /live\n")
        try:
            offset = max(0, int(request.query.get("offset", "0")))
            limit = min(PAGE_SIZE_LIMIT, max(1, int(request.query.get("limit", "50"))))
        except ValueError:
            raise web.HTTPBadRequest(text="offset and limit must be whole numbers\n") from None
        viewer = _Viewer(request.query.get("q", "")[:200], offset, limit)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        self.viewers.add(viewer)
        if self._ticker is None or self._ticker.done():
            self._tick()
            self._ticker = self.tasks.spawn(self._run(), "ticker")
        try:
            await response.write(b"retry: 1000\n\n" + self.render(viewer))
            while not self.closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(viewer.tick.wait(), HEARTBEAT_SECONDS)
                viewer.tick.clear()
                if self.closing:
                    break
                batch = self.render(viewer)
                self.batches_sent += bool(batch)
                await response.write(batch or b": keep-alive\n\n")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.viewers.discard(viewer)
        return response

    def render(self, viewer: _Viewer) -> bytes:
        """The events that bring ``viewer`` up to date with the model (empty when it already is)."""
        model = self.model
        if viewer.version == model.version:
            return b""
        viewer.version = model.version
        out = []
        if viewer.keys_version != model.keys_version:
            viewer.keys_version = model.keys_version
            keys, total = model.page(viewer.query, viewer.offset, viewer.limit)
            if keys != viewer.keys or not viewer.sent:
                viewer.keys = keys
                viewer.sent = {k: model.row(k) for k in keys}
                out.append(_event("page", {"total": total, "offset": viewer.offset, "limit": viewer.limit,
                                           "rows": [row_json(r) for r in viewer.sent.values() if r]}))
        changed = []
        for key in viewer.keys:
            row = model.row(key)
            if row is not None and row != viewer.sent.get(key):
                viewer.sent[key] = row
                changed.append(row_json(row))
        if changed:
            out.append(_event("rows", changed))
        summary = json.dumps(model.summary(), separators=(",", ":"))
        if summary != viewer.summary:
            viewer.summary = summary
            out.append(f"event: summary\ndata: {summary}\n\n".encode())
        return b"".join(out)

    def _tick(self) -> None:
        t0 = time.thread_time()  # CPU time: what the tick costs, not how long the machine made it wait
        changed = self.model.update(self.sample(), self.clock())
        self.tick_cost_seconds = time.thread_time() - t0
        self.ticks += 1
        if changed:
            for viewer in self.viewers:
                viewer.tick.set()

    async def _run(self) -> None:
        while self.viewers and not self.closing:
            # a tick never takes more than a tenth of the loop: with very many apps ticks space out
            await asyncio.sleep(max(self.tick_seconds, self.tick_cost_seconds * IDLE_PER_BUSY))
            self._tick()

    async def stop_accepting(self) -> None:
        self._end_streams()  # open event streams would hold the admin server's shutdown

    async def close(self) -> None:
        self._end_streams()
        await self.tasks.close()

    def _end_streams(self) -> None:
        self.closing = True
        for viewer in self.viewers:
            viewer.tick.set()
