import pytest

from kedahttp.process import settings
from kedahttp.process.settings import Address, SettingError, load, parse_address


def test_defaults_match_the_contract() -> None:
    s = load({}, environ={})
    assert s.bus == "redis://127.0.0.1:6379/0"
    assert s.proxy_addr == Address("0.0.0.0", 8080)
    assert s.admin_addr == Address("0.0.0.0", 8081)
    assert s.metrics_addr == Address("0.0.0.0", 9102)
    assert s.scaler_addr == Address("0.0.0.0", 9090)
    assert s.routes == "kubernetes"
    assert s.admin_token is None
    assert s.cold_start_timeout_seconds == 60
    assert s.max_held_requests == 1000
    assert s.report_interval_seconds == 0.25
    assert s.workers == 1
    assert (s.log_format, s.log_level) == ("json", "info")


def test_scaler_metrics_default_differs() -> None:
    assert load({}, environ={}, component="scaler").metrics_addr == Address("0.0.0.0", 9103)


def test_flag_wins_over_environment() -> None:
    env = {"KEDAHTTP_WORKERS": "3", "KEDAHTTP_LOG_FORMAT": "text"}
    s = load({"workers": "5"}, environ=env)
    assert s.workers == 5
    assert s.log_format == "text"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("cold_start_timeout_seconds", "abc", "expected a number"),
        ("cold_start_timeout_seconds", "0", "greater than 0"),
        ("cold_start_timeout_seconds", "nan", "greater than 0"),
        ("max_held_requests", "1.5", "whole number"),
        ("workers", "0", "at least 1"),
        ("bus", "kafka://x", "scheme must be one of"),
        ("proxy_addr", "8080", "host:port"),
        ("proxy_addr", "host:99999", "0-65535"),
        ("log_format", "xml", "one of json, text"),
        ("trusted_proxies", "10.0.0.0/8,ingress", "'ingress' is not an IP address or CIDR network"),
        ("upstream_idle_timeout_seconds", "0", "greater than 0"),
        ("upstream_total_timeout_seconds", "-1", "at least 0"),
        ("cold_start_placeholder", "spinner", "one of hold, page"),
        ("access_log_sample_rate", "1.5", "from 0 to 1"),
        ("h2_stream_window_bytes", "1000", "65535-2147483647"),
        ("h2_connection_window_bytes", "2147483648", "65535-2147483647"),
        ("h2_resets_per_second", "0", "at least 1"),
    ],
)
def test_bad_value_names_the_setting(name: str, value: str, reason: str) -> None:
    with pytest.raises(SettingError) as info:
        load({}, environ={settings.env_name(name): value})
    message = str(info.value)
    assert settings.env_name(name) in message
    assert "--" + settings.flag_name(name) in message
    assert reason in message


@pytest.mark.parametrize(
    ("text", "host", "port", "loopback"),
    [
        ("0.0.0.0:8080", "0.0.0.0", 8080, False),
        ("127.0.0.1:1", "127.0.0.1", 1, True),
        ("[::1]:9090", "::1", 9090, True),
        ("localhost:80", "localhost", 80, True),
        ("example.com:443", "example.com", 443, False),
    ],
)
def test_addresses(text: str, host: str, port: int, loopback: bool) -> None:
    addr = parse_address(text)
    assert (addr.host, addr.port, addr.is_loopback) == (host, port, loopback)
    assert parse_address(str(addr)) == addr


def test_redacted_hides_the_token() -> None:
    s = load({"admin_token": "sekrit"}, environ={})
    assert s.admin_token == "sekrit"
    assert "sekrit" not in str(s.redacted())


def test_settings_are_frozen() -> None:
    s = load({}, environ={})
    with pytest.raises(AttributeError):
        s.workers = 2  # type: ignore[misc]


def test_dev_listens_on_loopback_only_by_default() -> None:
    s = load({}, environ={}, component="dev")
    assert all(a.is_loopback for a in (s.proxy_addr, s.admin_addr, s.metrics_addr, s.scaler_addr))
    assert load({"proxy_addr": "0.0.0.0:8080"}, environ={}, component="dev").proxy_addr.host == "0.0.0.0"


def test_the_bus_schemes_are_those_the_transports_are_keyed_by() -> None:
    from kedahttp.activity import bus

    assert set(settings.BUS_SCHEMES) == set(bus.BUS_SCHEMES)


def test_each_process_loads_only_its_own_settings_from_the_environment() -> None:
    env = {"KEDAHTTP_SCALER_ADDR": "127.0.0.1:1", "KEDAHTTP_WORKERS": "4"}
    proxy = load({}, environ=env, component="proxy")
    assert proxy.workers == 4 and proxy.scaler_addr == Address("0.0.0.0", 9090)  # not the proxy's: default
    scaler = load({}, environ=env, component="scaler")
    assert scaler.scaler_addr == Address("127.0.0.1", 1) and scaler.workers == 1
    assert "workers" not in scaler.redacted() and "routes" not in scaler.redacted()
    assert set(scaler.redacted()) == {spec.name for spec in settings.specs_for("scaler")}


def test_dev_defaults_are_local() -> None:
    dev = load({}, environ={}, component="dev")
    assert dev.bus == "memory://dev" and dev.log_format == "text"
    assert {dev.proxy_addr.host, dev.admin_addr.host, dev.metrics_addr.host, dev.scaler_addr.host} == {"127.0.0.1"}


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("redis://:hunter2@redis.example:6379/0", "hunter2"),
        ("rediss://default:s3cr%40t@redis.example:6380/0", "s3cr@t"),
        ("nats://alice:opensesame@nats-1:4222,nats://alice:opensesame@nats-2:4222", "opensesame"),
        ("nats://tokentokentoken@nats:4222", "tokentokentoken"),
    ],
)
def test_bus_credentials_are_masked_in_the_dump_and_known_as_secrets(url: str, password: str) -> None:
    s = load({"bus": url}, environ={}, component="scaler")
    assert s.bus == url  # the transport gets the real URL
    dump = str(s.redacted())
    assert password not in dump and password.replace("@", "%40") not in dump
    assert ("***@" in dump and "nats" in dump) or "redis" in dump
    assert password in s.secret_values()


def test_a_bad_secret_is_not_repeated_in_the_error() -> None:
    with pytest.raises(SettingError) as info:
        load({"bus": "kafka://user:hunter2@broker"}, environ={})
    assert "hunter2" not in str(info.value) and "KEDAHTTP_BUS" in str(info.value)


def test_unknown_variables_name_the_closest_setting() -> None:
    env = {"KEDAHTTP_PROXY_ADRR": "x", "KEDAHTTP_BUS": "memory://", "KEDAHTTP_SERVER": "http://h",
           "KEDAHTTP_QQQQ": "1", "PATH": "/bin", "KEDAHTTP_SCALER_SERVICE_HOST": "10.0.0.1"}
    found = {u.name: u.suggestion for u in settings.unknown_variables(env)}
    assert found == {"KEDAHTTP_PROXY_ADRR": "KEDAHTTP_PROXY_ADDR", "KEDAHTTP_QQQQ": ""}


def test_every_row_names_real_processes_and_its_defaults_parse() -> None:
    for spec in settings.SPECS:
        assert spec.processes and set(spec.processes) <= set(settings.PROCESSES), spec.name
        assert set(spec.defaults) <= set(spec.processes), spec.name
        for process in spec.processes:
            spec.parse(settings.default_for(spec, process))


def test_data_path_defaults_trust_nobody_and_log_no_requests() -> None:
    s = load({}, environ={})
    assert s.trusted_proxies == () and s.access_log_sample_rate == 0 and s.cold_start_placeholder == "hold"
    assert (s.upstream_connect_timeout_seconds, s.upstream_response_header_timeout_seconds,
            s.upstream_idle_timeout_seconds, s.upstream_total_timeout_seconds, s.tunnel_idle_timeout_seconds) == (
        5, 60, 60, 0, 600)
    nets = load({"trusted_proxies": "10.0.0.0/8 fd00::/8"}, environ={}).trusted_proxies
    assert [str(n) for n in nets] == ["10.0.0.0/8", "fd00::/8"]
