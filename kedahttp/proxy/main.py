"""``kedahttp proxy``: the entry point; runs one proxy process, or a supervisor with WORKERS processes.

The parts are wired in ``assembly.py``, which the worker supervisor (``workers.py``) uses too. Bad
settings, a bad routes file or a missing cluster configuration stop the process at start with the reason
and exit code 2 or 1.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

from kedahttp.process import lifecycle, logs
from kedahttp.process.settings import Settings
from kedahttp.proxy.assembly import build, make_source
from kedahttp.proxy.file_source import load_routes_file
from kedahttp.proxy.workers import run_supervisor

log = logging.getLogger("kedahttp.proxy")


async def serve(settings: Settings, **options: Any) -> None:
    proxy = build(settings, make_source(settings), freeze_gc=True, **options)
    await lifecycle.Lifecycle(
        proxy.components,
        shutdown_delay_seconds=settings.shutdown_delay_seconds,
        drain_timeout_seconds=settings.drain_timeout_seconds,
    ).run()


def main(settings: Settings) -> int:
    """Runs the proxy; a configuration error or a failure to start propagates to the command line
    (kedahttp.cli.main), which logs it in the configured format and exits 2 or 1."""
    logs.configure(settings.log_format, settings.log_level, settings.secret_values())
    log.info("starting proxy", extra={"settings": settings.redacted()})
    if settings.routes != "kubernetes":
        load_routes_file(settings.routes)
    if settings.workers > 1:
        return run_supervisor(settings)
    lifecycle.run(serve(settings))
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    return 0
