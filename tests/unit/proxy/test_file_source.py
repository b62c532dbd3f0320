"""The routes file: validation with errors that name the backend and field; reloads; readiness probes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from kedahttp.proxy.file_source import FileSource, RoutesFileError, load_routes_file, parse_routes
from kedahttp.proxy.sources import Backend

GOOD = """
backends:
  - name: app
    namespace: shop
    hosts: ["App.Example.com", "*.apps.example.com"]
    pathPrefixes: ["/", "/api"]
    upstream: "http://127.0.0.1:9001"
    coldStartTimeoutSeconds: 30
  - name: v6
    hosts: ["v6.example.com"]
    upstream: "http://[::1]:9002/"
"""


def test_parses_a_good_file() -> None:
    app, v6 = parse_routes(GOOD)
    assert app.backend == Backend("shop/app", ("app.example.com", "*.apps.example.com"), ("/", "/api"), 30.0)
    assert app.endpoint == "127.0.0.1:9001"
    assert v6.backend.key == "default/v6" and v6.backend.cold_start_timeout_seconds is None
    assert v6.endpoint == "[::1]:9002"
    assert parse_routes("") == []
    assert app.backend.protocol == "http1"


def test_protocol_h2c_and_a_bad_protocol_named() -> None:
    (grpc,) = parse_routes("backends: [{name: g, hosts: [g], upstream: 'http://h:1', protocol: h2c}]")
    assert grpc.backend.protocol == "h2c"
    with pytest.raises(RoutesFileError, match=r"field 'protocol'.*'h3'"):
        parse_routes("backends: [{name: g, hosts: [g], upstream: 'http://h:1', protocol: h3}]")


@pytest.mark.parametrize(("text", "message"), [
    ("backends: [{name: Bad_Name, hosts: [a], upstream: 'http://h:1'}]", "backends[0] field 'name'"),
    ("backends: [{name: app, upstream: 'http://h:1'}]", "backend 'app' field 'hosts'"),
    ("backends: [{name: app, hosts: ['a b'], upstream: 'http://h:1'}]", "backend 'app' field 'hosts'"),
    ("backends: [{name: app, hosts: [a], upstream: 'https://h:1'}]", "backend 'app' field 'upstream'"),
    ("backends: [{name: app, hosts: [a], upstream: 'http://h'}]", "backend 'app' field 'upstream'"),
    ("backends: [{name: app, hosts: [a], upstream: 'http://h:1', pathPrefixes: [api]}]",
     "backend 'app' field 'pathPrefixes'"),
    ("backends: [{name: app, hosts: [a], upstream: 'http://h:1', coldStartTimeoutSeconds: 0}]",
     "backend 'app' field 'coldStartTimeoutSeconds'"),
    ("backends: [{name: app, hosts: [a], upstream: 'http://h:1', colour: red}]", "unknown field(s) colour"),
    ("backends:\n- {name: app, hosts: [a], upstream: 'http://h:1'}\n- {name: app, hosts: [b], upstream: 'http://h:2'}",
     "defined twice"),
    ("backends: {name: app}", "'backends' list"),
    ("backends: [", "not valid YAML"),
])
def test_errors_name_the_backend_and_field(text: str, message: str) -> None:
    with pytest.raises(RoutesFileError) as info:
        parse_routes(text, "routes.yaml")
    assert "routes.yaml" in str(info.value)
    assert message in str(info.value)


class Sink:
    def __init__(self) -> None:
        self.backends: dict[str, Backend] = {}
        self.endpoints: dict[str, list[str]] = {}
        self.changed = asyncio.Event()

    def replace_backends(self, backends: Iterable[Backend]) -> None:
        self.backends = {b.key: b for b in backends}
        self.changed.set()

    def upsert_backend(self, backend: Backend) -> None:
        self.backends[backend.key] = backend

    def remove_backend(self, key: str) -> None:
        self.backends.pop(key, None)

    def set_endpoints(self, key: str, endpoints: Sequence[str]) -> None:
        self.endpoints[key] = list(endpoints)
        self.changed.set()


async def wait_until(predicate: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if predicate():  # type: ignore[operator]
                return
            await asyncio.sleep(0.02)


async def test_reload_on_change_keeps_good_routes_after_a_bad_edit_and_probes_readiness(tmp_path: Path) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    path = tmp_path / "routes.yaml"
    path.write_text(f"backends: [{{name: app, hosts: [a.test], upstream: 'http://127.0.0.1:{port}'}}]")
    source = FileSource(str(path), poll_seconds=0.05)
    sink = Sink()
    task = asyncio.ensure_future(source.run(sink))
    try:
        await wait_until(lambda: sink.endpoints.get("default/app") == [f"127.0.0.1:{port}"])
        path.write_text(f"backends: [{{name: app, hosts: [b.test], upstream: 'http://127.0.0.1:{port}'}}]")
        await wait_until(lambda: sink.backends["default/app"].hosts == ("b.test",))
        path.write_text("backends: [{name: app, hosts: [c.test]}]")  # no upstream: rejected
        await asyncio.sleep(0.3)
        assert sink.backends["default/app"].hosts == ("b.test",)
        server.close()
        await server.wait_closed()
        source.nudge("default/app")
        await wait_until(lambda: sink.endpoints["default/app"] == [], timeout=3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_first_load_failure_is_raised(tmp_path: Path) -> None:
    with pytest.raises(RoutesFileError):
        await FileSource(str(tmp_path / "missing.yaml")).run(Sink())


def test_per_app_timeouts_and_waiting_page_from_the_routes_file(tmp_path: Path) -> None:
    (tmp_path / "waiting.html").write_text("<p>$app wakes ($waited_seconds s)</p>")
    path = tmp_path / "routes.yaml"
    path.write_text("""
backends:
  - name: shop
    hosts: [shop.test]
    upstream: "http://127.0.0.1:9001"
    timeouts: {connectSeconds: 1, responseHeaderSeconds: 2.5, idleSeconds: 3, totalSeconds: 0, tunnelIdleSeconds: 30}
    coldStart: {placeholder: page, template: waiting.html}
""")
    (shop,) = load_routes_file(str(path))
    settings = shop.backend.settings
    assert (settings.connect_timeout_seconds, settings.response_header_timeout_seconds, settings.idle_timeout_seconds,
            settings.total_timeout_seconds, settings.tunnel_idle_timeout_seconds) == (1.0, 2.5, 3.0, 0.0, 30.0)
    assert settings.placeholder == "page" and settings.page_template == "<p>$app wakes ($waited_seconds s)</p>"


@pytest.mark.parametrize(("fields", "message"), [
    ("timeouts: {idleSeconds: 0}", "backend 'app' field 'timeouts.idleSeconds': must be a number > 0"),
    ("timeouts: {readSeconds: 1}", "backend 'app' field 'timeouts': unknown field(s) readSeconds"),
    ("coldStart: {placeholder: spinner}", "backend 'app' field 'coldStart.placeholder': must be one of hold, page"),
    ("coldStart: {template: nope.html}", "backend 'app' field 'coldStart.template': cannot read 'nope.html'"),
])
def test_bad_per_app_fields_name_the_backend_and_field(tmp_path: Path, fields: str, message: str) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(f"backends: [{{name: app, hosts: [a], upstream: 'http://h:1', {fields}}}]")
    with pytest.raises(RoutesFileError) as info:
        load_routes_file(str(path))
    assert message in str(info.value)
