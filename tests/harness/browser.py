"""A real headless Chromium driven over its DevTools protocol (a websocket, with aiohttp).

Debian's ``chromium`` (installed by `make deps` where missing) runs with a fresh profile, no sandbox (tests
run as root in CI), no GPU and none of its background traffic, so it talks to nothing but the pages a test
opens on 127.0.0.1. ``evaluate`` runs an expression in the page and returns its value; ``screenshot``
writes a PNG. ``hosts`` are names the browser resolves to 127.0.0.1 (every other name fails to resolve),
for pages that must be asked for by their own Host, as a user's browser would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from tests.harness.servers import free_port


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path is not None:
            return path
    raise AssertionError("chromium not found: run `make deps` (installs Debian's chromium package)")


class Browser:
    def __init__(self, hosts: tuple[str, ...] = ()) -> None:
        self.hosts = hosts
        self.port = free_port()
        self.profile = Path(tempfile.mkdtemp(prefix="kedahttp-chromium-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> Browser:
        command = [
            chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps", "--disable-extensions", "--no-first-run", "--no-default-browser-check",
            "--metrics-recording-only", "--window-size=1200,800", f"--user-data-dir={self.profile}",
            f"--remote-debugging-port={self.port}", "--remote-debugging-address=127.0.0.1", "about:blank",
        ]
        if self.hosts:
            rules = ", ".join([*(f"MAP {host} 127.0.0.1" for host in self.hosts), "MAP * ~NOTFOUND"])
            command.insert(-1, f"--host-resolver-rules={rules}")
        self.process = await asyncio.to_thread(_spawn, command)
        self.session = aiohttp.ClientSession()
        targets: list[dict[str, Any]] = []
        async with asyncio.timeout(30):
            while not any(t.get("type") == "page" for t in targets):
                with contextlib.suppress(aiohttp.ClientError):
                    async with self.session.get(f"http://127.0.0.1:{self.port}/json/list") as r:
                        targets = await r.json()
                await asyncio.sleep(0.1)
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.ensure_future(self._read())
        await self.call("Page.enable")
        await self.call("Runtime.enable")
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            data = json.loads(message.data)
            future = self._pending.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                if "error" in data:
                    future.set_exception(AssertionError(f"DevTools error: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))

    async def call(self, method: str, **params: Any) -> Any:
        assert self.ws is not None
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        await self.ws.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
        return await asyncio.wait_for(future, 30)

    async def navigate(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page error: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Polls ``expression`` in the page until it is truthy; returns its value."""
        async with asyncio.timeout(timeout):
            while True:
                value = await self.evaluate(expression)
                if value:
                    return value
                await asyncio.sleep(0.05)

    async def screenshot(self, path: Path) -> Path:
        result = await self.call("Page.captureScreenshot", format="png")
        await asyncio.to_thread(_write, path, base64.b64decode(result["data"]))
        return path

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.call("Browser.close"), 5)
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        if self.process is not None:
            try:
                await asyncio.to_thread(self.process.wait, 5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait, 5)
        await asyncio.to_thread(shutil.rmtree, self.profile, True)


def _spawn(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
