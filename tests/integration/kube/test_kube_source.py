"""ROUTES=kubernetes end to end at the API level: the real client lists and watches a fake API server over a
socket; HTTPApps, Services and EndpointSlices become sink calls, each within one watch event; dropped
watches resume from their resourceVersion; 410 Gone lists again; a malformed HTTPApp never hides the others."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kedahttp.kube.cluster import Cluster
from kedahttp.process.settings import load
from kedahttp.proxy.kube_source import KubernetesSource
from tests.harness.fake_apiserver import FakeApiServer
from tests.harness.kube_objects import RecordingSink, eps, httpapp, service
from tests.harness.waiting import until

WATCHES = 4  # HTTPApps, Services, EndpointSlices, waiting-page ConfigMaps
WAIT_SECONDS = 10.0  # a bound so a broken build fails instead of hanging; never a latency assertion


def slice_obj(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return eps(*args, **kwargs)


def app(apiserver: FakeApiServer, name: str, ns: str = "default", **kwargs: Any) -> None:
    """An HTTPApp and its Service, as a user applies them."""
    apiserver.put(service(name, ns=ns))
    apiserver.put(httpapp(name, ns=ns, **kwargs))


@contextlib.asynccontextmanager
async def running(source: KubernetesSource, sink: RecordingSink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(source.run(sink))
    try:
        await asyncio.wait_for(source.synced.wait(), WAIT_SECONDS)
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make_source(cluster: Cluster | None, namespace: str = "") -> KubernetesSource:
    settings = load({"watch_namespace": namespace}, environ={})
    return KubernetesSource(settings, cluster=cluster, watch_timeout_seconds=30, retry_min_seconds=0.02,
                            retry_max_seconds=0.1)


async def test_httpapps_and_ready_slices_reach_the_sink_within_one_event(
    apiserver: FakeApiServer, cluster: Cluster,
) -> None:
    apiserver.put(httpapp("a", prefixes=["/api"], cold=20))
    apiserver.put(service("a"))
    apiserver.put(slice_obj("a-1", "a", not_ready=["10.0.0.1"]))
    apiserver.put(service("plain"))  # a Service no HTTPApp names routes nothing
    sink = RecordingSink()
    async with running(make_source(cluster), sink):
        assert sink.take() == [("replace", ["default/a"])]
        backend = sink.backends["default/a"]
        assert (backend.hosts, backend.path_prefixes, backend.cold_start_timeout_seconds) == (
            ("a.example.com",), ("/api",), 20.0)

        # an app appears: routed on its own ADDED event, before its Service exists (requests are held)
        sent_before = len(apiserver.sent)
        apiserver.put(httpapp("b"))
        await until(lambda: "default/b" in sink.backends, WAIT_SECONDS, "httpapp b")
        assert apiserver.sent[sent_before:] == [("/apis/kedahttp.dev/v1alpha1/httpapps", "ADDED")]
        apiserver.put(service("b"))
        apiserver.put(slice_obj("b-x1", "b", ready=["10.0.1.1"]))
        await until(lambda: sink.endpoints.get("default/b"), WAIT_SECONDS, "b ready")
        apiserver.put(slice_obj("a-1", "a", ready=["10.0.0.1"]))  # a's pod turns ready
        await until(lambda: sink.endpoints.get("default/a"), WAIT_SECONDS, "a ready")
        assert sink.take() == [
            ("upsert", "default/b"),
            ("endpoints", "default/b", ("10.0.1.1:8080",)),
            ("endpoints", "default/a", ("10.0.0.1:8080",)),
        ]
        # deleted: gone with its DELETED event, though its Service and pods stay
        sent_before = len(apiserver.sent)
        apiserver.remove("HTTPApp", "default", "b")
        await until(lambda: "default/b" not in sink.backends, WAIT_SECONDS, "b removed")
        assert apiserver.sent[sent_before:] == [("/apis/kedahttp.dev/v1alpha1/httpapps", "DELETED")]

    slice_watch = next(r for r in apiserver.requests_for("GET", "/endpointslices") if r.query.get("watch"))
    assert slice_watch.query["labelSelector"] == "kubernetes.io/service-name"
    assert slice_watch.query["allowWatchBookmarks"] == "true"
    assert {r.method for r in apiserver.requests} == {"GET"}  # the proxy only reads


async def test_a_dropped_watch_resumes_from_its_resource_version(apiserver: FakeApiServer, cluster: Cluster) -> None:
    app(apiserver, "a")
    sink = RecordingSink()
    async with running(make_source(cluster), sink):
        await until(lambda: apiserver.watch_count() == WATCHES, WAIT_SECONDS, "all watches open")
        app(apiserver, "b")
        await until(lambda: "default/b" in sink.backends, WAIT_SECONDS, "service b")
        seen_rv = apiserver.get("Service", "default", "b")["metadata"]["resourceVersion"]  # type: ignore[index]

        apiserver.drop_watches()
        app(apiserver, "c")  # happens while the connection is down (or just after)
        apiserver.put(slice_obj("c-1", "c", ready=["10.0.2.1"]))
        await until(lambda: sink.endpoints.get("default/c"), WAIT_SECONDS, "c ready after the drop")

        watches = [r for r in apiserver.requests_for("GET", "/services") if r.query.get("watch")]
        assert len(watches) >= 2
        assert watches[1].query["resourceVersion"] == seen_rv  # resumed, not started over
        lists = [r for r in apiserver.requests_for("GET", "/services") if not r.query.get("watch")]
        assert len(lists) == 1  # and nothing was listed again
        assert set(sink.backends) == {"default/a", "default/b", "default/c"}


async def test_bookmarks_move_the_resume_point(apiserver: FakeApiServer, cluster: Cluster) -> None:
    app(apiserver, "a")
    sink = RecordingSink()
    async with running(make_source(cluster), sink):
        await until(lambda: apiserver.watch_count() == WATCHES, WAIT_SECONDS, "all watches open")
        marked = str(apiserver.bookmark())
        # written before the cut, so the client reads it before it sees the connection end
        await until(lambda: ("/api/v1/services", "BOOKMARK") in apiserver.sent, WAIT_SECONDS, "the bookmark sent")
        apiserver.drop_watches()
        await until(lambda: len([r for r in apiserver.requests_for("GET", "/services") if r.query.get("watch")]) == 2,
                    WAIT_SECONDS, "the watch reopened")
        reopened = [r for r in apiserver.requests_for("GET", "/services") if r.query.get("watch")][1]
        assert reopened.query["resourceVersion"] == marked
        assert sink.take() == [("replace", ["default/a"])]  # a bookmark changes no route


async def test_gone_lists_again_and_catches_up(apiserver: FakeApiServer, cluster: Cluster) -> None:
    app(apiserver, "a")
    app(apiserver, "b")
    apiserver.put(slice_obj("b-1", "b", ready=["10.0.0.2"]))
    sink = RecordingSink()
    async with running(make_source(cluster), sink):
        await until(lambda: apiserver.watch_count() == WATCHES, WAIT_SECONDS, "all watches open")
        sink.take()
        # Keep the watcher out while things change, then forget that history.
        apiserver.fail("GET", "HTTPApp", 503, "apiserver restarting", times=1000)
        apiserver.drop_watches()
        await until(lambda: any(r.query.get("watch") for r in apiserver.requests_for("GET", "/httpapps")[2:]),
                    WAIT_SECONDS, "a refused reconnect")
        apiserver.remove("HTTPApp", "default", "a")
        apiserver.put(httpapp("b", hosts=["b.example.net"]))
        app(apiserver, "d")
        apiserver.compact()
        apiserver.faults.clear()

        await until(lambda: set(sink.backends) == {"default/b", "default/d"}, WAIT_SECONDS, "relisted state")
        assert sink.backends["default/b"].hosts == ("b.example.net",)
        assert sink.endpoints == {"default/b": ("10.0.0.2:8080",)}  # untouched: same endpoints
        calls = sink.take()
        assert ("replace", ["default/b", "default/d"]) not in calls  # a diff, not a reset
        assert sorted(calls) == [("remove", "default/a"), ("upsert", "default/b"), ("upsert", "default/d")]
        lists = [r for r in apiserver.requests_for("GET", "/httpapps") if not r.query.get("watch")]
        assert len(lists) == 2
        # and watching goes on from the new list
        app(apiserver, "e")
        await until(lambda: "default/e" in sink.backends, WAIT_SECONDS, "service e after relist")


async def test_a_malformed_httpapp_is_skipped(apiserver: FakeApiServer, cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    app(apiserver, "good")
    apiserver.put(httpapp("bad", hosts=["http://bad.example.com"]))
    apiserver.put(service("bad"))
    apiserver.put(slice_obj("good-1", "good", ready=["10.0.0.1"]))
    sink = RecordingSink()
    async with running(make_source(cluster), sink):
        assert set(sink.backends) == {"default/good"}
        assert sink.endpoints == {"default/good": ("10.0.0.1:8080",)}
        assert any(getattr(r, "httpapp", None) == "default/bad" for r in caplog.records)
        apiserver.put(httpapp("other", cold=-1))  # another broken one, live
        app(apiserver, "bad")  # fixed
        await until(lambda: "default/bad" in sink.backends, WAIT_SECONDS, "bad fixed")
        assert "default/other" not in sink.backends
        assert sink.endpoints == {"default/good": ("10.0.0.1:8080",)}


async def test_namespace_scoped_from_kubeconfig(
    apiserver: FakeApiServer, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    app(apiserver, "a", ns="team")
    app(apiserver, "a", ns="default")
    apiserver.put(slice_obj("a-1", "a", ns="team", ready=["10.0.3.1"]))
    apiserver.put(slice_obj("a-1", "a", ns="default", ready=["10.0.4.1"]))
    sink = RecordingSink()
    async with running(make_source(None, namespace="team"), sink):
        assert sink.backends.keys() == {"team/a"}
        assert sink.endpoints == {"team/a": ("10.0.3.1:8080",)}
    paths = {r.path for r in apiserver.requests}
    assert paths == {"/api/v1/namespaces/team/services", "/apis/discovery.k8s.io/v1/namespaces/team/endpointslices",
                     "/apis/kedahttp.dev/v1alpha1/namespaces/team/httpapps", "/api/v1/namespaces/team/configmaps"}


async def test_cancelling_the_source_closes_its_watches(apiserver: FakeApiServer, cluster: Cluster) -> None:
    sink = RecordingSink()
    async with running(make_source(cluster), sink):
        await until(lambda: apiserver.watch_count() == WATCHES, WAIT_SECONDS, "every watch open")
    await until(lambda: apiserver.watch_count() == 0, WAIT_SECONDS, "watches closed")
