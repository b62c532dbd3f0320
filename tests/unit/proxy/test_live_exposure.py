"""The live page shows every app's traffic, so the proxy serves it beyond a loopback address only behind
the admin token; without one its admin server still answers the probes (the kubelet's, on 0.0.0.0)."""

from __future__ import annotations

import pytest

from kedahttp.activity.bus import open_transport
from kedahttp.process.settings import parse_address
from kedahttp.proxy.assembly import build
from kedahttp.proxy.live import is_served
from tests.harness.proxy import make_settings
from tests.harness.static_source import StaticSource


def paths(admin_addr: str, token: str | None) -> set[str]:
    settings = make_settings(admin_addr=parse_address(admin_addr), admin_token=token)
    proxy = build(settings, StaticSource([], {}), open_transport(settings.bus))
    assert proxy.admin is not None
    assert (proxy.live is not None) == is_served(token, settings.admin_addr)
    assert (proxy.live in proxy.components) == (proxy.live is not None)
    return {resource.canonical for resource in proxy.admin.build_app().router.resources()}


@pytest.mark.parametrize(("admin_addr", "token"), [("127.0.0.1:0", None), ("[::1]:0", None), ("0.0.0.0:0", "t0ken")])
def test_the_page_is_served_on_loopback_or_behind_the_token(admin_addr: str, token: str | None) -> None:
    assert {"/healthz", "/readyz", "/live", "/live/login", "/live/events"} <= paths(admin_addr, token)


def test_beyond_loopback_without_a_token_only_the_probes_answer() -> None:
    assert paths("0.0.0.0:0", None) == {"/healthz", "/readyz"}


def test_the_proxy_serves_nothing_that_writes() -> None:
    assert not any(path.startswith("/api") for path in paths("127.0.0.1:0", "t0ken"))
