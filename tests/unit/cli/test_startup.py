"""What an operator sees when a process starts: --help that tells the truth, each command's own settings,
unknown variables reported, and every start-up failure as one line in the configured log format with
the exit code of its kind (2 configuration, 1 run time). Run as real subprocesses."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kedahttp.process import settings
from tests.harness.servers import free_port

PROCESSES = ("proxy", "scaler", "dev")
OPTION = re.compile(r"^\s+--(?P<flag>[a-z0-9-]+)(?: (?P<metavar>\S+))?(?P<rest>.*)$")


def kedahttp(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KEDAHTTP_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "kedahttp", *args], capture_output=True, text=True, timeout=60,
                          env=full_env, cwd=cwd)


def help_options(process: str) -> dict[str, tuple[str, str]]:
    """flag name -> (metavar, shown default) from ``kedahttp PROCESS --help``, for the setting flags."""
    out = kedahttp(process, "--help")
    assert out.returncode == 0, out.stderr
    entries: list[str] = []  # one option per entry, its wrapped help joined
    for line in out.stdout.splitlines():
        if re.match(r"^\s{2}-", line):
            entries.append(line)
        elif entries and line.startswith(" " * 6):  # click wraps after a hyphen too: no space there
            entries[-1] += ("" if entries[-1].endswith("-") else " ") + line.strip()
    found = {}
    for line in entries:
        match = OPTION.match(line)
        if match and "[env KEDAHTTP_" in line:
            default = re.search(r"default: ([^\]]*)\]", line)
            assert default, f"{process} --help: --{match['flag']} shows no default: {line!r}"
            found[match["flag"]] = (match["metavar"] or "", default.group(1))
    return found


@pytest.mark.parametrize("process", PROCESSES)
def test_every_default_in_help_is_the_one_the_process_runs_with(process: str) -> None:
    shown = help_options(process)
    out = kedahttp(process, "--print-settings")
    assert out.returncode == 0, out.stderr
    used = json.loads(out.stdout)
    # Each command takes exactly its own settings: the flags in --help are the settings it dumps.
    assert {settings.flag_name(name) for name in used} == set(shown)
    for name, value in used.items():
        spec = settings.SPEC_BY_NAME[name]
        _, default = shown[settings.flag_name(name)]
        if default == "none":
            assert value == "", f"{process}: --{settings.flag_name(name)} says none, runs with {value!r}"
        else:
            assert spec.parse(default) == spec.parse(value), (
                f"{process} --help says --{settings.flag_name(name)} defaults to {default}; it runs with {value}")


def test_help_shows_each_kind_of_value_and_the_real_local_defaults() -> None:
    dev = help_options("dev")
    assert dev["bus"] == ("URL", "memory://dev")
    assert dev["proxy-addr"] == ("HOST:PORT", "127.0.0.1:8080")
    assert dev["log-format"][1] == "text"
    assert dev["cold-start-timeout-seconds"][0] == "SECONDS"
    assert dev["max-held-requests"][0] == "INTEGER"
    assert help_options("scaler")["metrics-addr"] == ("HOST:PORT", "0.0.0.0:9103")
    proxy = help_options("proxy")
    assert "scaler-addr" not in proxy and "concurrency-window-seconds" not in proxy
    assert not any(metavar == "TEXT" for metavar, _ in proxy.values())


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_misspelt_variable_is_named_with_the_closest_setting(log_format: str) -> None:
    env = {"KEDAHTTP_PROXY_ADRR": "127.0.0.1:1", "KEDAHTTP_LOG_FORMAT": log_format}
    out = kedahttp("proxy", "--print-settings", env=env)
    assert out.returncode == 0
    [line] = [line for line in out.stderr.splitlines() if "KEDAHTTP_PROXY_ADRR" in line]
    assert "did you mean KEDAHTTP_PROXY_ADDR?" in line
    if log_format == "json":
        assert json.loads(line)["level"] == "warning"
    else:
        assert " WARNING " in line


def test_strict_turns_an_unknown_variable_into_an_error() -> None:
    for how in ({"args": ("--strict",), "env": {}}, {"args": (), "env": {"KEDAHTTP_STRICT": "true"}}):
        out = kedahttp("scaler", "--print-settings", *how["args"], env={"KEDAHTTP_SCALER_ADRESS": "x", **how["env"]})
        assert out.returncode == 2
        assert "KEDAHTTP_SCALER_ADRESS" in out.stderr and "KEDAHTTP_SCALER_ADDRESS" in out.stderr
        assert out.stdout == ""


def test_known_and_service_link_variables_are_not_reported() -> None:
    env = {"KEDAHTTP_SERVER": "http://127.0.0.1:1", "KEDAHTTP_NAMESPACE": "a", "KEDAHTTP_SCALER_ADDR": "0.0.0.0:1",
           "KEDAHTTP_SCALER_SERVICE_HOST": "10.0.0.1", "KEDAHTTP_SCALER_PORT_9090_TCP": "tcp://10.0.0.1:9090"}
    out = kedahttp("proxy", "--print-settings", "--strict", env=env)  # a scaler setting: not the proxy's
    assert out.returncode == 0, out.stderr
    assert "unknown" not in out.stderr


def one_line(stderr: str, log_format: str) -> dict[str, str] | str:
    """The one line the process wrote; parsed when it is JSON."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if ('"level": "error"' in line if log_format == "json" else " ERROR " in line)]
    assert len(errors) == 1, f"expected one error line, got:\n{stderr}"
    assert "Traceback" not in stderr
    if log_format == "json":
        for line in lines:
            json.loads(line)  # every line is JSON, not only the error
        return dict(json.loads(errors[0]))
    return errors[0]


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_bad_setting_is_one_line_in_the_format_asked_naming_it(log_format: str) -> None:
    out = kedahttp("scaler", "--log-format", log_format, "--scaler-addr", "nowhere")
    assert out.returncode == 2
    line = one_line(out.stderr, log_format)
    if isinstance(line, dict):
        assert line["setting"] == "KEDAHTTP_SCALER_ADDR" and line["flag"] == "--scaler-addr"
    else:
        assert "KEDAHTTP_SCALER_ADDR" in line


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_an_unreadable_routes_file_is_configuration_naming_the_file(log_format: str, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("backends: [")
    out = kedahttp("proxy", "--routes", str(routes), "--log-format", log_format, "--admin-addr", "127.0.0.1:0",
                   "--proxy-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
    assert out.returncode == 2
    line = one_line(out.stderr, log_format)
    assert str(routes) in (line["msg"] if isinstance(line, dict) else line)


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_port_in_use_is_a_run_time_failure(log_format: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = kedahttp("scaler", "--log-format", log_format, "--bus", "memory://t", "--scaler-addr",
                       f"127.0.0.1:{port}", "--metrics-addr", f"127.0.0.1:{free_port()}")
    assert out.returncode == 1
    line = one_line(out.stderr, log_format)
    assert str(port) in (line["msg"] if isinstance(line, dict) else line)


def test_dev_config_errors_name_the_file(tmp_path: Path) -> None:
    config = tmp_path / "dev.yaml"
    config.write_text("apps: 3\n")
    out = kedahttp("dev", "--config", str(config), "--log-format", "json", "--no-view")
    assert out.returncode == 2
    assert str(config) in str(one_line(out.stderr, "json")["msg"])


@pytest.mark.parametrize("server", ["notaurl", "ftp://host", "http://host:99999", "http://user:pw@host"])
def test_apps_rejects_a_server_that_is_not_an_http_url(server: str) -> None:
    for args in (("apps", "--server", server, "list"), ("apps", "list", "--server", server)):
        out = kedahttp(*args)
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr and "--server" in out.stderr
    assert "pw" not in kedahttp("apps", "list", "--server", "http://user:pw@host").stderr
