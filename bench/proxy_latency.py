"""Proxy latency at equal offered load: an open-loop generator (bench/openloop.c) sends Poisson arrivals
at fixed rates to the upstream directly, to nginx and to kedahttp, and reports the latency each adds
over the direct path at every rate, and the knee: the highest rate a proxy holds with p99 under 5 ms.

wrk (proxy_throughput) is a closed loop: its latency is queueing behind its own 50 connections, so it
mostly restates throughput (Little's law). Here every target gets the same arrivals and a request is
timed from when it was due, so a proxy that falls behind pays for it. Pinned as proxy_throughput: the
proxy under test on CPU 0, upstream and generator on CPU 1.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.proxy_throughput import (
    TASKSET,
    _children,
    _free_port,
    _kedahttp,
    _wait_port,
    stop,
    upstream_and_reference,
)

NAME = "proxy_latency"
CC = shutil.which("cc") or shutil.which("gcc")
HERE = Path(__file__).resolve().parent
# up to where nginx itself gives out on this 2-core machine: with the list stopping at 40,000 both knees
# were past its end on a quiet machine, so their ratio said nothing
RATES = (5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 35_000, 40_000, 45_000, 50_000, 55_000, 60_000, 70_000, 80_000, 90_000, 100_000)
KNEE_P99_MS = 5.0
CONNECTIONS = 64


def build(tmp: Path) -> Path:
    assert CC, "a C compiler is needed to build bench/openloop.c"
    exe = tmp / "openloop"
    subprocess.run([CC, "-O2", "-o", str(exe), str(HERE / "openloop.c"), "-lm"], check=True)
    return exe


def offered(exe: Path, port: int, rate: int, seconds: float, cpu: str | None) -> dict[str, float]:
    cmd = [str(exe), str(port), "app.bench", str(rate), str(seconds), str(CONNECTIONS)]
    if cpu is not None and TASKSET:
        cmd = [TASKSET, "-c", cpu, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    sent, done, p50, p90, p99, p999, worst, errors = out
    return {"sent": int(sent), "done": int(done), "p50_ms": float(p50), "p90_ms": float(p90),
            "p99_ms": float(p99), "p999_ms": float(p999), "max_ms": float(worst), "errors": int(errors)}


def _finite(ms: float) -> float | None:
    """Milliseconds for the record; None where requests went unanswered (overload: no latency to give)."""
    return round(ms, 3) if math.isfinite(ms) else None


def knee(results: dict[int, dict[str, float]]) -> int:
    """The highest rate held with p99 under KNEE_P99_MS and every request answered (0: none)."""
    held = [rate for rate, r in results.items() if r["p99_ms"] < KNEE_P99_MS and not r["errors"]]
    return max(held, default=0)


def run(quick: bool) -> dict[str, Any]:
    seconds = 1.5 if quick else 3.0
    rates = RATES[::2] if quick else RATES
    tmp = Path(tempfile.mkdtemp(prefix="kedahttp-latency-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        exe = build(tmp)
        up, ref, routes = upstream_and_reference(tmp, procs)
        k1 = _free_port()
        procs.append(_kedahttp(tmp, "kedahttp1", routes, k1, workers=1))
        for port in (up, ref, k1):
            _wait_port(port)
        time.sleep(1.0)
        pin = (os.cpu_count() or 1) >= 2 and TASKSET is not None
        load_cpu = "1" if pin else None
        if pin:
            assert TASKSET is not None
            for pid in [*_children(procs[0].pid), procs[0].pid]:
                subprocess.run([TASKSET, "-pc", "1", str(pid)], capture_output=True, check=False)
            for pid in [*_children(procs[1].pid), procs[1].pid, procs[2].pid]:
                subprocess.run([TASKSET, "-pc", "0", str(pid)], capture_output=True, check=False)
        targets = {"direct": up, "nginx": ref, "kedahttp": k1}
        for port in targets.values():
            offered(exe, port, 2_000, 0.5, load_cpu)  # warm up: connections, pools
        results: dict[str, dict[int, dict[str, float]]] = {name: {} for name in targets}
        for rate in rates:  # targets interleaved at each rate, so drift in background load hits all three
            for name, port in targets.items():
                results[name][rate] = offered(exe, port, rate, seconds, load_cpu)
        figures: dict[str, Any] = {"pinned": pin, "connections": CONNECTIONS, "seconds_per_rate": seconds}
        for rate in rates:
            direct = results["direct"][rate]
            row: dict[str, Any] = {}
            for name in ("nginx", "kedahttp"):
                r = results[name][rate]
                row[name] = {"added_p50_ms": _finite(r["p50_ms"] - direct["p50_ms"]),
                             "added_p99_ms": _finite(r["p99_ms"] - direct["p99_ms"]),
                             "p99_ms": _finite(r["p99_ms"]), "unanswered": r["errors"]}
            row["direct_p99_ms"] = _finite(direct["p99_ms"])
            figures[f"rate_{rate}"] = row
        figures["knee_rps"] = {name: knee(results[name]) for name in targets}
        nginx_knee = figures["knee_rps"]["nginx"]
        figures["knee_ratio_vs_nginx"] = round(figures["knee_rps"]["kedahttp"] / nginx_knee, 3) if nginx_knee else 0
        return figures
    finally:
        stop(procs, tmp)

if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=2))
