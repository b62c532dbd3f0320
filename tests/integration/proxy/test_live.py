"""The live page on the admin server: login without the token in a URL, and per-app state pushed as it happens.

A real proxy on real sockets with an admin token; the page's event stream is read with a real HTTP client.
An app is cold, a request finds it without endpoints (waking: held), an endpoint turns ready (warm, and a
cold start with its wait), the endpoint goes away (cold again). Each change must reach the stream within a
second of happening, with no request from the viewer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from kedahttp.proxy.assembly import Proxy
from kedahttp.proxy.sources import Backend
from tests.harness.inproc import proxy_settings, running_proxy, serve_app, status_app
from tests.harness.sse import EventReader

pytestmark = pytest.mark.timeout(60)

TOKEN = "s3cret-admin-token-for-the-live-test"


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    backends = [Backend("shop/cart", ("cart.test",)), *(Backend(f"shop/other-{i}", (f"o{i}.test",)) for i in range(60))]
    async with running_proxy(proxy_settings(admin_token=TOKEN), backends, scale_down_after=lambda key: 30.0) as p:
        yield p


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    async with serve_app(status_app()) as endpoint:
        yield endpoint


def admin_url(proxy: Proxy) -> str:
    assert proxy.admin is not None
    return f"http://127.0.0.1:{proxy.admin.port}"


async def test_login_sets_an_opaque_httponly_cookie_and_guards_the_stream(proxy: Proxy) -> None:
    base = admin_url(proxy)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:  # unsafe: an IP host
        async with client.get(f"{base}/live") as r:
            page = await r.text()
            assert r.status == 200 and 'action="/live/login"' in page and TOKEN not in page
        for path in ("/live/events", "/live/live.js"):
            async with client.get(f"{base}{path}") as r:
                assert r.status == 401
        async with client.post(f"{base}/live/login", data={"token": "wrong"}, allow_redirects=False) as r:
            assert r.status == 401 and "Set-Cookie" not in r.headers
        async with client.post(f"{base}/live/login", data={"token": TOKEN}, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/live"
            cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/live" in cookie
        assert TOKEN not in cookie
        async with client.get(f"{base}/live") as r:
            page = await r.text()
            assert 'src="/live/live.js"' in page and "script-src 'self'" in r.headers["Content-Security-Policy"]
        async with client.get(f"{base}/live/events?limit=5") as r:
            assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
            name, data = await EventReader(r).next()
            assert name == "page" and data["total"] == 61 and len(data["rows"]) == 5
        async with client.post(f"{base}/live/logout", allow_redirects=False) as r:
            assert r.status == 303
        async with client.get(f"{base}/live/events") as r:
            assert r.status == 401


async def test_a_wake_and_a_scale_down_reach_the_stream_within_a_second(proxy: Proxy, upstream: str) -> None:
    base = admin_url(proxy)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as viewer, \
            aiohttp.ClientSession() as client:
        async with viewer.post(f"{base}/live/login", data={"token": TOKEN}):
            pass
        async with viewer.get(f"{base}/live/events?q=CART") as r:
            events = EventReader(r)
            name, data = await events.next()
            assert name == "page" and data["total"] == 1
            assert data["rows"][0]["app"] == "shop/cart" and data["rows"][0]["state"] == "cold"

            def row_state(state: str):  # type: ignore[no-untyped-def]
                return lambda n, d: n == "rows" and any(x["app"] == "shop/cart" and x["state"] == state for x in d)

            t0 = time.monotonic()
            request = asyncio.ensure_future(
                client.get(f"http://127.0.0.1:{proxy.server.port}/", headers={"Host": "cart.test"}))
            _, rows = await events.until(row_state("waking"), timeout=1.0)
            assert time.monotonic() - t0 < 1.0
            assert rows[0]["held"] == 1
            t1 = time.monotonic()
            proxy.routes.set_endpoints("shop/cart", [upstream])
            _, rows = await events.until(row_state("warm"), timeout=1.0)
            assert time.monotonic() - t1 < 1.0
            response = await request
            assert response.status == 200
            response.release()
            _, summary = await events.until(lambda n, d: n == "summary" and d["coldStarts"], timeout=2.0)
            cold_start = summary["coldStarts"][0]
            assert cold_start["app"] == "shop/cart" and 0 < cold_start["wait"] < 2.0
            _, rows = await events.until(
                lambda n, d: n == "rows" and any(x["scaleDownAt"] for x in d), timeout=2.0)
            assert rows[-1]["lastRequest"] and rows[-1]["scaleDownAt"] - rows[-1]["lastRequest"] == 30_000
            t2 = time.monotonic()
            proxy.routes.set_endpoints("shop/cart", [])
            await events.until(row_state("cold"), timeout=1.0)
            assert time.monotonic() - t2 < 1.0
            assert all(x["app"] == "shop/cart" for n, d in events.events if n == "rows" for x in d)  # the search
