"""Proxy throughput and latency against nginx, plus memory with 10,000 routes and 10,000 held requests.

Same machine, same run, same upstream (nginx, one worker, a small body); wrk with 50 connections on one
thread against: the upstream directly, nginx (one worker) as the reference reverse proxy with a
keep-alive upstream pool, kedahttp with WORKERS=1 and with WORKERS=2. Figures are ratios to nginx and
latency added over the direct connection, so they carry to other machines. Everything shares the
machine's cores (wrk included), so absolute numbers are lower than on a dedicated host.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NAME = "proxy_throughput"
TASKSET = shutil.which("taskset")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
CONNECTIONS = 50
# what a browser adds to Host (10 headers in all, as bench/_datapath_loop.py's browser-like request)
BROWSER_HEADERS = (
    "Connection: keep-alive",
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0",
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "Accept-Encoding: gzip, deflate, br",
    "Accept-Language: en-US,en;q=0.9",
    "Cache-Control: no-cache",
    "Referer: http://app.bench/index.html",
    "Sec-Fetch-Mode: no-cors",
    "Cookie: session=0123456789abcdef; theme=dark",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing on port {port}")


def _nginx(tmp: Path, name: str, server_block: str) -> subprocess.Popen[bytes]:
    root = tmp / name
    root.mkdir()
    conf = root / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
error_log {root}/error.log;
pid {root}/nginx.pid;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  client_body_temp_path {root}/body; proxy_temp_path {root}/proxy; fastcgi_temp_path {root}/fcgi;
  uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;
  keepalive_requests 10000000;
  {server_block}
}}
""")
    return subprocess.Popen([NGINX, "-p", str(root), "-c", str(conf)], stderr=subprocess.DEVNULL)


def _kedahttp(tmp: Path, name: str, routes: Path, port: int, workers: int = 1, python: str = sys.executable,
              **extra: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update({
        "KEDAHTTP_BUS": "memory://bench", "KEDAHTTP_ROUTES": str(routes),
        "KEDAHTTP_PROXY_ADDR": f"127.0.0.1:{port}", "KEDAHTTP_ADMIN_ADDR": f"127.0.0.1:{_free_port()}",
        "KEDAHTTP_METRICS_ADDR": f"127.0.0.1:{_free_port()}", "KEDAHTTP_WORKERS": str(workers),
        "KEDAHTTP_LOG_LEVEL": "warning", "KEDAHTTP_SHUTDOWN_DELAY_SECONDS": "0",
    })
    env.update(extra)
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
    # from "/" so that ``python -m`` imports the kedahttp installed for ``python``, not a checkout in the cwd
    return subprocess.Popen([python, "-m", "kedahttp", "proxy"], env=env, stdout=log, stderr=log, cwd="/")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(port: int, seconds: float, host: str = "app.bench", connections: int = CONNECTIONS,
        cpu: str | None = None, headers: tuple[str, ...] = ()) -> dict[str, float]:
    extra = [arg for header in headers for arg in ("-H", header)]
    cmd = [WRK, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Host: {host}", *extra,
           f"http://127.0.0.1:{port}/"]
    if cpu is not None and TASKSET:
        cmd = [TASKSET, "-c", cpu, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": round(rps), "requests": total, "p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
            "non_2xx": int(errors.group(1)) if errors else 0}


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measured(port: int, pids: list[int], seconds: float, cpu: str | None,
             headers: tuple[str, ...] = ()) -> dict[str, float]:
    """wrk against ``port`` plus the CPU the proxy processes ``pids`` spent per request."""
    before = _cpu_seconds(pids) if pids else 0.0
    result = wrk(port, seconds, cpu=cpu, headers=headers)
    if pids:
        result["cpu_us_per_request"] = round((_cpu_seconds(pids) - before) / max(1, result["requests"]) * 1e6, 1)
    return result


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: _median([r[key] for r in runs]) for key in runs[0] if key != "requests"}


def _versus(nginx: dict[str, float], ours: dict[str, float]) -> dict[str, float]:
    return {"nginx_rps": nginx["rps"], "kedahttp_rps": ours["rps"],
            "ratio_vs_nginx": round(ours["rps"] / nginx["rps"], 3),
            "nginx_cpu_us_per_request": nginx["cpu_us_per_request"],
            "kedahttp_cpu_us_per_request": ours["cpu_us_per_request"],
            "ratio_vs_nginx_cpu_per_request": round(nginx["cpu_us_per_request"] / ours["cpu_us_per_request"], 3)}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def memory_with_routes(count: int) -> dict[str, float]:
    """RSS of the route table, dispatcher state and counters for ``count`` backends (in a fresh process)."""
    code = f"""
import gc, resource
from kedahttp.proxy.routing import RouteTable
from kedahttp.proxy.dispatch import Dispatcher
from kedahttp.proxy.counters import CounterRegistry
from kedahttp.proxy.upstream import UpstreamPool
from kedahttp.process.tasks import TaskOwner
from kedahttp.proxy.sources import Backend
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize() / 2**20
backends = [Backend(key=f"ns/app{{i}}", hosts=(f"app{{i}}.example.com", f"*.app{{i}}.example.org"),
                    path_prefixes=("/", "/api")) for i in range({count})]
gc.collect(); before = rss()
table = RouteTable(Dispatcher(UpstreamPool(TaskOwner("x")), CounterRegistry("bench"),
                              cold_start_timeout_seconds=60, max_held_requests=1000, on_wake=lambda k: None))
table.replace_backends(backends)
for i in range({count}):
    table.set_endpoints(f"ns/app{{i}}", [f"10.0.{{i // 250}}.{{i % 250}}:8080"])
assert table.lookup(b"app{count - 1}.example.com", b"/api/x").key == "ns/app{count - 1}"
gc.collect(); print(round(rss() - before, 1))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {"routes": count, "table_mb": float(out.strip())}


async def _hold(port: int, count: int) -> list[Any]:
    conns = []
    for i in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /%d HTTP/1.1\r\nHost: cold.bench\r\n\r\n" % i)
        conns.append(writer)
        if i % 500 == 0:
            await asyncio.sleep(0)
    return conns


def memory_with_held(tmp: Path, routes: Path, count: int) -> dict[str, float]:
    port = _free_port()
    proc = _kedahttp(tmp, "held", routes, port, KEDAHTTP_MAX_HELD_REQUESTS=str(count * 2),
                     KEDAHTTP_COLD_START_TIMEOUT_SECONDS="120")
    try:
        _wait_port(port)
        time.sleep(0.5)
        before = _rss_mb(proc.pid)

        async def scenario() -> float:
            conns = await _hold(port, count)
            await asyncio.sleep(2.0)
            rss = _rss_mb(proc.pid)
            for writer in conns:
                writer.transport.abort()
            return rss

        during = asyncio.run(scenario())
        return {"held": count, "rss_before_mb": before, "rss_held_mb": during,
                "per_held_kb": round((during - before) * 1024 / count, 2)}
    finally:
        proc.kill()
        proc.wait()


def upstream_and_reference(tmp: Path, procs: list[subprocess.Popen[bytes]]) -> tuple[int, int, Path]:
    """The upstream (nginx answering a small body), nginx as the reference proxy in front of it, and a
    routes file for kedahttp (app.bench to the upstream, cold.bench to nothing): their ports and path.
    The processes are appended to ``procs``, upstream first, for ``stop``."""
    up, ref = _free_port(), _free_port()
    procs.append(_nginx(tmp, "upstream", f"""
  server {{ listen 127.0.0.1:{up} backlog=4096; location / {{ return 200 "hello from the upstream\\n"; }} }}"""))
    procs.append(_nginx(tmp, "proxy", f"""
  upstream app {{ server 127.0.0.1:{up}; keepalive 128; }}
  server {{ listen 127.0.0.1:{ref} backlog=4096; location / {{
    proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
    proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-Host $host; }} }}"""))
    routes = tmp / "routes.yaml"
    routes.write_text(f"""
backends:
  - name: app
    hosts: ["app.bench"]
    upstream: "http://127.0.0.1:{up}"
  - name: cold
    hosts: ["cold.bench"]
    upstream: "http://127.0.0.1:{_free_port()}"
""")
    return up, ref, routes


def stop(procs: list[subprocess.Popen[bytes]], tmp: Path) -> None:
    stop_all(procs)
    shutil.rmtree(tmp, ignore_errors=True)


def run(quick: bool) -> dict[str, Any]:
    """BENCH_BASELINE_PYTHON=<a venv's python> adds that venv's kedahttp (say, main's build) to the pinned
    rounds, so a change's before and after are ratios to the same nginx measured in the same run."""
    baseline_python = os.environ.get("BENCH_BASELINE_PYTHON")
    seconds = 2 if quick else 4  # the whole run stays under a minute
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    tmp = Path(tempfile.mkdtemp(prefix="kedahttp-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        up, ref, routes = upstream_and_reference(tmp, procs)
        k1, k2, kb = (_free_port() for _ in range(3))
        procs.append(_kedahttp(tmp, "kedahttp1", routes, k1, workers=1))
        procs.append(_kedahttp(tmp, "kedahttp2", routes, k2, workers=2))
        ports = [up, ref, k1, k2]
        if baseline_python:
            baseline = _kedahttp(tmp, "baseline", routes, kb, python=baseline_python)
            procs.append(baseline)
            ports.append(kb)
        for port in ports:
            _wait_port(port)
        time.sleep(1.5)  # both WORKERS=2 processes listening
        # One core for the proxy under test, the other for wrk and the upstream: "per worker" figures
        # that do not depend on how the scheduler shares two cores. Rounds interleave nginx and kedahttp
        # so drift in background load hits both; medians are reported.
        taskset = TASKSET
        pin = (os.cpu_count() or 1) >= 2 and taskset is not None
        load_cpu = "1" if pin else None
        nginx_pids = _children(procs[1].pid)
        k1_pids = [procs[2].pid]
        kb_pids = [baseline.pid] if baseline_python else []
        if taskset is not None and pin:
            for pid in [*_children(procs[0].pid), procs[0].pid]:
                subprocess.run([taskset, "-pc", "1", str(pid)], capture_output=True, check=False)
            for pid in [*nginx_pids, procs[1].pid, *k1_pids, *kb_pids]:
                subprocess.run([taskset, "-pc", "0", str(pid)], capture_output=True, check=False)
        for port in ports:
            wrk(port, 1, cpu=load_cpu)  # warm up: pools, caches
        rounds = 2 if quick else 3
        runs: dict[str, list[dict[str, float]]] = {key: [] for key in ("direct", "nginx", "k1", "kb", "nginx_b",
                                                                       "k1_b", "kb_b")}
        for _ in range(rounds):
            runs["direct"].append(measured(up, [], seconds, load_cpu))
            runs["nginx"].append(measured(ref, nginx_pids, seconds, load_cpu))
            runs["k1"].append(measured(k1, k1_pids, seconds, load_cpu))
            if baseline_python:
                runs["kb"].append(measured(kb, kb_pids, seconds, load_cpu))
            # browser-like requests (10 headers): the per-header cost
            runs["nginx_b"].append(measured(ref, nginx_pids, seconds, load_cpu, BROWSER_HEADERS))
            runs["k1_b"].append(measured(k1, k1_pids, seconds, load_cpu, BROWSER_HEADERS))
            if baseline_python:
                runs["kb_b"].append(measured(kb, kb_pids, seconds, load_cpu, BROWSER_HEADERS))
        direct, nginx, k1_res = (_summary(runs[k]) for k in ("direct", "nginx", "k1"))
        k2_res = wrk(k2, seconds)
        k1_free = wrk(k1, seconds)  # WORKERS=1 unpinned, for the scaling ratio
        one = {name: wrk(port, 2, connections=1, cpu=load_cpu) for name, port in
               (("direct", up), ("nginx", ref), ("kedahttp", k1))}
        rss_k1 = _rss_mb(procs[2].pid)
        figures: dict[str, Any] = {
            "pinned": pin,
            "direct": direct,
            "nginx_1_worker": nginx,
            "kedahttp_1_worker": k1_res,
            "ratio_vs_nginx_1_worker": round(k1_res["rps"] / nginx["rps"], 3),
            "browser_like": _versus(_summary(runs["nginx_b"]), _summary(runs["k1_b"])),
            "ratio_vs_nginx_cpu_per_request": round(nginx["cpu_us_per_request"] / k1_res["cpu_us_per_request"], 3),
            "added_p50_ms_50_connections": {"nginx": round(nginx["p50_ms"] - direct["p50_ms"], 3),
                                            "kedahttp": round(k1_res["p50_ms"] - direct["p50_ms"], 3)},
            "added_p99_ms_50_connections": {"nginx": round(nginx["p99_ms"] - direct["p99_ms"], 3),
                                            "kedahttp": round(k1_res["p99_ms"] - direct["p99_ms"], 3)},
            "added_p50_ms_1_connection": {"nginx": round(one["nginx"]["p50_ms"] - one["direct"]["p50_ms"], 3),
                                          "kedahttp": round(one["kedahttp"]["p50_ms"] - one["direct"]["p50_ms"], 3)},
            "added_p99_ms_1_connection": {"nginx": round(one["nginx"]["p99_ms"] - one["direct"]["p99_ms"], 3),
                                          "kedahttp": round(one["kedahttp"]["p99_ms"] - one["direct"]["p99_ms"], 3)},
            "kedahttp_1_worker_unpinned": k1_free,
            "kedahttp_2_workers_unpinned": k2_res,
            "workers_2_over_1": round(k2_res["rps"] / k1_free["rps"], 3),
            "kedahttp_1_worker_rss_mb": rss_k1,
            "cpus": os.cpu_count(),
            "note": "on 2 CPUs wrk and the upstream share the second core, so WORKERS=2 has no spare core",
        }
        if baseline_python:
            kb_res = _summary(runs["kb"])
            figures["baseline_1_worker"] = kb_res
            figures["baseline_ratio_vs_nginx_1_worker"] = round(kb_res["rps"] / nginx["rps"], 3)
            figures["baseline_ratio_vs_nginx_cpu_per_request"] = round(
                nginx["cpu_us_per_request"] / kb_res["cpu_us_per_request"], 3)
            figures["baseline_browser_like"] = _versus(_summary(runs["nginx_b"]), _summary(runs["kb_b"]))
        for proc in procs[2:]:
            proc.terminate()
        figures["memory_10000_routes"] = memory_with_routes(10_000)
        figures["memory_10000_held"] = memory_with_held(tmp, routes, 1000 if quick else 10_000)
        return figures
    finally:
        stop(procs, tmp)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()  # nginx: fast shutdown that also stops its worker
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv), indent=2))
