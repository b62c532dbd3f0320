"""The fold of Services and EndpointSlices into route-sink calls, without a cluster or a loop."""

from __future__ import annotations

import pytest

from kedahttp.proxy.kube_source import ClusterRoutes, parse_slice
from kedahttp.proxy.sources import Backend
from tests.harness.kube_objects import RecordingSink, eps, service


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def test_nothing_reaches_the_sink_until_both_kinds_are_listed(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    routes.services_listed([service("a"), service("b")])
    routes.service_changed("ADDED", service("c"))
    assert sink.take() == []
    routes.slices_listed([eps("a-1", "a", ready=["10.0.0.1", "10.0.0.2"]), eps("b-1", "b")])
    assert routes.synced
    assert sink.take() == [
        ("replace", ["default/a", "default/b", "default/c"]),
        ("endpoints", "default/a", ("10.0.0.1:8080", "10.0.0.2:8080")),
    ]
    assert sink.backends["default/a"] == Backend("default/a", ("a.example.com",), ("/",), None)


def test_backend_fields_come_from_the_annotations(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    routes.services_listed([service("a", hosts="A.example.com,*.a.example.org", prefixes="/api,/v2", cold="12.5")])
    routes.slices_listed([])
    assert sink.backends["default/a"] == Backend(
        "default/a", ("a.example.com", "*.a.example.org"), ("/api", "/v2"), 12.5,
    )


def test_a_slice_turning_ready_sets_endpoints_once(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    routes.services_listed([service("a")])
    routes.slices_listed([eps("a-1", "a", not_ready=["10.0.0.1"])])
    assert sink.take() == [("replace", ["default/a"])]
    routes.slice_changed("MODIFIED", eps("a-1", "a", ready=["10.0.0.1"]))
    assert sink.take() == [("endpoints", "default/a", ("10.0.0.1:8080",))]
    routes.slice_changed("MODIFIED", eps("a-1", "a", ready=["10.0.0.1"]))  # nothing new: no call
    routes.slice_changed("ADDED", eps("a-2", "a", ready=["10.0.0.9"]))
    assert sink.take() == [("endpoints", "default/a", ("10.0.0.1:8080", "10.0.0.9:8080"))]
    routes.slice_changed("DELETED", eps("a-1", "a", ready=["10.0.0.1"]))
    routes.slice_changed("MODIFIED", eps("a-2", "a", not_ready=["10.0.0.9"]))
    assert sink.take() == [
        ("endpoints", "default/a", ("10.0.0.9:8080",)),
        ("endpoints", "default/a", ()),
    ]


def test_slices_seen_before_their_service_count_when_it_appears(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    routes.services_listed([])
    routes.slices_listed([eps("late-1", "late", ready=["10.0.0.5"])])
    assert sink.take() == [("replace", [])]
    routes.service_changed("ADDED", service("late"))
    assert sink.take() == [("upsert", "default/late"), ("endpoints", "default/late", ("10.0.0.5:8080",))]


def test_service_changes_and_removal(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    routes.services_listed([service("a")])
    routes.slices_listed([eps("a-1", "a", ready=["10.0.0.1"])])
    sink.take()
    routes.service_changed("MODIFIED", service("a"))  # same routes: nothing to do
    assert sink.take() == []
    routes.service_changed("MODIFIED", service("a", hosts="new.example.com"))
    assert sink.take() == [("upsert", "default/a")]
    assert sink.backends["default/a"].hosts == ("new.example.com",)
    routes.service_changed("DELETED", service("a"))
    assert sink.take() == [("remove", "default/a")]
    routes.service_changed("ADDED", service("a"))  # back again: endpoints are sent anew
    assert sink.take() == [("upsert", "default/a"), ("endpoints", "default/a", ("10.0.0.1:8080",))]


def test_a_malformed_service_is_skipped_without_touching_others(sink: RecordingSink, caplog: pytest.LogCaptureFixture) -> None:
    routes = ClusterRoutes(sink)
    bad = service("bad", hosts="not a host")
    routes.services_listed([service("good"), bad])
    routes.slices_listed([eps("good-1", "good", ready=["10.0.0.1"]), eps("bad-1", "bad", ready=["10.0.0.2"])])
    assert sink.take() == [("replace", ["default/good"]), ("endpoints", "default/good", ("10.0.0.1:8080",))]
    assert any("malformed" in r.getMessage() and getattr(r, "service", "") == "default/bad" for r in caplog.records)
    caplog.clear()
    routes.service_changed("MODIFIED", bad)  # the same problem is logged once
    assert not caplog.records
    # a good Service turning bad is removed; fixed, it is back with its endpoints
    routes.service_changed("MODIFIED", service("good", cold="never"))
    assert sink.take() == [("remove", "default/good")]
    routes.service_changed("MODIFIED", service("good"))
    routes.service_changed("MODIFIED", service("bad"))
    assert sink.take() == [
        ("upsert", "default/good"), ("endpoints", "default/good", ("10.0.0.1:8080",)),
        ("upsert", "default/bad"), ("endpoints", "default/bad", ("10.0.0.2:8080",)),
    ]


def test_a_relist_sends_only_the_difference(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    routes.services_listed([service("a"), service("b")])
    routes.slices_listed([eps("a-1", "a", ready=["10.0.0.1"]), eps("b-1", "b", ready=["10.0.0.2"])])
    sink.take()
    routes.services_listed([service("a"), service("c")])  # b went away while we were not watching
    routes.slices_listed([eps("a-1", "a", ready=["10.0.0.1"]), eps("c-1", "c", ready=["10.0.0.3"])])
    assert sink.take() == [
        ("remove", "default/b"), ("upsert", "default/c"), ("endpoints", "default/c", ("10.0.0.3:8080",)),
    ]


def test_port_matching(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    two_ports = [{"name": "metrics", "port": 9090, "targetPort": 9090}, {"name": "http", "port": 80, "targetPort": 8080}]
    unnamed = [{"port": 80, "targetPort": 3000}]
    routes.services_listed([service("named", ports=two_ports), service("unnamed", ports=unnamed)])
    routes.slices_listed([
        eps("named-1", "named", ready=["10.0.0.1"],
            ports=[{"name": "metrics", "port": 9090}, {"name": "http", "port": 8080}]),
        eps("unnamed-1", "unnamed", ready=["10.0.0.2"], ports=[{"port": 3000}]),
    ])
    assert sink.endpoints == {"default/named": ("10.0.0.1:8080",), "default/unnamed": ("10.0.0.2:3000",)}


def test_ipv6_endpoints_are_bracketed_and_unready_ones_left_out() -> None:
    parsed = parse_slice(eps("a-1", "a", ready=["fd00::1"], not_ready=["fd00::2"], address_type="IPv6"))
    assert parsed is not None
    assert parsed.addresses == ("[fd00::1]",)
    unknown = eps("a-2", "a")
    unknown["endpoints"] = [{"addresses": ["10.0.0.7"]}]  # no conditions: unknown counts as ready
    assert parse_slice(unknown).addresses == ("10.0.0.7",)  # type: ignore[union-attr]
    orphan = eps("x", "a")
    orphan["metadata"]["labels"] = {}
    assert parse_slice(orphan) is None


def test_namespaces_keep_apps_apart(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    routes.services_listed([service("a", ns="one"), service("a", ns="two", hosts="two.example.com")])
    routes.slices_listed([eps("a-1", "a", ns="one", ready=["10.0.1.1"]), eps("a-1", "a", ns="two", ready=["10.0.2.1"])])
    assert sink.endpoints == {"one/a": ("10.0.1.1:8080",), "two/a": ("10.0.2.1:8080",)}
