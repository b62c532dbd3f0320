"""The dev config: the bundled sample loads, values land where they belong, mistakes name their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kedahttp.dev.config import ConfigError, EmulatorConfig, load, parse
from kedahttp.dev.hpa import Policy


def test_bundled_sample_runs_hello_on_hello_localhost() -> None:
    config = load()
    assert config.source.endswith("sample.yaml")
    app, greeter = config.apps
    assert greeter.key == "default/greeter" and greeter.protocol == "h2c" and greeter.min_replicas == 0
    assert app.key == "default/hello"
    assert app.hosts == ("hello.localhost",)
    assert app.is_sample and app.min_replicas == 0 and app.max_replicas >= 4
    meta = app.scaler_metadata()
    assert meta["backend"] == "default/hello" and float(meta["targetConcurrency"]) > 0
    # the emulator's short dev timings, as documented in the file
    assert config.emulator.polling_interval_seconds == 2
    assert config.emulator.cooldown_period_seconds == 15
    assert config.emulator.hpa_sync_period_seconds == 3
    assert config.emulator.scale_down.stabilization_window_seconds == 10
    assert Policy("Pods", 4, 15.0) in config.emulator.scale_up.policies


def test_a_full_app_and_timings() -> None:
    config = parse({
        "apps": [{
            "name": "api", "namespace": "shop", "hosts": ["API.example.com", "*.api.local"],
            "pathPrefixes": ["/v1", "/v2"], "command": ["./server", "--port", "{port}", "--id", "{replica}"],
            "env": {"MODE": 1}, "minReplicas": 1, "maxReplicas": 3, "targetConcurrency": 2.5,
            "targetRequestRate": 40, "rateWindowSeconds": 30, "activityWindowSeconds": 5,
            "coldStartTimeoutSeconds": 20, "terminationGracePeriodSeconds": 1,
        }],
        "keda": {"pollingInterval": 30, "cooldownPeriod": 300},
        "hpa": {"syncPeriodSeconds": 15, "tolerance": 0.2,
                "scaleDown": {"stabilizationWindowSeconds": 300, "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}},
    })
    [app] = config.apps
    assert app.key == "shop/api" and app.hosts == ("api.example.com", "*.api.local")
    assert app.command == ("./server", "--port", "{port}", "--id", "{replica}") and not app.is_sample
    assert app.env == {"MODE": "1"}
    assert app.scaler_metadata() == {
        "backend": "shop/api", "targetConcurrency": "2.5", "targetRequestRate": "40",
        "rateWindowSeconds": "30", "activityWindowSeconds": "5",
    }
    assert app.cold_start_timeout_seconds == 20 and app.termination_grace_seconds == 1
    emulator = config.emulator
    assert (emulator.polling_interval_seconds, emulator.cooldown_period_seconds) == (30, 300)
    assert (emulator.hpa_sync_period_seconds, emulator.tolerance) == (15, 0.2)
    assert emulator.scale_down.policies == (Policy("Pods", 2, 60.0),)
    assert emulator.scale_up == EmulatorConfig().scale_up


@pytest.mark.parametrize(("data", "where"), [
    ({"apps": []}, "apps"),
    ({"apps": [{"name": "Bad_Name", "hosts": ["a"]}]}, "apps[0].name"),
    ({"apps": [{"name": "a"}]}, "apps[0].hosts"),
    ({"apps": [{"name": "a", "hosts": ["a"], "command": ["server"]}]}, "apps[0].command"),
    ({"apps": [{"name": "a", "hosts": ["a"], "targetConcurrency": 0}]}, "apps[0].targetConcurrency"),
    ({"apps": [{"name": "a", "hosts": ["a"], "targetConcurrency": "ten"}]}, "apps[0].targetConcurrency"),
    ({"apps": [{"name": "a", "hosts": ["a"], "minReplicas": 3, "maxReplicas": 2}]}, "apps[0].maxReplicas"),
    ({"apps": [{"name": "a", "hosts": ["a"], "pathPrefixes": ["api"]}]}, "apps[0].pathPrefixes"),
    ({"apps": [{"name": "a", "hosts": ["a"], "replicas": 2}]}, "apps[0].replicas"),
    ({"apps": [{"name": "a", "hosts": ["a"]}, {"name": "a", "hosts": ["b"]}]}, "apps[1].name"),
    ({"apps": [{"name": "a", "hosts": ["a"]}], "keda": {"pollingInterval": 0}}, "keda.pollingInterval"),
    ({"apps": [{"name": "a", "hosts": ["a"]}], "hpa": {"scaleUp": {"selectPolicy": "Most"}}}, "hpa.scaleUp"),
    ({"apps": [{"name": "a", "hosts": ["a"]}],
      "hpa": {"scaleUp": {"policies": [{"type": "Nodes", "value": 1, "periodSeconds": 15}]}}}, "hpa.scaleUp.policies[0]"),
])
def test_mistakes_name_their_key(data: object, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(data, "dev.yaml")
    assert f"dev.yaml: {where}" in str(caught.value)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("apps: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(str(bad))
