"""A Service port's appProtocol decides whether the proxy speaks HTTP/2 (h2c) to the app."""

from __future__ import annotations

from typing import Any

import pytest

from kedahttp.proxy.kube_source import parse_service


def service(port: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "greeter", "namespace": "apps",
                         "annotations": {"kedahttp.dev/hosts": "greeter.example.com"}},
            "spec": {"ports": [port]}}


@pytest.mark.parametrize(("app_protocol", "protocol"), [
    ("kubernetes.io/h2c", "h2c"), ("grpc", "h2c"), (None, "http1"), ("http", "http1"),
    ("kubernetes.io/ws", "http1"),
])
def test_app_protocol(app_protocol: str | None, protocol: str) -> None:
    port: dict[str, Any] = {"name": "http", "port": 80, "targetPort": 8080}
    if app_protocol is not None:
        port["appProtocol"] = app_protocol
    assert parse_service(service(port)).backend.protocol == protocol
