"""The ``kedahttp`` command: one console script, a subcommand per process, plus the admin API client.

Each process subcommand takes exactly the settings its row in the settings table names
(kedahttp.process.settings), as flags with their type and the process's real default in --help, each
also read from ``KEDAHTTP_<NAME>``. Settings are parsed once, here. This is also the edge where a
process's failures become exit codes, in one place: 0 done, 1 failed at run time (a port in use, the
bus or the cluster unreachable), 2 bad configuration or usage (a setting, the routes file, the dev
config, no cluster configuration). Each failure is one line in the configured log format, naming the
setting or file, with no traceback and no secret.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import click

from kedahttp import __version__
from kedahttp.cli.apps import apps
from kedahttp.lab.command import lab
from kedahttp.process import logs, secrets
from kedahttp.process import settings as settings_mod
from kedahttp.process.settings import ConfigurationError, SettingError, Settings, Spec

log = logging.getLogger("kedahttp")

EXIT_FAILED = 1
EXIT_CONFIGURATION = 2


def _option_help(spec: Spec, process: str) -> str:
    default = settings_mod.default_for(spec, process) or "none"
    if spec.secret:
        default = "none"
    return f"{spec.help} [env {settings_mod.env_name(spec.name)}; default: {default}]"


def setting_options(process: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Adds one ``--flag`` per setting ``process`` takes, and --print-settings. Values stay raw strings
    here: ``load`` parses flags and environment together, so both give the same message for a bad value."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.option("--print-settings", "print_settings", is_flag=True,
                            help="print the settings this command would run with (secrets masked) as JSON, "
                                 "and exit")(func)
        for spec in reversed(settings_mod.specs_for(process)):
            flag = f"--{settings_mod.flag_name(spec.name)}"
            if settings_mod.metavar(spec) == "BOOLEAN":
                option = click.option(flag, spec.name, is_flag=True, flag_value="true", default=None,
                                      help=_option_help(spec, process))
            else:
                option = click.option(flag, spec.name, default=None, metavar=settings_mod.metavar(spec),
                                      help=_option_help(spec, process))
            func = option(func)
        return func

    return decorate


def _early_format(flags: Mapping[str, str | None], process: str) -> str:
    """The log format to report in before the settings are known to parse: the asked one if it is valid."""
    raw = flags.get("log_format") or os.environ.get(settings_mod.env_name("log_format"))
    try:
        return str(settings_mod.SPEC_BY_NAME["log_format"].parse(raw or ""))
    except ValueError:
        return settings_mod.default_for(settings_mod.SPEC_BY_NAME["log_format"], process)


def _raw_secrets(flags: Mapping[str, str | None]) -> tuple[str, ...]:
    """Secrets in the raw flags and environment, masked even when the settings do not parse."""
    found: list[str] = []
    for spec in settings_mod.SPECS:
        for raw in (flags.get(spec.name), os.environ.get(settings_mod.env_name(spec.name))):
            if raw:
                found += [raw] if spec.secret else secrets.url_secrets(raw)
    return secrets.scrub_list(found)


def _exit(code: int, message: str, **fields: Any) -> NoReturn:
    log.error(message, extra=fields)
    logging.shutdown()
    sys.exit(code)


def start(process: str, flags: dict[str, Any], run: Callable[[Settings], int | None]) -> NoReturn:
    """Loads the settings of ``process``, reports unknown variables, runs it, and maps its end to an exit code."""
    print_settings = bool(flags.pop("print_settings", False))
    logs.configure(_early_format(flags, process), "info", _raw_secrets(flags))
    try:
        settings = settings_mod.load(flags, component=process)
    except SettingError as exc:
        _exit(EXIT_CONFIGURATION, f"bad setting {exc}", setting=settings_mod.env_name(exc.name),
              flag=f"--{settings_mod.flag_name(exc.name)}", reason=exc.reason)
    logs.configure(settings.log_format, settings.log_level, settings.secret_values())
    unknown = settings_mod.unknown_variables()
    for variable in unknown:
        fields = {"variable": variable.name, "suggestion": variable.suggestion}
        if settings.strict:
            _exit(EXIT_CONFIGURATION, f"{variable} (KEDAHTTP_STRICT is on)", **fields)
        log.warning(str(variable), extra=fields)
    if print_settings:
        click.echo(json.dumps(settings.redacted(), indent=2))
        sys.exit(0)
    try:
        code = run(settings)
    except ConfigurationError as exc:
        fields = {"setting": settings_mod.env_name(exc.name)} if isinstance(exc, SettingError) else {}
        _exit(EXIT_CONFIGURATION, f"kedahttp {process}: bad configuration: {exc}", **fields)
    except (OSError, SystemExit) as exc:
        if isinstance(exc, SystemExit) and not isinstance(exc.code, str):
            raise
        _exit(EXIT_FAILED, f"kedahttp {process} failed: {exc.code if isinstance(exc, SystemExit) else exc}")
    except Exception as exc:  # the last edge: one line, the traceback only at debug level
        log.debug("failure", exc_info=True)
        _exit(EXIT_FAILED, f"kedahttp {process} failed: {type(exc).__name__}: {exc}")
    logging.shutdown()
    sys.exit(code or 0)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="kedahttp")
def cli() -> None:
    """kedahttp: HTTP scale-to-zero for Kubernetes with KEDA."""


@cli.command()
@setting_options("proxy")
def proxy(**flags: Any) -> None:
    """Run the data path, the admin API and Prometheus metrics."""
    from kedahttp.proxy.main import main as run_proxy  # here, so `kedahttp apps` starts without the data path

    start("proxy", flags, run_proxy)


@cli.command()
@setting_options("scaler")
def scaler(**flags: Any) -> None:
    """Run the KEDA external scaler (gRPC) and Prometheus metrics."""
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # gRPC's own error lines are not in our format; we log ours
    from kedahttp.scaler.main import main as run_scaler

    start("scaler", flags, run_scaler)


@cli.command()
@setting_options("dev")
@click.option("--config", "config_path", default=None, metavar="FILE",
              help="dev config (apps to run) [default: the bundled sample]")
@click.option("--view/--no-view", default=None, help="live terminal view [default: on when stdout is a terminal]")
def dev(config_path: str | None, view: bool | None, **flags: Any) -> None:
    """Run proxy, scaler, a local app runtime and a KEDA emulator on this machine."""
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from kedahttp.dev.main import main as run_dev

    start("dev", flags, lambda settings: run_dev(settings, config_path, view))


cli.add_command(apps)
cli.add_command(lab)


def main() -> None:
    cli(prog_name="kedahttp")


if __name__ == "__main__":
    main()
