"""The live page in a real browser: `kedahttp dev` prints its URL, headless Chromium opens it, and an app
is seen cold, waking, warm and cold again without a reload.

The page records every state its row for default/hello takes (a MutationObserver installed by the test),
so a waking phase shorter than a polling interval is still seen, with the browser's own time of each
change. Screenshots of each phase are written under the test's tmp_path (printed at the end).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.harness.browser import Browser
from tests.harness.servers import free_port, wait_port
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(120)

# One app that boots in a second, and emulator timings short enough to see it scale down in seconds.
CONFIG = {
    "apps": [{"name": "hello", "hosts": ["hello.localhost"], "sample": {"startupSeconds": 1.0},
              "maxReplicas": 2, "activityWindowSeconds": 1}],
    "keda": {"pollingInterval": 0.5, "cooldownPeriod": 2, "streamBackoffInitialSeconds": 0.5,
             "streamBackoffMaxSeconds": 2},
    "hpa": {"syncPeriodSeconds": 0.5, "scaleDown": {"stabilizationWindowSeconds": 1}},
}

LIVE_URL = re.compile(r"live page: (http://\S+/live)")
ROW = 'document.querySelector(\'tr[data-app="default/hello"]\')'
RECORD_STATES = f"""
(() => {{
  window.__states = [];
  const note = () => {{
    const row = {ROW};
    const state = row && row.dataset.state;
    const last = window.__states[window.__states.length - 1];
    if (state && (!last || last.state !== state)) window.__states.push({{state, at: Date.now()}});
  }};
  new MutationObserver(note).observe(document.getElementById("apps"), {{subtree: true, childList: true,
                                                                        attributes: true}});
  note();
  return true;
}})()
"""


async def test_the_live_page_shows_a_wake_and_a_scale_down(tmp_path: Path) -> None:
    config = tmp_path / "dev.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    proxy_port, admin_port, scaler_port = free_port(), free_port(), free_port()
    out, err = tmp_path / "dev.out", tmp_path / "dev.err"
    command = [
        str(Path(sys.executable).parent / "kedahttp"), "dev", "--config", str(config), "--no-view",
        "--proxy-addr", f"127.0.0.1:{proxy_port}", "--admin-addr", f"127.0.0.1:{admin_port}",
        "--metrics-addr", "127.0.0.1:0", "--scaler-addr", f"127.0.0.1:{scaler_port}",
        "--report-interval-seconds", "0.1", "--concurrency-window-seconds", "1", "--log-format", "text",
    ]
    dev = await asyncio.to_thread(_spawn, command, out, err)
    browser = Browser()
    shots = tmp_path / "screenshots"
    try:
        await asyncio.to_thread(wait_port, admin_port, 30.0)
        await until(lambda: LIVE_URL.search(out.read_text()), 30, "the live page's URL in the banner")
        url = LIVE_URL.findall(out.read_text())[0]
        assert url == f"http://127.0.0.1:{admin_port}/live"
        await browser.start()
        await browser.navigate(url)
        assert await browser.wait_for(f"{ROW} && {ROW}.dataset.state", timeout=15) == "cold"
        await browser.evaluate(RECORD_STATES)
        await browser.screenshot(shots / "1-cold.png")

        sent_ms = time.time() * 1000
        curl = await asyncio.create_subprocess_exec(
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30", "-H", "Host: hello.localhost",
            f"http://127.0.0.1:{proxy_port}/", stdout=subprocess.PIPE)
        await browser.wait_for("window.__states.some(s => s.state === 'waking')", timeout=5)
        await browser.screenshot(shots / "2-waking.png")
        await browser.wait_for("window.__states.some(s => s.state === 'warm')", timeout=20)
        await browser.screenshot(shots / "3-warm.png")
        assert (await curl.communicate())[0] == b"200"
        states = await browser.evaluate("window.__states")
        assert [s["state"] for s in states][:3] == ["cold", "waking", "warm"]
        waking_at = next(s["at"] for s in states if s["state"] == "waking")
        assert waking_at - sent_ms < 1000, f"the wake reached the page {waking_at - sent_ms:.0f} ms after the request"
        assert await browser.wait_for("document.getElementById('coldstarts').textContent.includes('default/hello')")

        await browser.wait_for(f"{ROW}.dataset.state === 'cold'", timeout=40)  # activity window + cooldown
        await browser.screenshot(shots / "4-cold-again.png")
        states = await browser.evaluate("window.__states")
        assert [s["state"] for s in states] == ["cold", "waking", "warm", "cold"]
        assert await browser.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload
        print(f"screenshots: {shots}")
        assert sorted(p.name for p in shots.iterdir()) == ["1-cold.png", "2-waking.png", "3-warm.png",
                                                           "4-cold-again.png"]
    finally:
        await browser.close()
        if dev.poll() is None:
            dev.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(dev.wait, 20)
            except subprocess.TimeoutExpired:
                dev.kill()
                dev.wait(5)


def _spawn(command: list[str], out: Path, err: Path) -> subprocess.Popen[bytes]:
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        return subprocess.Popen(command, stdout=stdout, stderr=stderr, env={**os.environ, "PYTHONUNBUFFERED": "1"})
