"""Where a request may go: absolute-form targets naming foreign hosts are never forwarded (the proxy is no
open proxy), and Host header tricks reach only the backend that owns the host, with the Host it was
sent, or are refused. Two recording upstreams tell the backends apart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.harness.clients import send
from tests.harness.proxy import RunningProxy, app_backend, recording_proxy
from tests.harness.recorder import Recorder

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def other() -> AsyncIterator[Recorder]:
    server = await Recorder().start()
    yield server
    await server.stop()


@pytest.fixture
async def two(recorder: Recorder, other: Recorder) -> AsyncIterator[RunningProxy]:
    """app.test (and *.app.test) -> recorder; ::1 and other.test -> other."""
    running = await recording_proxy(
        (app_backend(hosts=("app.test", "*.app.test")), recorder),
        (app_backend(key="default/other", hosts=("other.test", "::1")), other),
    )
    yield running
    await running.stop()


def get(target: bytes, *headers: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\n" + b"".join(h + b"\r\n" for h in headers) + b"Connection: close\r\n\r\n"


FOREIGN_TARGETS = [
    b"http://evil.example/",
    b"http://evil.example:8080/x?y=1",
    b"https://evil.example/",
    b"http://169.254.169.254/latest/meta-data/",
    b"http://localhost/",
    b"http://127.0.0.1/",
    b"http://[::ffff:127.0.0.1]/",
    b"http://evil.example@app.test/",
    b"http://app.test@evil.example/",
    b"http://app.test:80@evil.example/",
    b"http://app.test#@evil.example/",
    b"http://app.test\\@evil.example/",
    b"http:///x",
    b"http://app.test.evil.example/",
    b"http://evilapp.test/",
]


@pytest.mark.parametrize("target", FOREIGN_TARGETS)
async def test_absolute_form_to_a_foreign_host_is_never_forwarded(two: RunningProxy, recorder: Recorder,
                                                                  other: Recorder, target: bytes) -> None:
    out = await send(two.port, get(target, b"Host: app.test"))
    assert out.closed
    assert out.statuses() in ([404], [400]), out.data[:200]
    await asyncio.sleep(0.02)
    assert recorder.requests == [] and other.requests == []
    assert recorder.connections == 0 and other.connections == 0


async def test_absolute_form_to_the_upstreams_own_address_is_never_forwarded(two: RunningProxy,
                                                                             recorder: Recorder) -> None:
    out = await send(two.port, get(b"http://%s/" % recorder.endpoint.encode(), b"Host: app.test"))
    assert out.statuses() == [404]
    assert recorder.requests == []


async def test_absolute_form_authority_wins_over_host(two: RunningProxy, recorder: Recorder, other: Recorder) -> None:
    # RFC 9112 3.2.2: the authority of an absolute-form target replaces Host; the upstream sees one Host.
    out = await send(two.port, get(b"http://app.test/p?q=1", b"Host: other.test"))
    assert out.statuses() == [200]
    assert other.requests == []
    [seen] = recorder.requests
    assert seen.path == "/p?q=1"
    assert seen.message.values(b"host") == [b"app.test"]
    assert seen.message.values(b"x-forwarded-host") == [b"app.test"]
    out = await send(two.port, get(b"http://evil.example/", b"Host: app.test"))  # and the reverse: no route
    assert out.statuses() == [404]
    assert len(recorder.requests) == 1


ROUTED_HOSTS = {  # Host value -> which backend serves it
    b"app.test": "app",
    b"APP.Test": "app",
    b"app.test.": "app",
    b"app.test:8080": "app",
    b"x.app.test": "app",
    b"a.b.app.test:1": "app",
    b"other.test": "other",
    b"[::1]": "other",
    b"[::1]:8080": "other",
    b"[0:0:0:0:0:0:0:1]": None,  # another spelling is another host: no route
    b"[::2]": None,
    b"app.test.evil.example": None,
    b".app.test": None,
    b"evil.example": None,
}


@pytest.mark.parametrize("host", list(ROUTED_HOSTS))
async def test_host_routes_only_to_its_owner_and_reaches_it_unchanged(two: RunningProxy, recorder: Recorder,
                                                                      other: Recorder, host: bytes) -> None:
    out = await send(two.port, get(b"/h", b"Host: " + host))
    owner = ROUTED_HOSTS[host]
    if owner is None:
        assert out.statuses() == [404]
        assert recorder.requests == [] and other.requests == []
        return
    assert out.statuses() == [200]
    serving, idle = (recorder, other) if owner == "app" else (other, recorder)
    assert idle.requests == []
    [seen] = serving.requests
    assert seen.message.values(b"host") == [host]


REFUSED_HOSTS = [
    b"",
    b"user@app.test",
    b"user:pw@app.test",
    b"app.test@evil.example",
    b"app.test evil.example",
    b"app.test, evil.example",
    b"app.test:80:80",
    b"app.test/x",
    b"app.test\\x",
    b"app.test?x",
    b"app.test#x",
    b"app%2etest",
    b"app.test:abc",  # a port must be digits
    b"[app.test]",  # brackets hold only an IP literal
    b"app.test..",  # at most one trailing dot
    b"*.app.test",  # a wildcard is route syntax, never a request's Host
]


@pytest.mark.parametrize("host", REFUSED_HOSTS)
async def test_invalid_host_values_are_never_forwarded(two: RunningProxy, recorder: Recorder, other: Recorder,
                                                       host: bytes) -> None:
    out = await send(two.port, get(b"/h", b"Host: " + host))
    assert out.closed
    assert out.statuses() in ([400], [404]), out.data[:200]
    assert recorder.requests == [] and other.requests == []


@pytest.mark.parametrize("hosts", [(b"app.test", b"other.test"), (b"app.test", b"app.test"), (b"app.test", b"")])
async def test_two_host_headers_are_400(two: RunningProxy, recorder: Recorder, other: Recorder,
                                        hosts: tuple[bytes, bytes]) -> None:
    out = await send(two.port, get(b"/h", *(b"Host: " + h for h in hosts)))
    assert out.closed and out.statuses() == [400]
    assert recorder.requests == [] and other.requests == []


async def test_forwarded_headers_from_the_client_are_not_trusted(two: RunningProxy, recorder: Recorder) -> None:
    out = await send(two.port, get(b"/h", b"Host: app.test", b"X-Forwarded-Host: evil.example",
                                   b"X-Forwarded-Proto: https", b"X-Forwarded-For: 10.9.8.7"), source_ip="127.0.0.9")
    assert out.statuses() == [200]
    [seen] = recorder.requests
    assert seen.message.values(b"x-forwarded-host") == [b"app.test"]
    assert seen.message.values(b"x-forwarded-proto") == [b"http"]
    assert seen.client_ip == "127.0.0.9"  # appended by the proxy, after whatever the client claimed
