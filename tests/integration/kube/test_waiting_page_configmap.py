"""An HTTPApp's waiting page from a ConfigMap, through the real proxy: the proxy's Kubernetes route source
lists and watches (the real client, the fake API server) the ConfigMaps labelled kedahttp.dev/waiting-page;
a browser asking the cold app gets the page rendered from the template the app names, values
HTML-escaped; an edit of the ConfigMap is what the next request sees, without a restart; a missing key,
a bad template or a deleted ConfigMap leaves the built-in page, with a warning naming the app and why."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from kedahttp.kube.cluster import Cluster
from kedahttp.proxy.kube_source import KubernetesSource
from tests.harness.fake_apiserver import FakeApiServer
from tests.harness.kube_objects import config_map, httpapp, service
from tests.harness.proxy import RunningProxy, make_settings, start_proxy
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)
BROWSER = {"Host": "app.test", "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
BUILT_IN = "This app was asleep and is waking up"
PAGE = {"placeholder": "page", "templateConfigMap": {"name": "pages", "key": "wait.html"}}


async def page(proxy: RunningProxy) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"{proxy.url}/", headers=BROWSER) as response:
        return response.status, await response.text()


async def shows(proxy: RunningProxy, text: str) -> None:
    """Asks until the page carries ``text`` (the route changes with the watch event, a moment later)."""
    last: tuple[int, str] = (0, "")
    for _ in range(200):
        last = await page(proxy)
        if last[0] == 503 and text in last[1]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the page never showed {text!r}; last: {last}")


async def test_the_page_comes_from_the_configmap_follows_it_and_falls_back_when_it_is_unusable(
        apiserver: FakeApiServer, cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    apiserver.put(service("app"))
    apiserver.put(httpapp("app", hosts=["app.test"], cold_start=PAGE))  # cold: no endpoint at all
    apiserver.put(config_map("pages", {"wait.html": "<p>Custom: $app ($backend) for $waited_seconds s</p>"}))
    apiserver.put(config_map("unlabelled", {"wait.html": "x"}, labelled=False))
    settings = make_settings(cold_start_timeout_seconds=30)
    source = KubernetesSource(settings, cluster=cluster, watch_timeout_seconds=30, retry_min_seconds=0.02)
    proxy = await start_proxy(source, settings)
    try:
        with caplog.at_level(logging.INFO, logger="kedahttp.kube_source"):
            await until(lambda: proxy.proxy.routes.get("default/app") is not None, 10.0, "the route")
            status, body = await page(proxy)
            assert status == 503
            assert body == "<p>Custom: app (default/app) for 0 s</p>"
            # only the labelled ConfigMaps are listed and watched, never the cluster's others
            reads = apiserver.requests_for("GET", "/configmaps")
            assert reads and all(r.query.get("labelSelector") == "kedahttp.dev/waiting-page" for r in reads), reads

            # edited: the next request has it, without a restart
            apiserver.put(config_map("pages", {"wait.html": "<p>Edited & $app</p>"}))
            await shows(proxy, "<p>Edited & app</p>")

            # a bad template: the built-in page, and a warning naming the app and the problem
            apiserver.put(config_map("pages", {"wait.html": "<p>$user</p>"}))
            await shows(proxy, BUILT_IN)
            # the key gone, then the ConfigMap gone: still the built-in page, each problem said once
            apiserver.put(config_map("pages", {"other.html": "<p>$app</p>"}))
            await until(lambda: len(warnings(caplog)) == 2, 10.0, "the missing key's warning")
            apiserver.remove("ConfigMap", "default", "pages")
            await until(lambda: len(warnings(caplog)) == 3, 10.0, "the missing ConfigMap's warning")
            status, body = await page(proxy)
            assert status == 503 and BUILT_IN in body
        problems = [(getattr(r, "httpapp", ""), getattr(r, "error", "")) for r in warnings(caplog)]
        assert problems[0][0] == problems[1][0] == problems[2][0] == "default/app"
        assert "unknown placeholder(s) $user" in problems[0][1]
        assert "has no key 'wait.html'" in problems[1][1]
        assert "ConfigMap default/pages not found, or it lacks the label kedahttp.dev/waiting-page" in problems[2][1]
    finally:
        await proxy.stop()


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "kedahttp.kube_source" and r.levelno == logging.WARNING
            and "waiting page" in r.getMessage()]
