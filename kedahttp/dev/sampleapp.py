"""The bundled sample app: a tiny HTTP server that answers with its replica id, one local process per replica.

Standard library only (``http.server`` with a thread per connection), so a replica starts in a fraction
of a second and holds keep-alive connections from the proxy's pool. It can be made slow so load tests
mean something: ``?sleep_ms=N`` on a request, or ``--delay-ms`` for every request; and it can pretend
to boot slowly (``--startup-seconds``) so a cold start is visible. On SIGTERM it stops accepting,
finishes what it is serving (bounded) and exits 0, like a well-behaved pod.

    python -m kedahttp.dev.sampleapp --port 9001 --replica-id hello-1
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_SLEEP_MS = 120_000
DRAIN_SECONDS = 30.0


class SampleServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], replica_id: str, app: str, delay_ms: float) -> None:
        super().__init__(address, SampleHandler)
        self.replica_id = replica_id
        self.app = app
        self.delay_ms = delay_ms
        self.started_at = time.time()
        self.served = 0
        self.in_flight = 0
        self.lock = threading.Lock()


class SampleHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the proxy's pool expects
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: SampleServer
    timeout = 120  # an idle keep-alive connection is closed after this

    def log_message(self, format: str, *args: object) -> None:
        pass  # a replica that logs every request would drown the dev terminal

    def _answer(self, with_body: bool) -> None:
        server = self.server
        with server.lock:
            server.in_flight += 1
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > 0:
                self.rfile.read(length)
            query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
            sleep_ms = server.delay_ms
            if "sleep_ms" in query:
                try:
                    sleep_ms = min(max(float(query["sleep_ms"][0]), 0.0), MAX_SLEEP_MS)
                except ValueError:
                    pass
            if sleep_ms > 0:
                time.sleep(sleep_ms / 1000)
            with server.lock:
                server.served += 1
                served = server.served
            if "json" in query or "application/json" in (self.headers.get("Accept") or ""):
                body = json.dumps({
                    "app": server.app, "replica": server.replica_id, "served": served,
                    "path": self.path, "host": self.headers.get("Host", ""), "slept_ms": sleep_ms,
                }).encode() + b"\n"
                content_type = "application/json"
            else:
                body = f"hello from {server.replica_id} (request {served} on this replica)\n".encode()
                content_type = "text/plain; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Replica-Id", server.replica_id)
            self.end_headers()
            if with_body:
                self.wfile.write(body)
        finally:
            with server.lock:
                server.in_flight -= 1

    def do_GET(self) -> None:
        self._answer(True)

    def do_POST(self) -> None:
        self._answer(True)

    def do_PUT(self) -> None:
        self._answer(True)

    def do_DELETE(self) -> None:
        self._answer(True)

    def do_HEAD(self) -> None:
        self._answer(False)


def _watch_parent(parent_pid: int, stopping: threading.Event) -> None:
    """A replica must not outlive `kedahttp dev`, even when that is killed without a chance to stop it."""
    while not stopping.wait(1.0):
        if os.getppid() != parent_pid:
            stopping.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kedahttp.dev.sampleapp", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--replica-id", default=f"sample-{os.getpid()}")
    parser.add_argument("--app", default="sample")
    parser.add_argument("--delay-ms", type=float, default=float(os.environ.get("SAMPLE_DELAY_MS", "0") or 0))
    parser.add_argument("--startup-seconds", type=float, default=0.0)
    parser.add_argument("--parent-pid", type=int, default=0, help="exit when this process is gone")
    args = parser.parse_args(argv)

    stopping = threading.Event()
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid, stopping), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())
    if args.startup_seconds > 0 and stopping.wait(args.startup_seconds):
        return 0
    server = SampleServer((args.host, args.port), args.replica_id, args.app, args.delay_ms)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    serving.start()
    stopping.wait()
    server.shutdown()  # stops accepting; handler threads keep serving what they have
    server.socket.close()
    deadline = time.monotonic() + DRAIN_SECONDS
    while server.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
