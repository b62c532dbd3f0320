"""gRPC unary calls through kedahttp against nginx's grpc_pass and a direct connection, same run.

The app is nginx (one worker) answering every call with a fixed gRPC reply and ``grpc-status: 0`` in a
trailer, so the app costs little and the proxies are what is measured; h2load (nghttp2-client) sends
the calls: 10 connections with 10 concurrent streams each. Two shapes: every stream to one app, and the
streams of each connection spread over 10 apps (10 path prefixes, 10 upstream ports), which is what an
ingress multiplexing many hosts onto one connection to us looks like. kedahttp runs twice: as configured
by default (the full HTTP/2 stack on both legs) and with H2_RELAY on (kedahttp_relay: connections whose
streams go to one app are relayed frame by frame; h2load's connections in the many-apps shape carry
several apps from their first read, so those stay on the full stack). As in proxy_throughput, the proxy
under test gets core 0 and h2load and the app core 1; rounds interleave the proxies; medians reported.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.proxy_throughput import (
    TASKSET,
    _children,
    _cpu_seconds,
    _free_port,
    _kedahttp,
    _median,
    _nginx,
    _wait_port,
    stop_all,
)

NAME = "grpc_throughput"
H2LOAD = shutil.which("h2load") or "/usr/bin/h2load"
APPS = 10
CONNECTIONS = 10
STREAMS = 10
WARM_UP_SECONDS = 1
REQUEST = b"\x00\x00\x00\x00\x05world"  # one gRPC message (uncompressed, 5 bytes)
REPLY = b"\x00\x00\x00\x00\x05hello"


def h2load(port: int, paths: list[str], seconds: float, cpu: str | None, tmp: Path,
           connections: int = CONNECTIONS, streams: int = STREAMS, pids: list[int] | None = None) -> dict[str, float]:
    """h2load's figures; with ``pids``, also the CPU those processes spent per call, counted from the end
    of h2load's warm-up (whose calls it does not count either) to its end."""
    log = tmp / "h2load.log"
    log.unlink(missing_ok=True)  # h2load appends
    cmd = [H2LOAD, "-c", str(connections), "-m", str(streams), "-D", str(seconds), f"--warm-up-time={WARM_UP_SECONDS}",
           "-d", str(tmp / "request.bin"), "-H", "content-type: application/grpc", "-H", "te: trailers",
           "-H", ":authority: grpc.bench", f"--log-file={log}",
           *(f"http://127.0.0.1:{port}{path}" for path in paths)]
    if cpu is not None and TASKSET:
        cmd = [TASKSET, "-c", cpu, *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cpu_from = 0.0
    if pids:
        time.sleep(WARM_UP_SECONDS)
        cpu_from = _cpu_seconds(pids)
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"h2load failed against port {port}: {err[-600:]}")
    spent = _cpu_seconds(pids) - cpu_from if pids else 0.0
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", out)
    assert done, out
    failed = int(done.group(2)) - int(done.group(3))
    if failed * 100 > int(done.group(2)):  # more than 1%: something is broken, not slow
        raise RuntimeError(f"h2load: calls failed against port {port} {paths[:2]}:\n{out[-600:]}")
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
    durations = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line.strip())
    if not durations:
        raise RuntimeError(f"h2load made no call against port {port} {paths[:2]}:\n{out[-600:]}")
    result = {"rps": round(rps), "requests": int(done.group(3)), "failed": failed,
              "p50_ms": round(durations[len(durations) // 2] / 1000, 3),
              "p99_ms": round(durations[int(len(durations) * 0.99)] / 1000, 3)}
    if pids:
        result["cpu_us_per_request"] = round(spent / max(1, result["requests"]) * 1e6, 1)
    return result


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: _median([r[key] for r in runs]) for key in runs[0] if key != "requests"}


def run(quick: bool) -> dict[str, Any]:
    seconds = 2 if quick else 4
    tmp = Path(tempfile.mkdtemp(prefix="kedahttp-bench-grpc-"))
    tmp.chmod(0o755)  # nginx's workers (an unprivileged user when started as root) read the reply file
    (tmp / "request.bin").write_bytes(REQUEST)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ups = [_free_port() for _ in range(APPS)]
        ref, k1, kr = _free_port(), _free_port(), _free_port()
        app_root = tmp / "app-files"
        app_root.mkdir()
        (app_root / "reply.bin").write_bytes(REPLY)
        listens = " ".join(f"listen 127.0.0.1:{p} http2 backlog=4096;" for p in ups)
        # POST to a static file is 405 in nginx: error_page turns it into the file with 200. The app reads
        # the call (mirror_request_body; the mirror is an empty subrequest) before it answers, as a gRPC
        # server does: answering on the HEADERS frame alone, it sent RST_STREAM(NO_ERROR) after the reply,
        # and when that frame reached nginx's grpc_pass after the connection went back to its keep-alive
        # pool, nginx closed the connection or failed the next call on it (502, "upstream sent frame for
        # unknown stream"): thousands of new upstream connections a run and 0.2-3% of calls failed. The
        # largest preread window spares the stream WINDOW_UPDATE nginx sends when it starts reading a body
        # (a gRPC server sends none for a 10-byte call); it tripled grpc_pass's wake-ups per call.
        procs.append(_nginx(tmp, "app", f"""
  server {{ {listens} root {app_root}; http2_body_preread_size 2147483647;
    location / {{ default_type application/grpc; add_trailer grpc-status 0;
                  mirror /read-body; mirror_request_body on;
                  error_page 405 =200 /reply.bin; try_files /reply.bin =404; }}
    location = /read-body {{ internal; return 204; }} }}"""))
        # keepalive_requests: nginx closes an upstream connection after 1000 calls by default (_nginx lifts
        # the same limit on client connections)
        upstreams = "\n".join(
            f"  upstream app{i} {{ server 127.0.0.1:{p}; keepalive 128; keepalive_requests 10000000; }}"
            for i, p in enumerate(ups))
        locations = " ".join(f"location /svc{i}. {{ grpc_pass grpc://app{i}; }}" for i in range(APPS))
        procs.append(_nginx(tmp, "proxy", f"""
{upstreams}
  server {{ listen 127.0.0.1:{ref} http2 backlog=4096; {locations} }}"""))
        routes = tmp / "routes.yaml"
        routes.write_text("backends:\n" + "".join(f"""
  - name: app{i}
    hosts: ["grpc.bench"]
    pathPrefixes: ["/svc{i}.Echo"]
    upstream: "http://127.0.0.1:{p}"
    protocol: h2c
""" for i, p in enumerate(ups)))
        procs.append(_kedahttp(tmp, "kedahttp1", routes, k1, workers=1))
        procs.append(_kedahttp(tmp, "kedahttp_relay", routes, kr, workers=1, KEDAHTTP_H2_RELAY="true"))
        for port in (*ups, ref, k1, kr):
            _wait_port(port)
        time.sleep(0.5)
        pin = (os.cpu_count() or 1) >= 2 and TASKSET is not None
        load_cpu = "1" if pin else None
        nginx_pids = _children(procs[1].pid)
        k1_pids = [procs[2].pid]
        kr_pids = [procs[3].pid]
        if TASKSET is not None and pin:
            for pid in [*_children(procs[0].pid), procs[0].pid]:
                subprocess.run([TASKSET, "-pc", "1", str(pid)], capture_output=True, check=False)
            for pid in [*nginx_pids, procs[1].pid, *k1_pids, *kr_pids]:
                subprocess.run([TASKSET, "-pc", "0", str(pid)], capture_output=True, check=False)
        one_app = ["/svc0.Echo/Unary"]
        many_apps = [f"/svc{i}.Echo/Unary" for i in range(APPS)]
        for port, paths in ((ups[0], one_app), (ref, many_apps), (k1, many_apps), (kr, one_app)):
            h2load(port, paths, 1, load_cpu, tmp)  # warm up: connections, caches
        rounds = 2 if quick else 3
        shapes = {"one_app": one_app, "many_apps": many_apps}
        runs: dict[str, list[dict[str, float]]] = {}
        for _ in range(rounds):
            runs.setdefault("direct", []).append(h2load(ups[0], one_app, seconds, load_cpu, tmp))
            for shape, paths in shapes.items():
                runs.setdefault(f"nginx_{shape}", []).append(
                    h2load(ref, paths, seconds, load_cpu, tmp, pids=nginx_pids))
                runs.setdefault(f"kedahttp_{shape}", []).append(
                    h2load(k1, paths, seconds, load_cpu, tmp, pids=k1_pids))
                runs.setdefault(f"kedahttp_relay_{shape}", []).append(
                    h2load(kr, paths, seconds, load_cpu, tmp, pids=kr_pids))
        res = {name: _summary(r) for name, r in runs.items()}
        single = {name: h2load(port, one_app, 2, load_cpu, tmp, connections=1, streams=1)
                  for name, port in (("direct", ups[0]), ("nginx", ref), ("kedahttp", k1), ("kedahttp_relay", kr))}
        figures: dict[str, Any] = {"pinned": pin, **res}
        for shape in shapes:
            n = res[f"nginx_{shape}"]
            for kind in ("kedahttp", "kedahttp_relay"):
                k = res[f"{kind}_{shape}"]
                suffix = shape if kind == "kedahttp" else f"relay_{shape}"
                figures[f"ratio_vs_nginx_{suffix}"] = round(k["rps"] / n["rps"], 3)
                figures[f"ratio_vs_nginx_cpu_per_request_{suffix}"] = round(
                    n["cpu_us_per_request"] / k["cpu_us_per_request"], 3)
            figures[f"added_p50_ms_{shape}"] = {
                name: round(res[f"{name}_{shape}"]["p50_ms"] - res["direct"]["p50_ms"], 3)
                for name in ("nginx", "kedahttp", "kedahttp_relay")}
        figures["added_p50_ms_1_stream"] = {
            name: round(single[name]["p50_ms"] - single["direct"]["p50_ms"], 3)
            for name in ("nginx", "kedahttp", "kedahttp_relay")}
        figures["shape"] = f"{CONNECTIONS} connections x {STREAMS} streams; many_apps: {APPS} apps per connection"
        return figures
    finally:
        stop_all(procs)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=2))
