"""What the proxy speaks to an HTTPApp's endpoints: the HTTPApp's spec.protocol, else its Service port's
appProtocol (KEP-3726: kubernetes.io/h2c and grpc mean HTTP/2 cleartext)."""

from __future__ import annotations

from typing import Any

import pytest

from kedahttp.kube.appspec import SpecError
from kedahttp.kube.endpoints import EndpointIndex
from kedahttp.kube.httpapp import parse_httpapp
from kedahttp.proxy.kube_source import backend_of


def service(port: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "greeter", "namespace": "apps"}, "spec": {"ports": [port]}}


def app(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "greeter", "namespace": "apps"},
            "spec": {"hosts": ["greeter.example.com"], "service": {"name": "greeter", "port": 80}, **spec}}


@pytest.mark.parametrize(("app_protocol", "protocol"), [
    ("kubernetes.io/h2c", "h2c"), ("grpc", "h2c"), (None, "http1"), ("http", "http1"),
    ("kubernetes.io/ws", "http1"),
])
def test_the_service_ports_app_protocol(app_protocol: str | None, protocol: str) -> None:
    port: dict[str, Any] = {"name": "http", "port": 80, "targetPort": 8080}
    if app_protocol is not None:
        port["appProtocol"] = app_protocol
    index = EndpointIndex()
    index.services_listed([service(port)])
    assert backend_of(parse_httpapp(app()), index.protocol("apps/greeter", 80)).protocol == protocol


def test_the_httpapps_protocol_wins_over_the_service() -> None:
    index = EndpointIndex()
    index.services_listed([service({"name": "http", "port": 80, "appProtocol": "grpc"})])
    assert backend_of(parse_httpapp(app(protocol="http1")), index.protocol("apps/greeter", 80)).protocol == "http1"
    assert backend_of(parse_httpapp(app(protocol="h2c")), index.protocol("apps/missing", 80)).protocol == "h2c"


def test_a_missing_service_means_http1_and_a_bad_protocol_is_named() -> None:
    assert EndpointIndex().protocol("apps/greeter", 80) == "http1"
    with pytest.raises(SpecError, match=r"spec\.protocol"):
        parse_httpapp(app(protocol="h3"))


def test_an_httpapps_timeouts_and_placeholder_reach_its_route() -> None:
    backend = backend_of(parse_httpapp(app(timeouts={"responseHeaderSeconds": 5, "totalSeconds": 0},
                                           coldStart={"placeholder": "page", "timeoutSeconds": 30})))
    assert backend.settings.response_header_timeout_seconds == 5.0
    assert backend.settings.total_timeout_seconds == 0.0
    assert backend.settings.placeholder == "page"
    assert backend.cold_start_timeout_seconds == 30.0


@pytest.mark.parametrize(("spec", "field"), [
    ({"timeouts": {"idleSeconds": -1}}, "spec.timeouts.idleSeconds"),
    ({"timeouts": {"idelSeconds": 5}}, "spec.timeouts"),
    ({"coldStart": {"placeholder": "spinner"}}, "spec.coldStart.placeholder"),
    ({"coldStart": {"templateConfigMap": {"name": "Pages", "key": "a"}}}, "spec.coldStart.templateConfigMap.name"),
    ({"coldStart": {"templateConfigMap": {"name": "pages"}}}, "spec.coldStart.templateConfigMap.key"),
    ({"coldStart": {"templateConfigMap": {"name": "p", "key": "a/b"}}}, "spec.coldStart.templateConfigMap.key"),
    ({"coldStart": {"templateConfigMap": {"name": "p", "key": "a", "ns": "x"}}}, "spec.coldStart.templateConfigMap"),
    ({"coldStart": {"templateConfigMap": "pages"}}, "spec.coldStart.templateConfigMap"),
])
def test_a_bad_httpapp_timeout_or_placeholder_is_named(spec: dict[str, Any], field: str) -> None:
    from kedahttp.proxy.kube_source import app_settings_of

    with pytest.raises(SpecError) as caught:
        app_settings_of(parse_httpapp(app(**spec)))
    assert caught.value.field == field


def test_a_template_configmap_reference_survives_the_round_trip() -> None:
    from kedahttp.kube.httpapp import ConfigMapKeyRef, to_object

    parsed = parse_httpapp(app(coldStart={"placeholder": "page",
                                          "templateConfigMap": {"name": "pages.v1", "key": "wait.html"}}))
    assert parsed.template_config_map == ConfigMapKeyRef("pages.v1", "wait.html")
    assert parse_httpapp(to_object(parsed)) == parsed
