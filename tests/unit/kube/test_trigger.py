"""The trigger the admin API writes is the trigger the scaler reads: same keys, same defaults."""

from __future__ import annotations

import pytest

from kedahttp.kube import appspec, trigger
from kedahttp.scaler.metrics import CONCURRENCY, REQUEST_RATE, InvalidArgument, parse_trigger

BODY = {"name": "hello", "namespace": "team-a", "image": "ghcr.io/acme/hello:1.2", "port": 8080,
        "hosts": ["hello.example.com"]}


def written(**changes: object) -> dict[str, str]:
    scaled = appspec.build_scaled_object(appspec.parse_app({**BODY, **changes}), "scaler:9090")
    [written_trigger] = scaled["spec"]["triggers"]
    assert written_trigger["type"] == trigger.TRIGGER_TYPE
    metadata: dict[str, str] = written_trigger["metadata"]
    return metadata


def test_every_key_the_builder_writes_is_a_trigger_key() -> None:
    metadata = written(targetConcurrency=7, targetRequestRate=2.5)
    assert set(metadata) <= set(trigger.KEYS)
    assert metadata[trigger.SCALER_ADDRESS_KEY] == "scaler:9090"


@pytest.mark.parametrize("key", trigger.SCALER_KEYS)
def test_the_scaler_parses_every_scaler_key(key: str) -> None:
    """A bad value under each key is refused naming it: the scaler reads the key, under this spelling."""
    with pytest.raises(InvalidArgument) as caught:
        parse_trigger("team-a", "hello", {key: "not a number/x/y"})
    assert caught.value.key == key


def test_what_the_builder_writes_the_scaler_reads_back() -> None:
    parsed = parse_trigger("team-a", "hello", written(targetConcurrency=7, targetRequestRate=2.5))
    assert parsed.backend == "team-a/hello"
    assert parsed.targets == ((CONCURRENCY, 7.0), (REQUEST_RATE, 2.5))


def test_defaults_agree() -> None:
    """A body without targets gives the scaler's own default, whether it is written out or left out."""
    spec = appspec.parse_app(BODY)
    assert spec.target_concurrency == trigger.DEFAULT_TARGET_CONCURRENCY
    from_builder = parse_trigger("team-a", "hello", written())
    from_nothing = parse_trigger("team-a", "hello", {})
    assert from_builder == from_nothing
    assert from_nothing.targets == ((CONCURRENCY, trigger.DEFAULT_TARGET_CONCURRENCY),)
    assert from_nothing.rate_window_seconds == trigger.DEFAULT_RATE_WINDOW_SECONDS
    assert from_nothing.activity_window_seconds == trigger.DEFAULT_ACTIVITY_WINDOW_SECONDS
