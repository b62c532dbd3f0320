"""The waiting page: a browser asking a cold app gets a page at once and the app wakes; curl is held.

The app is a routes-file backend whose upstream is not listening yet (cold); it starts listening when a
test says so, and the file source sees it ready. A real headless Chromium (Debian's) loads the page and,
once the app is up, its own refresh shows the app's response; screenshots of both are kept in the
test's tmp directory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kedahttp.proxy.file_source import FileSource
from tests.harness.browser import Browser
from tests.harness.clients import curl
from tests.harness.proxy import RunningProxy, make_settings, published_wakes
from tests.harness.servers import free_port
from tests.harness.slow_upstream import SlowUpstream
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


class ColdApp:
    """A routes file naming an upstream port nobody listens on yet."""

    def __init__(self, tmp_path: Path, template: str | None = None) -> None:
        self.port = free_port()
        self.routes = tmp_path / "routes.yaml"
        template_line = ""
        if template is not None:
            (tmp_path / "waiting.html").write_text(template)
            template_line = ", template: waiting.html"
        self.routes.write_text(f"""
backends:
  - name: shop
    hosts: ["shop.test"]
    upstream: "http://127.0.0.1:{self.port}"
    coldStart: {{placeholder: page{template_line}}}
""")
        self.server: SlowUpstream | None = None

    async def wake(self) -> None:
        self.server = SlowUpstream()
        self.server.port = self.port
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()


@pytest.fixture
async def cold(tmp_path: Path) -> AsyncIterator[ColdApp]:
    app = ColdApp(tmp_path)
    yield app
    await app.stop()


async def test_a_browser_gets_the_page_at_once_and_the_app_is_woken(cold: ColdApp, proxy_factory: Any) -> None:
    running: RunningProxy = await proxy_factory(FileSource(str(cold.routes)), make_settings())
    started = time.monotonic()
    code, out, err = await curl("-i", "-H", "Host: shop.test", "-H", f"Accept: {BROWSER_ACCEPT}", f"{running.url}/")
    took = time.monotonic() - started
    assert code == 0, err
    head, _, body = out.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 503 ")
    assert "Retry-After: 2" in head and "Cache-Control: no-store" in head
    assert "Content-Type: text/html" in head
    assert "Starting shop" in body and '<meta http-equiv="refresh"' in body
    assert took < 0.5, took  # at once, not after the cold-start timeout (5 s here)
    await until(lambda: published_wakes(running.proxy) == ["default/shop"], 5, "the wake event")
    counters = running.counters("default/shop")
    assert counters.cold_starts == 1 and counters.held == 0 and counters.waiting_pages == 1
    # HEAD gets the same head without the page
    code, out, _ = await curl("-sI", "-H", "Host: shop.test", "-H", "Accept: text/html", f"{running.url}/")
    assert out.startswith("HTTP/1.1 503 ") and "Retry-After: 2" in out


async def test_curl_without_html_in_accept_is_held_and_answered_by_the_app(cold: ColdApp,
                                                                          proxy_factory: Any) -> None:
    running: RunningProxy = await proxy_factory(FileSource(str(cold.routes)), make_settings())
    held = asyncio.ensure_future(curl("-i", "-H", "Host: shop.test", f"{running.url}/cart"))
    await until(lambda: running.counters("default/shop").held == 1, 5, "the request held")
    await asyncio.sleep(0.5)
    await cold.wake()
    code, out, err = await held
    assert code == 0, err
    assert out.startswith("HTTP/1.1 200 ") and "X-KEDAHTTP-Cold-Start: true" in out
    assert out.endswith("hello from /cart")


async def test_a_custom_template_is_used_and_its_values_escaped(tmp_path: Path, proxy_factory: Any) -> None:
    app = ColdApp(tmp_path, template="<title>$app</title><p>$backend wakes: $waited_seconds s</p>")
    running: RunningProxy = await proxy_factory(FileSource(str(app.routes)), make_settings())
    code, out, err = await curl("-s", "-H", "Host: shop.test", "-H", "Accept: text/html", f"{running.url}/")
    assert code == 0, err
    assert out == "<title>shop</title><p>default/shop wakes: 0 s</p>"


async def shows(browser: Browser, text: str, timeout: float) -> float:
    """Polls the page's text until it contains ``text`` (through reloads); returns the seconds it took."""
    started = time.monotonic()
    expression = f"document.body !== null && document.body.innerText.includes({text!r})"
    while True:
        try:
            if await browser.evaluate(expression):
                return time.monotonic() - started
        except AssertionError:  # between two documents (the page reloading) there is nothing to evaluate in
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"the page never showed {text!r} within {timeout} s")
        await asyncio.sleep(0.1)


async def test_chromium_shows_the_page_then_the_app_after_its_own_refresh(cold: ColdApp, proxy_factory: Any,
                                                                          tmp_path: Path) -> None:
    running: RunningProxy = await proxy_factory(FileSource(str(cold.routes)), make_settings())
    browser = await Browser(hosts=("shop.test",)).start()
    try:
        await browser.navigate(f"http://shop.test:{running.port}/")
        await shows(browser, "Starting shop", timeout=10)
        await browser.screenshot(tmp_path / "1-waiting-page.png")
        assert published_wakes(running.proxy) == ["default/shop"]
        await shows(browser, "so far", timeout=5)
        await cold.wake()
        took = await shows(browser, "hello from /", timeout=10)
        await browser.screenshot(tmp_path / "2-the-app.png")
        assert took < 2 + 1 + 1  # one refresh period, the readiness probe, and a margin
        assert (tmp_path / "1-waiting-page.png").stat().st_size > 1000
        counters = running.counters("default/shop")
        assert counters.by_class[2] >= 1  # the refresh reached the app
    finally:
        await browser.close()
