"""The fold of HTTPApps, Services and EndpointSlices into route-sink calls, without a cluster or a loop."""

from __future__ import annotations

import logging

import pytest

from kedahttp.kube.endpoints import parse_slice
from kedahttp.proxy.kube_source import ClusterRoutes
from kedahttp.proxy.sources import Backend
from tests.harness.kube_objects import RecordingSink, config_map, eps, httpapp, service


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def listed(routes: ClusterRoutes, apps: list, services: list, slices: list, config_maps: list | None = None) -> None:
    routes.apps_listed(apps)
    routes.services_listed(services)
    routes.slices_listed(slices)
    routes.config_maps_listed(config_maps or [])


def test_nothing_reaches_the_sink_until_all_four_kinds_are_listed(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    routes.apps_listed([httpapp("a"), httpapp("b")])
    routes.app_changed("ADDED", httpapp("c"))
    routes.services_listed([service("a"), service("b")])
    routes.slices_listed([eps("a-1", "a", ready=["10.0.0.1", "10.0.0.2"]), eps("b-1", "b")])
    assert sink.take() == []
    routes.config_maps_listed([])
    assert routes.synced
    assert sink.take() == [
        ("replace", ["default/a", "default/b", "default/c"]),
        ("endpoints", "default/a", ("10.0.0.1:8080", "10.0.0.2:8080")),
    ]
    assert sink.backends["default/a"] == Backend("default/a", ("a.example.com",), ("/",), None)


def test_backend_fields_come_from_the_httpapp(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    app = httpapp("a", hosts=["A.example.com", "*.a.example.org"], prefixes=["/api", "/v2"], cold=12.5)
    listed(routes, [app], [], [])
    assert sink.backends["default/a"] == Backend(
        "default/a", ("a.example.com", "*.a.example.org"), ("/api", "/v2"), 12.5,
    )


def test_an_app_is_routed_before_its_service_exists_and_gets_endpoints_when_it_does(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    listed(routes, [httpapp("a", service="web")], [], [eps("web-1", "web", ready=["10.0.0.5"])])
    assert sink.take() == [("replace", ["default/a"])]  # held until the Service is there
    routes.service_changed("ADDED", service("web"))
    assert sink.take() == [("endpoints", "default/a", ("10.0.0.5:8080",))]
    routes.service_changed("DELETED", service("web"))
    assert sink.take() == [("endpoints", "default/a", ())]


def test_a_slice_turning_ready_sets_endpoints_once(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    listed(routes, [httpapp("a")], [service("a")], [eps("a-1", "a", not_ready=["10.0.0.1"])])
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


def test_two_apps_on_one_service_share_its_endpoints(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    listed(routes, [httpapp("a", service="web"), httpapp("b", service="web", prefixes=["/b"])], [service("web")], [])
    sink.take()
    routes.slice_changed("ADDED", eps("web-1", "web", ready=["10.0.0.1"]))
    assert sink.take() == [
        ("endpoints", "default/a", ("10.0.0.1:8080",)), ("endpoints", "default/b", ("10.0.0.1:8080",)),
    ]


def test_app_changes_and_removal(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    listed(routes, [httpapp("a")], [service("a")], [eps("a-1", "a", ready=["10.0.0.1"])])
    sink.take()
    routes.app_changed("MODIFIED", httpapp("a"))  # same routes: nothing to do
    assert sink.take() == []
    routes.app_changed("MODIFIED", httpapp("a", hosts=["new.example.com"]))
    assert sink.take() == [("upsert", "default/a")]
    assert sink.backends["default/a"].hosts == ("new.example.com",)
    routes.app_changed("DELETED", httpapp("a"))
    assert sink.take() == [("remove", "default/a")]
    routes.app_changed("ADDED", httpapp("a"))  # back again: endpoints are sent anew
    assert sink.take() == [("upsert", "default/a"), ("endpoints", "default/a", ("10.0.0.1:8080",))]


def test_a_malformed_app_is_skipped_without_touching_others(sink: RecordingSink, caplog: pytest.LogCaptureFixture) -> None:
    routes = ClusterRoutes(sink)
    bad = httpapp("bad", hosts=["not a host"])
    listed(routes, [httpapp("good"), bad], [service("good"), service("bad")],
           [eps("good-1", "good", ready=["10.0.0.1"]), eps("bad-1", "bad", ready=["10.0.0.2"])])
    assert sink.take() == [("replace", ["default/good"]), ("endpoints", "default/good", ("10.0.0.1:8080",))]
    assert any("malformed" in r.getMessage() and getattr(r, "httpapp", "") == "default/bad" for r in caplog.records)
    caplog.clear()
    routes.app_changed("MODIFIED", bad)  # the same problem is logged once
    assert not caplog.records
    # a good app turning bad is removed; fixed, it is back with its endpoints
    broken = httpapp("good")
    broken["spec"]["coldStart"] = {"timeoutSeconds": "never"}
    routes.app_changed("MODIFIED", broken)
    assert sink.take() == [("remove", "default/good")]
    routes.app_changed("MODIFIED", httpapp("good"))
    routes.app_changed("MODIFIED", httpapp("bad"))
    assert sink.take() == [
        ("upsert", "default/good"), ("endpoints", "default/good", ("10.0.0.1:8080",)),
        ("upsert", "default/bad"), ("endpoints", "default/bad", ("10.0.0.2:8080",)),
    ]


def test_a_relist_sends_only_the_difference(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    listed(routes, [httpapp("a"), httpapp("b")], [service("a"), service("b")],
           [eps("a-1", "a", ready=["10.0.0.1"]), eps("b-1", "b", ready=["10.0.0.2"])])
    sink.take()
    routes.apps_listed([httpapp("a"), httpapp("c")])  # b went away while we were not watching
    routes.services_listed([service("a"), service("c")])
    routes.slices_listed([eps("a-1", "a", ready=["10.0.0.1"]), eps("c-1", "c", ready=["10.0.0.3"])])
    assert sink.take() == [
        ("remove", "default/b"), ("upsert", "default/c"), ("endpoints", "default/c", ("10.0.0.3:8080",)),
    ]


def test_port_matching_by_number_and_by_name(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    two_ports = [{"name": "metrics", "port": 9090, "targetPort": 9090}, {"name": "http", "port": 80, "targetPort": 8080}]
    unnamed = [{"port": 80, "targetPort": 3000}]
    listed(routes, [httpapp("named", port="http"), httpapp("unnamed", port=80), httpapp("wrong", port=81)],
           [service("named", ports=two_ports), service("unnamed", ports=unnamed), service("wrong")], [
        eps("named-1", "named", ready=["10.0.0.1"],
            ports=[{"name": "metrics", "port": 9090}, {"name": "http", "port": 8080}]),
        eps("unnamed-1", "unnamed", ready=["10.0.0.2"], ports=[{"port": 3000}]),
        eps("wrong-1", "wrong", ready=["10.0.0.3"]),
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
    listed(routes, [httpapp("a", ns="one"), httpapp("a", ns="two", hosts=["two.example.com"])],
           [service("a", ns="one"), service("a", ns="two")],
           [eps("a-1", "a", ns="one", ready=["10.0.1.1"]), eps("a-1", "a", ns="two", ready=["10.0.2.1"])])
    assert sink.endpoints == {"one/a": ("10.0.1.1:8080",), "two/a": ("10.0.2.1:8080",)}


def test_of_two_apps_claiming_one_host_and_prefix_the_older_is_routed(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    old = httpapp("old", hosts=["shop.example.com"])
    old["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    new = httpapp("new", hosts=["shop.example.com", "new.example.com"])
    new["metadata"]["creationTimestamp"] = "2026-02-01T00:00:00Z"
    other_prefix = httpapp("api", hosts=["shop.example.com"], prefixes=["/api"])
    other_prefix["metadata"]["creationTimestamp"] = "2026-03-01T00:00:00Z"
    listed(routes, [new, old, other_prefix], [], [])  # the order seen does not matter
    assert sink.take() == [("replace", ["default/api", "default/old"])]
    routes.app_changed("DELETED", old)  # the host is free: the younger app gets it
    assert sink.take() == [("remove", "default/old"), ("upsert", "default/new")]


def test_a_status_write_changes_nothing_and_costs_no_recomputation(sink: RecordingSink) -> None:
    """The controller writes statuses (in-flight counts every STATUS_INTERVAL_SECONDS): a proxy sees each
    as a MODIFIED event and must not re-check every app's hosts for it."""
    routes = ClusterRoutes(sink)
    app = httpapp("a")
    listed(routes, [app, httpapp("b")], [service("a")], [])
    sink.take()
    changes = routes.changes
    routes.app_changed("MODIFIED", {**app, "status": {"inFlight": 3, "active": "True"}})
    assert sink.take() == [] and routes.changes == changes
    moved = httpapp("a", hosts=["c.example.com"])
    routes.app_changed("MODIFIED", {**moved, "status": {"inFlight": 3}})  # a spec change still counts
    assert routes.changes == changes + 1 and sink.take() == [("upsert", "default/a")]
    bad = httpapp("a", prefixes=["api"])
    routes.app_changed("MODIFIED", bad)
    changes = routes.changes
    routes.app_changed("MODIFIED", {**bad, "status": {"inFlight": 0}})  # still malformed, the same way
    assert routes.changes == changes


def test_services_and_slices_no_app_names_cost_no_recomputation(sink: RecordingSink) -> None:
    """The proxy watches every Service and EndpointSlice of the cluster; those of Services no HTTPApp
    names are looked up and dropped, without a pass over the apps."""
    routes = ClusterRoutes(sink)
    listed(routes, [httpapp("a", service="web")], [service("web")], [])
    sink.take()
    changes = routes.changes
    routes.service_changed("ADDED", service("other"))
    routes.slice_changed("ADDED", eps("other-1", "other", ready=["10.0.0.9"]))
    routes.slice_changed("ADDED", eps("web-9", "web", ready=["10.0.0.1"], ns="elsewhere"))  # same name, other namespace
    assert routes.changes == changes and sink.take() == []
    routes.slice_changed("ADDED", eps("web-1", "web", ready=["10.0.0.5"]))
    assert routes.changes == changes + 1
    assert sink.take() == [("endpoints", "default/a", ("10.0.0.5:8080",))]
    # the index follows the app: moved to another Service, then deleted
    routes.app_changed("MODIFIED", httpapp("a", service="other"))
    assert sink.take() == [("endpoints", "default/a", ("10.0.0.9:8080",))]
    changes = routes.changes
    routes.slice_changed("MODIFIED", eps("web-1", "web", ready=["10.0.0.6"]))
    assert routes.changes == changes
    routes.app_changed("DELETED", httpapp("a", service="other"))
    changes = routes.changes
    routes.slice_changed("MODIFIED", eps("other-1", "other", ready=["10.0.0.8"]))
    assert routes.changes == changes and sink.take() == [("remove", "default/a")]

PAGE = {"placeholder": "page", "templateConfigMap": {"name": "pages", "key": "wait.html"}}


def test_a_waiting_page_template_comes_from_its_configmap_and_follows_its_changes(
        sink: RecordingSink, caplog: pytest.LogCaptureFixture) -> None:
    routes = ClusterRoutes(sink)
    with caplog.at_level(logging.INFO, logger="kedahttp.kube_source"):
        listed(routes, [httpapp("a", cold_start=PAGE), httpapp("b")], [], [],
               [config_map("pages", {"wait.html": "<p>$app waking</p>"})])
        assert sink.backends["default/a"].settings.page_template == "<p>$app waking</p>"
        assert sink.backends["default/a"].settings.placeholder == "page"
        assert sink.backends["default/b"].settings.page_template is None
        sink.take()
        routes.config_map_changed("MODIFIED", config_map("pages", {"wait.html": "<p>$app, $waited_seconds s</p>"}))
        assert sink.take() == [("upsert", "default/a")]  # only the app that names it
        assert sink.backends["default/a"].settings.page_template == "<p>$app, $waited_seconds s</p>"
        routes.config_map_changed("MODIFIED", config_map("other", {"wait.html": "x"}))
        assert sink.take() == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(("config_maps", "problem"), [
    ([], "ConfigMap default/pages not found, or it lacks the label kedahttp.dev/waiting-page"),
    ([config_map("pages", {"other.html": "x"})], "ConfigMap default/pages has no key 'wait.html' (keys: other.html)"),
    ([config_map("pages", {"wait.html": "<p>$user</p>"})], "unknown placeholder(s) $user"),
    ([config_map("pages", {"wait.html": "<p>5$</p>"})], "a '$' that is not a placeholder"),
    ([config_map("pages", {"wait.html": "x"}, ns="elsewhere")], "ConfigMap default/pages not found"),
])
def test_a_missing_or_bad_template_leaves_the_built_in_page_and_says_why_once(
        sink: RecordingSink, caplog: pytest.LogCaptureFixture, config_maps: list, problem: str) -> None:
    routes = ClusterRoutes(sink)
    with caplog.at_level(logging.INFO, logger="kedahttp.kube_source"):
        listed(routes, [httpapp("a", cold_start=PAGE)], [], [], config_maps)
        routes.app_changed("MODIFIED", httpapp("a", cold_start=PAGE, prefixes=["/x"]))  # recomputed: no new line
    backend = sink.backends["default/a"]  # still routed, with the built-in page
    assert backend.settings.placeholder == "page" and backend.settings.page_template is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert getattr(warnings[0], "httpapp", "") == "default/a"
    assert problem in getattr(warnings[0], "error", "")
    # fixed: the template is used, and one line says so
    with caplog.at_level(logging.INFO, logger="kedahttp.kube_source"):
        routes.config_map_changed("ADDED", config_map("pages", {"wait.html": "<p>$app</p>"}))
    assert sink.backends["default/a"].settings.page_template == "<p>$app</p>"
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO][-1] == \
        "waiting page template usable again"


def test_a_template_removed_from_its_configmap_falls_back(sink: RecordingSink) -> None:
    routes = ClusterRoutes(sink)
    listed(routes, [httpapp("a", cold_start=PAGE)], [], [], [config_map("pages", {"wait.html": "<p>$app</p>"})])
    routes.config_map_changed("DELETED", config_map("pages", {"wait.html": "<p>$app</p>"}))
    assert sink.backends["default/a"].settings.page_template is None
