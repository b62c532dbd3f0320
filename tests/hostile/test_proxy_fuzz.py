"""A hypothesis fuzz of the proxy's request parsing, over a real socket to the real proxy.

Requests are built from parts an attacker would pick (framing headers and their lookalikes, odd line
endings and separators, pipelines, bodies that disagree with their framing) and then mutated byte-wise.
Each example connects from its own loopback address (127.1.x.y), so the recording upstream can tell
which requests came from it (the proxy appends the client address to X-Forwarded-For). Invariants:

- the proxy answers with well-formed HTTP responses (read strictly) and then closes, never hangs;
- the upstream only ever receives well-formed requests;
- every request the upstream received from the example is one a strict RFC 9112 reader finds in the
  example's bytes, in order, with the same method and body: a request the reference reader takes for
  body bytes (or never sees) reaching the upstream is a smuggled request;
- the proxy keeps serving: a normal request after every example is answered 200.

The proxy runs on its own event loop in a background thread, so hypothesis drives plain blocking sockets.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.harness.proxy import RunningProxy, app_backend, start_proxy
from tests.harness.recorder import Received, Recorder
from tests.harness.static_source import StaticSource
from tests.harness.wire import Malformed, read_requests, read_responses

pytestmark = pytest.mark.timeout(300)

T = TypeVar("T")


class Stack:
    """The recorder and the proxy on an event loop of their own, in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-proxy", daemon=True)
        self.recorder = Recorder(stall_seconds=0.2)
        self.proxy: RunningProxy | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> Stack:
        self.thread.start()
        self.run(self.recorder.start())
        source = StaticSource([app_backend()], {"default/app": [self.recorder.endpoint]})
        self.proxy = self.run(start_proxy(source))
        return self

    def stop(self) -> None:
        if self.proxy is not None:
            self.run(self.proxy.stop())
        self.run(self.recorder.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    @property
    def port(self) -> int:
        assert self.proxy is not None
        return self.proxy.port

    def settle(self) -> None:
        """Lets the proxy's loop run the I/O that is already pending (bytes written to the upstream)."""
        for _ in range(3):
            self.run(asyncio.sleep(0.002))

    def received_from(self, ip: str) -> list[Received]:
        return self.run(_received_from(self.recorder, ip))


async def _received_from(recorder: Recorder, ip: str) -> list[Received]:
    return recorder.from_client(ip)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    running = Stack().start()
    yield running
    running.stop()


_addresses = (f"127.1.{a}.{b}" for a, b in itertools.product(range(256), range(1, 255)))


def exchange(port: int, data: bytes, source_ip: str | None = None, *, half_close: bool = True,
             timeout: float = 3.0) -> tuple[bytes, bool]:
    """Sends ``data``, half-closes (so every request is complete or never will be), and reads until the
    proxy closes: (bytes, closed in time)."""
    sock = socket.socket()
    sock.settimeout(timeout)
    try:
        if source_ip:
            sock.bind((source_ip, 0))
        sock.connect(("127.0.0.1", port))
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the proxy refused and closed while we were still sending
        out = bytearray()
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return bytes(out), False
            except OSError:
                return bytes(out), True
            if not chunk:
                return bytes(out), True
            out += chunk
    finally:
        sock.close()


# -- what an attacker sends ---------------------------------------------------------------------------------

def mostly(usual: bytes | list[bytes], *odd: bytes, rarity: int = 10) -> st.SearchStrategy[bytes]:
    """One of ``usual`` about (rarity - 1) times in rarity (and what shrinking goes to), else one of ``odd``."""
    common = st.sampled_from(usual) if isinstance(usual, list) else st.just(usual)
    return st.integers(0, rarity - 1).flatmap(lambda n: st.sampled_from(odd) if n == rarity - 1 else common)


EOL = mostly(b"\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r", rarity=40)
METHODS = mostly([b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"], b"get", b"G ET", b"GET ", b"CONNECT")
TARGETS = mostly([b"/", b"/a?b=c", b"/x/../y", b"http://app.test/abs", b"//app.test/"],
                 b"/%00", b"*", b"/a b", b"/\x7f", b"http://evil.example/", b"")
VERSIONS = mostly(b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/1.1 ", b"http/1.1", b"", rarity=20)
SEPARATORS = mostly(b": ", b":", b" : ", b":\t", b"\t:", b": \x0b", b"::", rarity=20)
# header name -> values that make sense for it (lawful first) and lookalikes
FIELDS: dict[bytes, list[bytes]] = {
    b"Content-Length": [b"5", b"0", b"1", b"40", b"-1", b"+5", b"0x5", b"5, 5", b" 5", b"99999999999999999999"],
    b"Transfer-Encoding": [b"chunked", b"CHUNKED", b" chunked", b"chunked, identity", b"xchunked", b"identity",
                           b""],
    b"Connection": [b"close", b"keep-alive", b"transfer-encoding", b"x-a"],
    b"Expect": [b"100-continue", b"nothing"],
    b"Host": [b"app.test", b"APP.TEST:80", b"evil.example", b"", b"app.test, evil.example"],
    b"X-A": [b"1", b"a\x00b", b"\xff", b"a\rb"],
    b"X-Forwarded-For": [b"1.2.3.4"],
    b"X-Lookalike": [b"1", b"Transfer-Encoding: chunked"],
    b"TE": [b"trailers"],
    b"Trailer": [b"X-A"],
}


@st.composite
def header_lines(draw: st.DrawFn) -> list[tuple[bytes, bytes, bytes]]:
    lines = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(mostly(list(FIELDS), b"Transfer-Encoding ", b" Content-Length", b"Content_Length", b"X A"))
        if name not in FIELDS:  # a lookalike name
            lines.append((name, b": ", b"5"))
            continue
        values = FIELDS[name]
        value = mostly(values[0], *values[1:], rarity=3) if len(values) > 1 else st.just(values[0])
        lines.append((name, draw(SEPARATORS), draw(value)))
    return lines


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    eol = draw(EOL)
    parts = [draw(METHODS), b" ", draw(TARGETS), b" ", draw(VERSIONS), eol]
    if draw(st.integers(0, 9)):
        parts += [b"Host: app.test", eol]
    for name, sep, value in draw(header_lines()):
        parts += [name, sep, value, draw(EOL)]
    body = draw(st.binary(max_size=40))
    framing = draw(st.sampled_from(["length", "none", "chunked", "wrong-length", "bad-chunked"]))
    if framing == "length":
        parts += [b"Content-Length: %d" % len(body), eol]
    elif framing == "wrong-length":
        parts += [b"Content-Length: %d" % draw(st.integers(0, 80)), eol]
    elif framing in ("chunked", "bad-chunked"):
        parts += [b"Transfer-Encoding: chunked", eol]
        size = len(body) if framing == "chunked" else draw(st.integers(0, 80))
        body = (b"%x\r\n%s\r\n0\r\n\r\n" % (size, body)) if body else b"0\r\n\r\n"
    elif framing == "none":
        body = b""
    parts += [draw(EOL), body]
    return b"".join(parts)


INTERESTING = st.sampled_from([b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b":", b",", b";", b"0", b"f",
                               b"\r\n\r\n", b"GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n"])


@st.composite
def attacks(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(draw(st.lists(requests(), min_size=1, max_size=3))))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        if op == "insert":
            data[at:at] = draw(INTERESTING)
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 4))]
        elif op == "replace":
            data[at] = draw(st.integers(0, 255))
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 16))]
    return bytes(data)


# -- the invariants ----------------------------------------------------------------------------------------------


def origin_path(target: bytes) -> bytes:
    lower = target[:8].lower()
    if lower.startswith(b"http://") or lower.startswith(b"https://"):
        rest = target.split(b"//", 1)[1]
        cut = min([i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0], default=len(rest))
        path = rest[cut:] or b"/"
        return path if path.startswith(b"/") else b"/" + path
    return target


def is_subsequence(got: list[tuple[bytes, bytes, bytes]], sent: list[tuple[bytes, bytes, bytes]]) -> bool:
    it = iter(sent)
    return all(any(item == candidate for candidate in it) for item in got)


def check(stack: Stack, data: bytes) -> None:
    ip = next(_addresses)
    out, closed = exchange(stack.port, data, source_ip=ip)
    assert closed, f"the proxy neither answered in full nor closed: {out[:200]!r}"
    try:
        responses = read_responses(out, eof=True)
    except Malformed as exc:
        raise AssertionError(f"the proxy sent something that is not HTTP: {exc}: {out[:300]!r}") from None
    assert not [r for r in responses if r.status == 500], f"an internal error: {out[:300]!r}"
    stack.settle()
    received = stack.received_from(ip)
    assert stack.recorder.malformed == [], stack.recorder.malformed[:1]
    reference, _ = read_requests(data, lenient=True)
    sent = [(m.method, origin_path(m.target), m.body) for m in reference]
    got = [(r.message.method, r.message.target, r.message.body) for r in received]
    assert is_subsequence(got, sent), f"the upstream got requests no strict reader sees: {got} not in {sent}"
    event(f"forwarded {min(len(got), 2)}+, first answer {responses[0].status if responses else 'none'}")
    health, _ = exchange(stack.port, b"GET /health HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
                         half_close=False)
    assert health.startswith(b"HTTP/1.1 200 "), health[:200]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(attacks())
def test_fuzzed_requests_never_desync_or_break_the_proxy(stack: Stack, data: bytes) -> None:
    check(stack, data)


def test_the_invariants_catch_a_smuggled_request() -> None:
    # The checker itself: what a desynced proxy would forward is flagged, what a correct one forwards is not.
    body = b"GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n"
    data = b"POST /a HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    sent = [(m.method, origin_path(m.target), m.body) for m in read_requests(data)[0]]
    assert is_subsequence([(b"POST", b"/a", body)], sent)
    assert not is_subsequence([(b"POST", b"/a", b""), (b"GET", b"/smuggled", b"")], sent)

