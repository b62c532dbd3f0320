"""The ``kedahttp`` command: one console script, a subcommand per process, plus the admin API client.

Each process subcommand takes exactly the settings it uses, as flags generated from the settings table
(kedahttp.process.settings), each also read from ``KEDAHTTP_<NAME>``. Settings are parsed once, here;
a bad value exits 2 with a message naming the setting. Exit codes: 0 done, 1 failed, 2 usage error.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from kedahttp import __version__
from kedahttp.process import settings as settings_mod
from kedahttp.process.settings import SPEC_BY_NAME, SettingError, Settings

COMMON = ("bus", "metrics_addr", "log_format", "log_level")
PROXY = (
    *COMMON, "proxy_addr", "admin_addr", "routes", "cold_start_timeout_seconds",
    "max_held_requests", "report_interval_seconds", "workers", "watch_namespace",
    "shutdown_delay_seconds", "drain_timeout_seconds",
)
SCALER = (
    *COMMON, "scaler_addr", "concurrency_window_seconds", "shutdown_delay_seconds", "drain_timeout_seconds",
    "scaler_tls_cert_file", "scaler_tls_key_file", "scaler_tls_client_ca_file",  # issue 14
)
CONTROLLER = (  # issue 14
    "admin_addr", "admin_token", "watch_namespace", "scaler_address", "controller_namespace",
    "lease_duration_seconds", "log_format", "log_level", "shutdown_delay_seconds", "drain_timeout_seconds",
    "scaler_trigger_authentication",
)
DEV = (
    "bus", "proxy_addr", "admin_addr", "metrics_addr", "scaler_addr", "log_format", "log_level",
    "cold_start_timeout_seconds", "max_held_requests", "report_interval_seconds",
    "concurrency_window_seconds",
)


def setting_options(names: tuple[str, ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Adds one ``--flag`` per setting. Values stay raw strings here; ``load`` parses them all at once."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            spec = SPEC_BY_NAME[name]
            func = click.option(
                f"--{settings_mod.flag_name(name)}",
                name,
                default=None,
                metavar="TEXT",
                help=f"{spec.help} [env {settings_mod.env_name(name)}; default {spec.default or 'none'}]",
            )(func)
        return func

    return decorate


def load_settings(flags: dict[str, str | None], component: str) -> Settings:
    try:
        return settings_mod.load(flags, component=component)
    except SettingError as exc:
        raise click.UsageError(f"bad setting {exc}") from exc


def run_entry(target: str, *args: Any) -> None:
    """Imports ``module:function`` and runs it; a part that is not built yet says so and exits 2."""
    module_name, _, func_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        func = getattr(module, func_name)
    except (ImportError, AttributeError) as exc:
        click.echo(f"kedahttp: {target} is not built yet ({exc})", err=True)
        sys.exit(2)
    code = func(*args)
    sys.exit(code or 0)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="kedahttp")
def cli() -> None:
    """kedahttp: HTTP scale-to-zero for Kubernetes with KEDA."""


@cli.command()
@setting_options(PROXY)
def proxy(**flags: str | None) -> None:
    """Run the data path, the admin API and Prometheus metrics."""
    run_entry("kedahttp.proxy.main:main", load_settings(flags, "proxy"))


@cli.command()
@setting_options(SCALER)
def scaler(**flags: str | None) -> None:
    """Run the KEDA external scaler (gRPC) and Prometheus metrics."""
    run_entry("kedahttp.scaler.main:main", load_settings(flags, "scaler"))


@cli.command()
@setting_options(CONTROLLER)
def controller(**flags: str | None) -> None:
    """Run the HTTPApp controller (one leader among replicas) and the apps admin API."""
    from kedahttp.kube.controller_main import main as controller_main

    sys.exit(controller_main(load_settings(flags, "controller")) or 0)


@cli.command(context_settings={"ignore_unknown_options": False})
@setting_options(DEV)
@click.option("--config", "config_path", default=None, help="dev config (apps to run); default: the bundled sample")
@click.option("--view/--no-view", default=None, help="live terminal view (default: on when stdout is a TTY)")
def dev(config_path: str | None, view: bool | None, **flags: str | None) -> None:
    """Run proxy, scaler, a local app runtime and a KEDA emulator on this machine."""
    if flags.get("bus") is None and not _env_has("bus"):
        flags["bus"] = "memory://dev"
    if flags.get("log_format") is None and not _env_has("log_format"):
        flags["log_format"] = "text"
    run_entry("kedahttp.dev.main:main", load_settings(flags, "dev"), config_path, view)


def _env_has(name: str) -> bool:
    return settings_mod.env_name(name) in os.environ


def _add_apps_group() -> None:
    try:
        from kedahttp.cli.apps import apps
    except ImportError:

        @cli.group()
        def apps() -> None:
            """Create, list, get and delete apps through the admin API (not built yet)."""
            click.echo("kedahttp apps: not built yet", err=True)
            sys.exit(2)

        return
    cli.add_command(apps)


_add_apps_group()


def main() -> None:
    cli(prog_name="kedahttp")


if __name__ == "__main__":
    main()
