"""The console script as an operator meets it: exit codes and messages (run as a real subprocess)."""

import subprocess
import sys


def kedahttp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KEDAHTTP_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "kedahttp", *args], capture_output=True, text=True, timeout=60, env=full_env
    )


def test_help_lists_the_commands() -> None:
    out = kedahttp("--help")
    assert out.returncode == 0
    for command in ("proxy", "scaler", "dev", "apps"):
        assert command in out.stdout


def test_bad_setting_from_flag_exits_2_naming_it() -> None:
    out = kedahttp("proxy", "--max-held-requests", "lots")
    assert out.returncode == 2
    assert "KEDAHTTP_MAX_HELD_REQUESTS" in out.stderr and "--max-held-requests" in out.stderr
    assert out.stdout == ""


def test_bad_setting_from_env_exits_2_naming_it() -> None:
    out = kedahttp("scaler", env={"KEDAHTTP_BUS": "kafka://broker"})
    assert out.returncode == 2
    assert "KEDAHTTP_BUS" in out.stderr


def test_unknown_flag_is_a_usage_error() -> None:
    assert kedahttp("proxy", "--no-such-flag").returncode == 2


def test_proxy_refuses_an_open_admin_api_without_a_token() -> None:
    out = kedahttp("proxy", "--routes", "/nonexistent.yaml", "--admin-addr", "0.0.0.0:18081")
    assert out.returncode == 2
    assert "KEDAHTTP_ADMIN_TOKEN" in out.stderr and "KEDAHTTP_ADMIN_ADDR" in out.stderr


def test_proxy_without_cluster_config_exits_2_with_the_reason() -> None:
    out = kedahttp(
        "proxy", "--admin-addr", "127.0.0.1:0", "--proxy-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
        env={"KUBECONFIG": "/nonexistent/kubeconfig"},
    )
    assert out.returncode == 2  # configuration, not a run-time failure
    assert "no Kubernetes configuration" in out.stderr and "/nonexistent/kubeconfig" in out.stderr
