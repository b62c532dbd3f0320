"""The live page's model: states from samples, cold starts with their wait, rows that change only when seen."""

from typing import Any

from kedahttp.proxy.livestate import COLD, WAKING, WARM, LiveModel, Sample, Samples

WAITS: dict[str, tuple[int, float]] = {}  # what the proxy's cold-wait counters say, per app


def sample(key: str = "ns/a", ready: int = 0, in_flight: int = 0, held: int = 0, started: int = 0,
           waits: int = 0, wait_sum: float = 0.0) -> Sample:
    WAITS[key] = (waits, wait_sum)
    return (key, ready, in_flight, held, started)


def new_model(**kw: Any) -> LiveModel:
    return LiveModel(cold_waits=lambda key: WAITS.get(key, (0, 0.0)), **kw)


def state(model: LiveModel, key: str = "ns/a") -> str:
    row = model.row(key)
    assert row is not None
    return str(row[1])


def test_cold_then_waking_then_warm_records_the_mean_held_wait() -> None:
    model = new_model()
    model.update(Samples.of([sample()]), 100.0)
    assert state(model) == COLD
    model.update(Samples.of([sample(held=2, started=2)]), 100.25)
    assert state(model) == WAKING
    model.update(Samples.of([sample(held=2, started=2)]), 100.5)
    assert state(model) == WAKING
    model.update(Samples.of([sample(ready=1, in_flight=2, started=2, waits=2, wait_sum=3.0)]), 101.75)
    assert state(model) == WARM
    assert [(c.key, c.wait_seconds) for c in model.cold_starts] == [("ns/a", 1.5)]
    assert model.summary()["counts"] == {COLD: 0, WAKING: 0, WARM: 1}


def test_a_hold_that_times_out_is_a_failed_cold_start() -> None:
    model = new_model()
    model.update(Samples.of([sample(held=1, started=1)]), 10.0)
    model.update(Samples.of([sample(started=1)]), 70.0)
    assert state(model) == COLD
    assert model.cold_starts[0].wait_seconds is None


def test_idle_rows_carry_times_not_ages_so_they_stay_unchanged() -> None:
    model = new_model(scale_down_after=lambda key: 25.0)
    model.update(Samples.of([sample(ready=1)]), 49.75)  # counts before the first sample are not requests it saw
    model.update(Samples.of([sample(ready=1, started=1)]), 50.0)
    row = model.row("ns/a")
    assert row is not None and row[6] == 50_000 and row[7] == 75_000  # last request, scale-down at
    version = model.version
    rates = []
    for t in (50.25, 50.5, 60.0):
        model.update(Samples.of([sample(ready=1, started=1)]), t)
        rates.append(model.row("ns/a")[5])  # type: ignore[index]
    assert row[5] > rates[1] > rates[2] == 0.0 and row[5] >= rates[0] >= rates[1]  # decays between requests, to 0
    assert model.row("ns/a")[6:] == row[6:]  # type: ignore[index]
    assert model.version > version  # only because the rate decayed to zero
    model.update(Samples.of([sample(ready=1, started=1)]), 61.0)
    settled = model.version
    model.update(Samples.of([sample(ready=1, started=1)]), 62.0)
    assert model.version == settled


def test_apps_keep_their_state_when_the_set_of_apps_changes_around_them() -> None:
    model = new_model()
    model.update(Samples.of([sample("ns/a", ready=1), sample("ns/b", held=1, started=1), sample("ns/c")]), 1.0)
    assert model.summary()["counts"] == {COLD: 1, WAKING: 1, WARM: 1}
    # the same figures in another order, one app gone and another come: as many apps as before
    model.update(Samples.of([sample("ns/d", ready=1), sample("ns/c"), sample("ns/a", ready=1)]), 1.25)
    assert model.summary()["counts"] == {COLD: 1, WAKING: 0, WARM: 2}
    assert model.keys == ["ns/a", "ns/c", "ns/d"] and model.row("ns/b") is None
    assert [state(model, key) for key in model.keys] == [WARM, COLD, WARM]
    model.update(Samples.of([sample("ns/d", ready=1), sample("ns/c", held=1, started=1), sample("ns/a", ready=1)]),
                 1.5)
    assert state(model, "ns/c") == WAKING and model.summary()["counts"] == {COLD: 0, WAKING: 1, WARM: 2}


def test_request_rate_follows_the_started_counter() -> None:
    model = new_model()
    started = 0
    for i in range(40):
        started += 25  # 100 per second at 0.25 s ticks
        model.update(Samples.of([sample(ready=1, started=started)]), 1.0 + i * 0.25)
    assert 90 <= model.row("ns/a")[5] <= 101  # type: ignore[index]


def test_search_and_paging_over_ten_thousand_apps() -> None:
    model = new_model()
    model.update(Samples.of([sample(f"ns{i % 10}/app-{i:05d}") for i in range(10_000)]), 1.0)
    keys, total = model.page("", 100, 50)
    assert total == 10_000 and len(keys) == 50 and keys == sorted(keys)
    keys, total = model.page("APP-0004", 0, 50)
    assert total == 10 and all("app-0004" in k for k in keys)
    model.update(Samples.of([sample(f"ns{i % 10}/app-{i:05d}") for i in range(9_999)]), 2.0)
    assert len(model.keys) == 9_999  # a removed app leaves the page


def test_the_supervisor_samples_summed_worker_snapshots() -> None:
    from kedahttp.proxy.live import SnapshotSampler
    from kedahttp.proxy.routing import RouteTable
    from kedahttp.proxy.sources import Backend

    routes = RouteTable()
    routes.replace_backends([Backend("ns/a", ("a.test",)), Backend("ns/b", ("b.test",))])
    routes.set_endpoints("ns/a", ["127.0.0.1:1"])
    snapshot = {"backends": {"ns/a": {"in_flight": 2, "held": 0, "started": 7, "cold_wait_buckets": [1, 2],
                                      "cold_wait_sum": 4.5}}}
    calls = []
    sampler = SnapshotSampler(routes, lambda: calls.append(1) or snapshot)
    s = sampler.sample()
    assert sorted(zip(s.keys, s.ready, s.in_flight, s.held, s.started, strict=True)) == [
        ("ns/a", 1, 2, 0, 7), ("ns/b", 0, 0, 0, 0)]
    assert sampler.cold_waits("ns/a") == (3, 4.5) and sampler.cold_waits("ns/b") == (0, 0.0)
    assert len(calls) == 1  # one summed snapshot per tick, however many transitions read it
