"""The route table: host and path matching, caching, and the listener it drives."""

from __future__ import annotations

import pytest

from kedahttp.proxy.routing import Route, RouteTable, normalize_host, prefix_matches, request_host
from kedahttp.proxy.sources import Backend


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def route_added(self, route: Route) -> None:
        self.events.append(("added", route.key))

    def endpoints_changed(self, route: Route) -> None:
        self.events.append(("endpoints", route.key))

    def route_removed(self, route: Route) -> None:
        self.events.append(("removed", route.key))


def table(*backends: Backend) -> RouteTable:
    t = RouteTable()
    t.replace_backends(backends)
    return t


def key(t: RouteTable, host: bytes, path: bytes = b"/") -> str | None:
    route = t.lookup(host, path)
    return route.key if route else None


def test_normalize_host_strips_port_brackets_case_and_trailing_dot() -> None:
    assert normalize_host("App.Example.COM:8080") == "app.example.com"
    assert normalize_host("app.example.com.") == "app.example.com"
    assert normalize_host("[::1]:8080") == "::1"
    assert normalize_host("[2001:db8::1]") == "2001:db8::1"
    assert normalize_host("2001:db8::1") == "2001:db8::1"  # bare IPv6: no port to strip


def test_prefix_matches_whole_segments() -> None:
    assert prefix_matches(b"/api", b"/api")
    assert prefix_matches(b"/api", b"/api/x")
    assert prefix_matches(b"/api", b"/api?x=1")
    assert not prefix_matches(b"/api", b"/apix")
    assert prefix_matches(b"/api/", b"/api/x")
    assert prefix_matches(b"/", b"/anything")


def test_exact_host_beats_wildcard_and_longer_wildcard_beats_shorter() -> None:
    t = table(
        Backend("ns/exact", ("a.apps.example.com",)),
        Backend("ns/wild", ("*.apps.example.com",)),
        Backend("ns/wider", ("*.example.com",)),
    )
    assert key(t, b"a.apps.example.com") == "ns/exact"
    assert key(t, b"b.apps.example.com") == "ns/wild"
    assert key(t, b"x.y.apps.example.com") == "ns/wild"  # any depth, as in nginx
    assert key(t, b"c.example.com") == "ns/wider"
    assert key(t, b"apps.example.com") == "ns/wider"
    assert key(t, b"example.com") is None  # a wildcard needs at least one label before it
    assert key(t, b"B.Apps.Example.Com:443") == "ns/wild"


def test_longest_prefix_wins_and_falls_through_to_less_specific_hosts() -> None:
    t = table(
        Backend("ns/root", ("app.test",), ("/",)),
        Backend("ns/api", ("app.test",), ("/api",)),
        Backend("ns/v2", ("app.test",), ("/api/v2",)),
        Backend("ns/wild-static", ("*.test",), ("/static",)),
        Backend("ns/only-admin", ("admin.test",), ("/admin",)),
    )
    assert key(t, b"app.test", b"/") == "ns/root"
    assert key(t, b"app.test", b"/api/users") == "ns/api"
    assert key(t, b"app.test", b"/api/v2/users") == "ns/v2"
    assert key(t, b"app.test", b"/api2") == "ns/root"
    assert key(t, b"admin.test", b"/static/x.css") == "ns/wild-static"  # fell through to the wildcard
    assert key(t, b"admin.test", b"/other") is None


def test_ipv6_literal_hosts() -> None:
    t = table(Backend("ns/v6", ("[::1]",)), Backend("ns/v4", ("127.0.0.1",)))
    assert key(t, b"[::1]:8080") == "ns/v6"
    assert key(t, b"[::1]") == "ns/v6"
    assert key(t, b"127.0.0.1:80") == "ns/v4"


def test_changes_clear_the_lookup_cache() -> None:
    t = table(Backend("ns/a", ("app.test",)))
    assert key(t, b"app.test") == "ns/a"
    t.upsert_backend(Backend("ns/b", ("app.test",), ("/b",)))
    assert key(t, b"app.test", b"/b/1") == "ns/b"
    t.remove_backend("ns/a")
    assert key(t, b"app.test", b"/") is None
    t.upsert_backend(Backend("ns/b", ("other.test",)))
    assert key(t, b"app.test", b"/b/1") is None
    assert key(t, b"other.test") == "ns/b"


def test_listener_sees_adds_endpoint_changes_and_removals_once() -> None:
    recorder = Recorder()
    t = RouteTable(recorder)
    t.replace_backends([Backend("ns/a", ("a.test",)), Backend("ns/b", ("b.test",))])
    t.set_endpoints("ns/a", ["10.0.0.1:80"])
    t.set_endpoints("ns/a", ["10.0.0.1:80"])  # no change: no event
    t.set_endpoints("ns/unknown", ["10.0.0.2:80"])  # unknown backend: ignored
    t.replace_backends([Backend("ns/a", ("a.test", "a2.test"))])
    assert recorder.events == [
        ("added", "ns/a"), ("added", "ns/b"), ("endpoints", "ns/a"), ("removed", "ns/b"),
    ]
    route = t.get("ns/a")
    assert route is not None and route.endpoints == ("10.0.0.1:80",)
    assert key(t, b"a2.test") == "ns/a"  # the update kept the route and its endpoints


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("App.Test", "app.test"), ("app.test.", "app.test"), ("app.test:8080", "app.test"),
        ("[::1]:80", "::1"), ("[::1]", "::1"), ("10.0.0.1:80", "10.0.0.1"),
        ("app.test:abc", None), ("[app.test]", None), ("app.test..", None), ("*.app.test", None),
        ("user@app.test", None), ("", None), ("a b", None),
    ],
)
def test_request_host_accepts_only_valid_hosts(raw: str, name: str | None) -> None:
    assert request_host(raw) == name
