"""The route table: which backend serves a Host and path, and which of its endpoints are ready.

Pure data, no I/O: exact hosts win over ``*.`` wildcards (the longest suffix first, any depth, as in
nginx), then the longest path prefix wins, matched on whole segments ("/api" serves "/api/x" but not
"/apix"). A host whose entries have no matching prefix falls through to the next less specific host.
Lookups are cached per raw Host value, so the hot path does one dict lookup and a short prefix scan;
any change to the table clears the cache. The table is the proxy's ``RouteSink``: changes of endpoints
and removals are passed to a listener (the dispatcher), which releases or fails held requests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from kedahttp.proxy.app_settings import AppLimits, default_limits
from kedahttp.proxy.sources import Backend

_CACHE_LIMIT = 4096
_SEGMENT_END = frozenset(b"/?#")


class Route:
    """A backend as the data path sees it: its spec, its ready endpoints and the dispatcher's state."""

    __slots__ = ("backend", "endpoints", "key", "limits", "rr", "state")

    def __init__(self, backend: Backend, limits: AppLimits) -> None:
        self.backend = backend
        self.limits = limits  # the proxy-wide limits with the backend's overrides, resolved once
        self.key = backend.key
        self.endpoints: tuple[str, ...] = ()
        self.rr = 0  # round-robin cursor over endpoints
        self.state: Any = None  # owned by the dispatcher (counters, hold queue)

    def __repr__(self) -> str:
        return f"Route({self.key!r}, endpoints={len(self.endpoints)})"


class RouteListener(Protocol):
    def route_added(self, route: Route) -> None: ...

    def endpoints_changed(self, route: Route) -> None: ...

    def route_removed(self, route: Route) -> None: ...


def normalize_host(host: str) -> str:
    """Host header or authority -> lower-case name without port, brackets or trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else ""
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


# A request's Host (or absolute-form authority): a DNS name with at most one trailing dot, an IPv4
# address, or a bracketed IPv6 literal, then an optional numeric port. Anything else routes nowhere.
_REQUEST_HOST = re.compile(
    r"(?:(?P<name>[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*\.?)"
    r"|\[(?P<ip6>[0-9a-f:.]+)\])(?::[0-9]{1,5})?",
    re.ASCII,
)


def request_host(raw: str) -> str | None:
    """The routing name of a request's Host value, or None when it is not a valid host (RFC 9112 3.2)."""
    match = _REQUEST_HOST.fullmatch(raw.strip().lower())
    if match is None:
        return None
    name = match.group("name")
    return name.rstrip(".") if name is not None else match.group("ip6")


def prefix_matches(prefix: bytes, path: bytes) -> bool:
    """Segment-wise prefix match on raw bytes; ``path`` may carry a query string."""
    if not path.startswith(prefix):
        return False
    n = len(prefix)
    if len(path) == n or prefix[-1] == 47:  # "/"
        return True
    return path[n] in _SEGMENT_END


class RouteTable:
    def __init__(self, listener: RouteListener | None = None, limits: AppLimits | None = None) -> None:
        self.listener = listener
        self.limits = limits if limits is not None else default_limits()  # proxy-wide
        self.shortest_timeout_seconds = self.limits.shortest_timeout_seconds  # over every route too
        self.routes: dict[str, Route] = {}
        # host -> [(prefix, route)] sorted longest prefix first
        self._exact: dict[str, list[tuple[bytes, Route]]] = {}
        self._wild: dict[str, list[tuple[bytes, Route]]] = {}  # suffix (".apps.example.com") -> entries
        self._wild_suffixes: list[str] = []  # longest first
        self._cache: dict[bytes, tuple[list[tuple[bytes, Route]], ...]] = {}
        self.rebuilds = 0  # changes of the set of routes (not of endpoints): when the table has settled

    # -- RouteSink ---------------------------------------------------------------------------------

    def replace_backends(self, backends: Iterable[Backend]) -> None:
        wanted = {b.key: b for b in backends}
        for key in [k for k in self.routes if k not in wanted]:
            self._remove(key)
        for backend in wanted.values():
            self._upsert(backend)
        self._rebuild()

    def upsert_backend(self, backend: Backend) -> None:
        self._upsert(backend)
        self._rebuild()

    def remove_backend(self, key: str) -> None:
        if key in self.routes:
            self._remove(key)
            self._rebuild()

    def set_endpoints(self, key: str, endpoints: Sequence[str]) -> None:
        route = self.routes.get(key)
        if route is None:
            return
        new = tuple(endpoints)
        if new == route.endpoints:
            return
        route.endpoints = new
        if self.listener is not None:
            self.listener.endpoints_changed(route)

    # -- lookups -------------------------------------------------------------------------------------

    def lookup(self, host: bytes, path: bytes) -> Route | None:
        """The route for a raw Host value (may carry a port) and a path; None when nothing matches."""
        candidates = self._cache.get(host)
        if candidates is None:
            candidates = self._candidates(host)
        for entries in candidates:
            for prefix, route in entries:
                if prefix == b"/" or prefix_matches(prefix, path):
                    return route
        return None

    def has_host(self, host: bytes) -> bool:
        candidates = self._cache.get(host)
        if candidates is None:
            candidates = self._candidates(host)
        return bool(candidates)

    def get(self, key: str) -> Route | None:
        return self.routes.get(key)

    def __len__(self) -> int:
        return len(self.routes)

    def _candidates(self, raw: bytes) -> tuple[list[tuple[bytes, Route]], ...]:
        host = request_host(raw.decode("latin-1"))
        found: list[list[tuple[bytes, Route]]] = []
        if host is not None:  # an invalid Host matches nothing (cached like any other value)
            exact = self._exact.get(host)
            if exact:
                found.append(exact)
            found.extend(
                self._wild[suffix] for suffix in self._wild_suffixes
                if host.endswith(suffix) and len(host) > len(suffix)
            )
        result = tuple(found)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[raw] = result
        return result

    # -- internals -----------------------------------------------------------------------------------

    def _upsert(self, backend: Backend) -> None:
        route = self.routes.get(backend.key)
        if route is None:
            route = self.routes[backend.key] = Route(backend, self.limits.for_app(backend.settings))
            if self.listener is not None:
                self.listener.route_added(route)
        elif route.backend != backend:
            route.backend = backend
            route.limits = self.limits.for_app(backend.settings)

    def _remove(self, key: str) -> None:
        route = self.routes.pop(key)
        if self.listener is not None:
            self.listener.route_removed(route)

    def _rebuild(self) -> None:
        self.rebuilds += 1
        exact: dict[str, list[tuple[bytes, Route]]] = {}
        wild: dict[str, list[tuple[bytes, Route]]] = {}
        for route in self.routes.values():
            prefixes = route.backend.path_prefixes or ("/",)
            for raw_host in route.backend.hosts:
                host = normalize_host(raw_host)
                if host.startswith("*."):
                    table, name = wild, host[1:]
                else:
                    table, name = exact, host
                entries = table.setdefault(name, [])
                entries.extend(((p if p.startswith("/") else "/" + p).encode(), route) for p in prefixes)
        for entries in (*exact.values(), *wild.values()):
            # longest prefix first; ties broken by key so the choice is stable
            entries.sort(key=lambda e: (-len(e[0]), e[1].key))
        self._exact = exact
        self._wild = wild
        self._wild_suffixes = sorted(wild, key=len, reverse=True)
        self._cache = {}
        self.shortest_timeout_seconds = min(
            (r.limits.shortest_timeout_seconds for r in self.routes.values()),
            default=self.limits.shortest_timeout_seconds)
