"""Forwarded headers on the wire: curl through the proxy to an app that shows what it received.

From an address in TRUSTED_PROXIES (an ingress), X-Forwarded-Proto and -Host reach the app as the
ingress set them and the peer is appended to X-Forwarded-For; from any other address all three are
replaced by what the proxy saw, so a client cannot claim https or another address.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kedahttp.process.settings import parse_networks
from kedahttp.proxy.sources import Backend
from tests.harness.clients import curl
from tests.harness.proxy import RunningProxy, make_settings
from tests.harness.static_source import StaticSource

pytestmark = pytest.mark.timeout(30)

FROM_THE_INGRESS = ("-H", "Host: app.test", "-H", "X-Forwarded-For: 203.0.113.9", "-H", "X-Forwarded-Proto: https",
                    "-H", "X-Forwarded-Host: shop.example.com", "-H", "X-Real-IP: 203.0.113.9",
                    "-H", "Forwarded: for=203.0.113.9;proto=https;host=shop.example.com")


async def seen_by_the_app(proxy_factory: Any, upstream: Any, trusted: str) -> dict[str, list[str]]:
    backend = Backend("default/app", ("app.test",))
    running: RunningProxy = await proxy_factory(StaticSource([backend], {"default/app": [upstream.endpoint]}),
                                                make_settings(trusted_proxies=parse_networks(trusted)))
    code, out, err = await curl(*FROM_THE_INGRESS, f"{running.url}/headers")
    assert code == 0, err
    seen: dict[str, list[str]] = {}
    for name, value in json.loads(out)["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


async def test_from_a_trusted_proxy_proto_and_host_pass_and_the_peer_is_appended(proxy_factory: Any,
                                                                                  upstream: Any) -> None:
    seen = await seen_by_the_app(proxy_factory, upstream, "127.0.0.0/8")
    assert seen["x-forwarded-proto"] == ["https"]
    assert seen["x-forwarded-host"] == ["shop.example.com"]
    assert seen["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert seen["x-real-ip"] == ["203.0.113.9"]
    assert seen["forwarded"] == ["for=203.0.113.9;proto=https;host=shop.example.com, for=127.0.0.1"]
    assert seen["host"] == ["app.test"]


async def test_from_anyone_else_all_of_them_are_replaced(proxy_factory: Any, upstream: Any) -> None:
    seen = await seen_by_the_app(proxy_factory, upstream, "10.0.0.0/8")  # the client, 127.0.0.1, is not in it
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == ["app.test"]
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert "x-real-ip" not in seen and "forwarded" not in seen
