"""The live view's content: per app replicas, in-flight and held from the scaler's fold of the bus, the
emulator's metric readings and last scaling events; plain lines only when something changed."""

from __future__ import annotations

import io
import time
from pathlib import Path

from kedahttp.activity.bus import open_transport
from kedahttp.activity.model import BackendActivity, Report
from kedahttp.dev.config import AppConfig, EmulatorConfig
from kedahttp.dev.emulator import KedaEmulator, ScaledObjectEmulator, ScalingEvent
from kedahttp.dev.hpa import MetricReading
from kedahttp.dev.runtime import LocalRuntime
from kedahttp.dev.view import LiveView

APP = AppConfig(name="hello", hosts=("hello.localhost",), target_concurrency=5)


async def test_render_and_plain_lines(tmp_path: Path) -> None:
    runtime = LocalRuntime([APP], workdir=str(tmp_path))
    emulator = KedaEmulator([APP], EmulatorConfig(), "127.0.0.1:1", runtime)
    obj = ScaledObjectEmulator(APP, EmulatorConfig(), stub=None, target=runtime)  # type: ignore[arg-type]
    emulator.objects[APP.key] = obj
    obj.view.readings = (MetricReading("concurrency", 5.0, 4.5),)
    obj.view.active = True
    obj.view.stream = "open"
    obj.view.events.append(ScalingEvent(time.time(), APP.key, "keda", 0, 1, "activated (push)"))
    obj.view.events.append(ScalingEvent(time.time(), APP.key, "hpa", 1, 3, "concurrency above target"))

    out = io.StringIO()
    view = LiveView([APP], runtime, emulator, open_transport("memory://view-test"), ["HEADER LINE"], tty=False, out=out)
    now = time.time()
    view.aggregator.fold(Report("proxy-1", 1, now, now - 0.25, 0.25, (
        BackendActivity(APP.key, in_flight=3, held=2, started=5, busy_seconds=1.0, last_request_at=now),
    )), now)

    screen = "\n".join(view.render())
    assert "HEADER LINE" in screen
    row = next(line for line in screen.splitlines() if line.startswith("default/hello"))
    assert row.split()[1:4] == ["0/0", "3", "2"]  # ready/desired, in-flight, held
    assert "concurrency 4.50/5" in row and "active" in row and "stream open" in row
    assert screen.index("hpa  1 -> 3") < screen.index("keda 0 -> 1")  # newest first

    first = view.plain_lines()
    assert len(first) == 1
    assert "default/hello replicas 0/0 ready, in-flight 3, held 2" in first[0]
    assert view.plain_lines() == []  # nothing changed, and busy lines come only every few seconds

