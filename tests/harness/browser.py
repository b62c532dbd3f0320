"""A real headless Chromium for tests, driven over the DevTools protocol with aiohttp's websocket client.

Chromium comes from Debian (``make browser`` installs it where missing). Each ``Browser`` gets a fresh
profile in its own directory, every background service off, and a host resolver that maps the names a
test gives to 127.0.0.1 and refuses all others, so nothing leaves the machine. The protocol is used only
to navigate, read the page's text and take screenshots: the pages under test run no script of their own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_NAMES = ("chromium", "chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--no-proxy-server", "--remote-debugging-port=0")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One Chromium process and the DevTools session of its first tab."""

    def __init__(self, hosts: tuple[str, ...], workdir: Path | None = None) -> None:
        self.hosts = hosts
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kedahttp-chromium-"))
        self.proc: asyncio.subprocess.Process | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def start(self, timeout: float = 30.0) -> Browser:
        binary = find_chromium()
        if binary is None:
            raise RuntimeError("chromium not found: run `make browser` (installs Debian's chromium)")
        profile = self.workdir / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        rules = ", ".join([*(f"MAP {h} 127.0.0.1" for h in self.hosts), "MAP * ~NOTFOUND"])
        log = (self.workdir / "chromium.log").open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            binary, *FLAGS, f"--user-data-dir={profile}", f"--host-resolver-rules={rules}", "about:blank",
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start: {(self.workdir / 'chromium.log').read_text()[-2000:]}")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        self.session = aiohttp.ClientSession()
        target = None
        while target is None:
            async with self.session.get(f"http://127.0.0.1:{port}/json/list") as response:
                pages = [t for t in await response.json() if t.get("type") == "page"]
            target = pages[0] if pages else None
            if target is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("chromium has no page to drive")
                await asyncio.sleep(0.05)
        self.ws = await self.session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        await self.call("Page.enable")
        return self

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; returns its result (events that arrive meanwhile are kept in ``events``)."""
        assert self.ws is not None
        ident = next(self._ids)
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json(timeout=30)
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    async def navigate(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def text(self) -> str:
        """The text of the page now shown (empty while there is none)."""
        result = await self.call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''",
                                 returnByValue=True)
        return str(result.get("result", {}).get("value", ""))

    async def screenshot(self, path: Path) -> Path:
        data = await self.call("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(data["data"]))
        return path

    async def wait_for_text(self, needle: str, timeout: float) -> float:
        """Polls the page's text until it contains ``needle``; returns the seconds it took."""
        started = time.monotonic()
        while True:
            with contextlib.suppress(RuntimeError):  # between documents the evaluation may fail
                if needle in await self.text():
                    return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"the page never showed {needle!r} within {timeout}s; it shows "
                                     f"{(await self.text())[:300]!r}")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.call("Browser.close")
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        if self.proc is not None:
            try:
                async with asyncio.timeout(5):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
