"""The manifests agree with the code: the settings they set exist and parse, and the ports, probes and
image they name are the ones the processes actually serve with those settings.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from kedahttp import __version__
from kedahttp.cli import main as cli
from kedahttp.process import settings
from tests.harness.render import Build, named_ports, probe_port, rendered

IMAGE = f"ghcr.io/kedahttp/kedahttp:{__version__}"
# The settings each command accepts, from the settings table the CLI builds its flags from.
TAKES = {process: {spec.name for spec in settings.specs_for(process)} for process in ("proxy", "scaler")}
PREFIX = "KEDAHTTP_"


def loaded(build: Build, component: str) -> settings.Settings:
    workload, container = build.component(component)
    env = build.environment(workload, container)
    try:
        return settings.load({}, environ=env, component=component)
    except settings.SettingError as exc:
        pytest.fail(f"{build.name}: the {component} would refuse to start: {exc}")


def test_every_setting_is_known_and_taken_by_its_command(install: Build) -> None:
    for component, takes in TAKES.items():
        workload, container = install.component(component)
        env = install.environment(workload, container)
        for key in env:
            assert key.startswith(PREFIX), f"{install.name}: {component}: {key} is not a kedahttp setting"
            name = key[len(PREFIX) :].lower()
            assert name in settings.SPEC_BY_NAME, f"{install.name}: {component}: unknown setting {key}"
            assert name in takes, f"{install.name}: `kedahttp {component}` does not use {key}"


def test_configmaps_hold_only_known_settings(built: Build) -> None:
    for config in built.of_kind("ConfigMap"):
        if config["metadata"].get("labels", {}).get("grafana_dashboard"):
            continue  # the monitoring component's dashboard (test_monitoring), not settings
        for key in config.get("data", {}):
            assert key.startswith(PREFIX) and key[len(PREFIX) :].lower() in settings.SPEC_BY_NAME, (
                f"{built.name}: ConfigMap {config['metadata']['name']}: {key} is not a setting"
            )
            assert not settings.SPEC_BY_NAME[key[len(PREFIX) :].lower()].secret, f"{key} belongs in a Secret"


def test_the_admin_token_comes_from_a_secret(install: Build) -> None:
    _, container = install.component("proxy")
    entries = [e for e in container.get("env", []) if e["name"] == "KEDAHTTP_ADMIN_TOKEN"]
    assert len(entries) == 1 and "secretKeyRef" in entries[0].get("valueFrom", {}), (
        f"{install.name}: KEDAHTTP_ADMIN_TOKEN must come from a Secret"
    )


def test_commands_and_image(install: Build) -> None:
    for component in ("proxy", "scaler"):
        _, container = install.component(component)
        assert container["image"] == IMAGE, f"{install.name}: {component} runs {container['image']}"
        assert container["args"] == [component] and component in cli.cli.commands
        assert "command" not in container, "the image's ENTRYPOINT is kedahttp"


def test_proxy_ports_and_probes_are_those_it_serves(install: Build) -> None:
    proxy = loaded(install, "proxy")
    _, container = install.component("proxy")
    assert named_ports(container) == {
        "http": proxy.proxy_addr.port,
        "admin": proxy.admin_addr.port,
        "metrics": proxy.metrics_addr.port,
    }
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        action = container[probe]["httpGet"]
        assert action["path"] == path, f"{probe} must ask {path}"
        assert probe_port(container, action["port"]) == proxy.admin_addr.port, f"{probe} on the admin port"
        assert action.get("scheme", "HTTP") == "HTTP"
    assert proxy.routes == "kubernetes"
    assert proxy.admin_token, "without a token the admin API binds loopback only and probes fail"


def test_scaler_ports_and_probes_are_those_it_serves(install: Build) -> None:
    scaler = loaded(install, "scaler")
    _, container = install.component("scaler")
    assert named_ports(container) == {"grpc": scaler.scaler_addr.port, "metrics": scaler.metrics_addr.port}
    assert scaler.metrics_addr.port != loaded(install, "proxy").metrics_addr.port
    for probe, service in (("readinessProbe", "readiness"), ("livenessProbe", "liveness")):
        action = container[probe]["grpc"]
        assert action == {"port": scaler.scaler_addr.port, "service": service}


def test_the_proxy_writes_the_scaler_address_the_cluster_serves(install: Build) -> None:
    proxy = loaded(install, "proxy")
    host, _, port = proxy.scaler_address.rpartition(":")
    name, namespace, *_ = host.split(".")
    service = install.get("Service", namespace, name)
    assert service is not None, f"{install.name}: SCALER_ADDRESS {proxy.scaler_address} names no Service"
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}


def test_both_components_share_one_bus(install: Build) -> None:
    assert loaded(install, "proxy").bus == loaded(install, "scaler").bus


@pytest.mark.parametrize(
    ("overlay", "schemes"),
    [
        ("overlays/dev", {"redis", "nats"}),
        ("overlays/redis", {"redis", "rediss"}),
        ("overlays/nats", {"nats"}),
    ],
)
def test_each_overlay_points_at_its_bus(overlay: str, schemes: set[str]) -> None:
    build = rendered(overlay)
    bus = loaded(build, "proxy").bus
    for server in bus.split(","):
        url = urlsplit(server if "://" in server else f"nats://{server}")
        assert url.scheme in schemes, f"{overlay}: KEDAHTTP_BUS {bus}"
        assert url.hostname and url.hostname not in {"127.0.0.1", "localhost"}, f"{overlay}: bus on loopback"
        if overlay == "overlays/dev":  # the dev bus is a Service of the overlay itself
            service = build.get("Service", "kedahttp", url.hostname)
            assert service is not None, f"{overlay}: KEDAHTTP_BUS names {url.hostname}, which is not built"
            assert url.port in {p["port"] for p in service["spec"]["ports"]}
