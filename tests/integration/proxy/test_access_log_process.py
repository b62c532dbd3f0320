"""The access log end to end: ``kedahttp proxy`` as a process with ACCESS_LOG_SAMPLE_RATE set, real requests
from curl, and the JSON lines on the process's stdout.

What access_log.py promises is checked on the real output: one JSON object per line on stdout and
nothing else there (the process's own logs go to stderr); the fields and their values; the rate honoured
(a bound a log that sampled everything or nothing could not meet); no header and no query string, so a
token in either never reaches the log; and the lines still buffered at SIGTERM written before exit.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness.clients import curl
from tests.harness.proxy_process import ProxyProcess
from tests.harness.upstreams import Upstream

pytestmark = pytest.mark.timeout(90)

REQUESTS = 800
RATE = 0.25
# binomial(800, 0.25): mean 200, standard deviation 12.2; five deviations either way. Sampling everything
# (800) or nothing (0) is far outside; a spurious failure is a one-in-a-million draw.
LOW, HIGH = 139, 261
TOKEN = "tok-3f9c1e77a2"
BEARER = "bearer-8d2b6a0c55"
FIELDS = {"ts", "backend", "client", "method", "path", "status", "duration_ms", "cold"}


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = await Upstream().start()
    yield server
    await server.stop()


async def test_the_access_log_on_the_process_output(upstream: Upstream, tmp_path: Path) -> None:
    routes = f'backends:\n  - name: app\n    hosts: ["app.test"]\n    upstream: "http://127.0.0.1:{upstream.port}"\n'
    proxy = await asyncio.to_thread(ProxyProcess, tmp_path, routes, separate_stdout=True,
                                    KEDAHTTP_ACCESS_LOG_SAMPLE_RATE=str(RATE), KEDAHTTP_LOG_FORMAT="json")
    try:
        # one curl, one keep-alive connection, REQUESTS requests (URL globbing), each with a token in
        # its query string and in its Authorization header
        code, out, err = await curl(
            "-s", "-o", "/dev/null", "-w", "%{http_code}\\n", "-H", "Host: app.test",
            "-H", f"Authorization: Bearer {BEARER}", f"{proxy.url}/items/[1-{REQUESTS}]?access_token={TOKEN}",
            timeout=60)
        assert code == 0, err
        assert out.split() == ["200"] * REQUESTS
        assert await asyncio.to_thread(proxy.terminate) == 0  # a clean shutdown flushes what is buffered
    finally:
        proxy.stop()

    stdout = proxy.out.read_text()
    stderr = proxy.log.read_text()
    lines = [json.loads(line) for line in stdout.splitlines()]  # every stdout line is one JSON object
    assert LOW <= len(lines) <= HIGH, f"{len(lines)} of {REQUESTS} sampled at {RATE}"
    seen: set[str] = set()
    for line in lines:
        assert set(line) == FIELDS, line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"]), line
        assert (line["backend"], line["client"], line["method"], line["status"], line["cold"]) == (
            "default/app", "127.0.0.1", "GET", 200, False), line
        assert re.fullmatch(r"/items/\d+", line["path"]), line  # the path, without its query
        assert isinstance(line["duration_ms"], float | int) and 0 < line["duration_ms"] < 10_000, line
        seen.add(line["path"])
    assert len(seen) == len(lines)  # each request logged at most once
    # the tokens reach neither the access log nor the process's own logs
    for secret in (TOKEN, BEARER):
        assert secret not in stdout and secret not in stderr
    assert "access_token" not in stdout
    # the process's own logs are on stderr (every stdout line above was an access line)
    assert '"msg": "starting proxy"' in stderr
