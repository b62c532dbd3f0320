"""Trigger metadata, metric names and values: the scaler's pure core."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kedahttp.activity.aggregate import BackendMetrics
from kedahttp.scaler.metrics import (
    CONCURRENCY,
    REQUEST_RATE,
    InvalidArgument,
    Trigger,
    TriggerCache,
    clean,
    int_target,
    int_value,
    metric_key,
    parse_trigger,
)


def test_defaults_concurrency_100_on_the_scaled_objects_backend() -> None:
    trigger = parse_trigger("shop", "cart", {"scalerAddress": "scaler:9090"})
    assert trigger == Trigger("shop/cart", ((CONCURRENCY, 100.0),), 60, 60)


def test_request_rate_alone_and_both() -> None:
    assert parse_trigger("ns", "a", {"targetRequestRate": "50"}).targets == ((REQUEST_RATE, 50.0),)
    both = parse_trigger("ns", "a", {"targetConcurrency": "10", "targetRequestRate": "2.5"})
    assert both.targets == ((CONCURRENCY, 10.0), (REQUEST_RATE, 2.5))


def test_explicit_backend_and_windows() -> None:
    trigger = parse_trigger("ns", "so-name", {"backend": "other/app", "rateWindowSeconds": "120",
                                              "activityWindowSeconds": "600"})
    assert (trigger.backend, trigger.rate_window_seconds, trigger.activity_window_seconds) == ("other/app", 120, 600)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("targetConcurrency", "abc"),
        ("targetConcurrency", "0"),
        ("targetConcurrency", "-3"),
        ("targetConcurrency", "nan"),
        ("targetConcurrency", "inf"),
        ("targetConcurrency", ""),
        ("targetRequestRate", "fast"),
        ("targetRequestRate", "0"),
        ("backend", "noslash"),
        ("backend", "Default/App"),
        ("backend", "a/b/c"),
        ("backend", "ns/"),
        ("backend", "/app"),
        ("backend", "ns/app_1"),
        ("backend", "ns/" + "a" * 64),
        ("rateWindowSeconds", "0"),
        ("rateWindowSeconds", "601"),
        ("rateWindowSeconds", "1.5"),
        ("rateWindowSeconds", "minute"),
        ("activityWindowSeconds", "0"),
        ("activityWindowSeconds", "3600"),
        ("activityWindowSeconds", "-1"),
    ],
)
def test_bad_metadata_names_the_key(key: str, value: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_trigger("ns", "app", {key: value})
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")
    assert repr(value) in str(info.value)


def test_a_scaled_object_name_that_is_no_backend_name_says_so() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_trigger("ns", "my.app", {})
    assert info.value.key.startswith("backend")
    assert "ns/my.app" in str(info.value)


def test_values_by_name_with_or_without_kedas_prefix() -> None:
    trigger = parse_trigger("ns", "a", {"targetConcurrency": "10", "targetRequestRate": "5"})
    metrics = BackendMetrics(concurrency=3.5, request_rate=7.25, in_flight=1, held=0, last_request_at=1.0, active=True)
    assert trigger.value("concurrency", metrics) == 3.5
    assert trigger.value("requestrate", metrics) == 7.25
    assert trigger.value("s1-requestrate", metrics) == 7.25
    assert trigger.value("", metrics) == 3.5  # the trigger's first metric
    with pytest.raises(InvalidArgument) as info:
        trigger.value("cpu", metrics)
    assert info.value.key == "metricName"
    assert metric_key("s12-concurrency") == "concurrency" and metric_key("concurrency") == "concurrency"


def test_metric_names_are_stable_lowercase_without_slash() -> None:
    for name in (CONCURRENCY, REQUEST_RATE):
        assert name == name.lower() and "/" not in name and name.isascii()
    assert CONCURRENCY != REQUEST_RATE


@given(value=st.floats(0.0, 1e9, allow_nan=False), target=st.integers(1, 10_000))
def test_int_value_gives_the_hpa_the_same_replicas_as_the_float(value: float, target: int) -> None:
    # KEDA before 2.17 reads only the int field; the HPA then computes ceil(value / target).
    assert math.ceil(Fraction(int_value(value), target)) == math.ceil(Fraction(value) / target)


def test_float_noise_around_whole_numbers_is_removed() -> None:
    assert clean(30.000000000004) == 30.0 and clean(29.999999999996) == 30.0
    assert clean(0.0003) == 0.0003 and clean(2.5) == 2.5 and clean(-1e-12) == 0.0 and clean(1e-12) == 1e-12
    assert int_value(clean(30.000000000004)) == 30


def test_int_fields() -> None:
    assert int_value(0.0) == 0 and int_value(0.001) == 1 and int_value(3.0) == 3 and int_value(-1.0) == 0
    assert int_target(100.0) == 100 and int_target(2.5) == 2 and int_target(0.5) == 1


def test_cache_returns_the_same_trigger_and_the_same_error() -> None:
    cache = TriggerCache(max_entries=3)
    a = cache.get("ns", "a", {"targetConcurrency": "5"})
    assert cache.get("ns", "a", {"targetConcurrency": "5"}) is a
    with pytest.raises(InvalidArgument) as first:
        cache.get("ns", "a", {"targetConcurrency": "x"})
    with pytest.raises(InvalidArgument) as second:
        cache.get("ns", "a", {"targetConcurrency": "x"})
    assert first.value is second.value
    for i in range(5):
        cache.get("ns", f"b{i}", {})
    assert len(cache) <= 3


@pytest.mark.parametrize(
    ("key", "closest"),
    [("targetConcurency", "targetConcurrency"), ("TargetConcurrency", "targetConcurrency"),
     ("backends", "backend"), ("activityWindow", "activityWindowSeconds"), ("scalerAdress", "scalerAddress"),
     ("colour", None)],
)
def test_an_unknown_key_is_refused_naming_it_and_the_closest_known_one(key: str, closest: str | None) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_trigger("default", "app", {"targetConcurrency": "5", key: "1"})
    assert caught.value.key == key
    message = str(caught.value)
    assert message.startswith(f"{key}: unknown trigger metadata key")
    if closest:
        assert f"did you mean {closest!r}?" in message
    else:
        assert "did you mean" not in message


def test_kedas_own_keys_are_accepted() -> None:
    metadata = {"scalerAddress": "s:9090", "caCert": "/c", "tlsClientCert": "/t", "tlsClientKey": "/k",
                "unsafeSsl": "false", "tlsCertFile": "/old", "targetConcurrency": "5"}
    assert parse_trigger("default", "app", metadata).targets == (("concurrency", 5.0),)
