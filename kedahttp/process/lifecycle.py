"""The life of a kedahttp process on one screen: start, serve, staged shutdown.

Shutdown on SIGTERM/SIGINT: mark not ready, keep serving for ``shutdown_delay`` so load balancers and
endpoints move away, stop accepting, drain in-flight work until a deadline, then close components in
reverse start order. Signals only set a flag; a second signal forces exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

log = logging.getLogger("kedahttp.lifecycle")


class Component(Protocol):
    """A part of a process with a staged shutdown. Every method but start may be a no-op."""

    name: str

    async def start(self) -> None: ...  # bind, connect; raise to abort start-up

    def mark_not_ready(self) -> None: ...  # readiness probes start failing

    async def stop_accepting(self) -> None: ...  # close listeners, stop taking new work

    async def drain(self, deadline: float) -> None: ...  # wait for in-flight work until loop.time() >= deadline

    async def close(self) -> None: ...  # cancel leftovers, close clients


class BaseComponent:
    name = "component"

    async def start(self) -> None:
        pass

    def mark_not_ready(self) -> None:
        pass

    async def stop_accepting(self) -> None:
        pass

    async def drain(self, deadline: float) -> None:
        pass

    async def close(self) -> None:
        pass


class Lifecycle:
    def __init__(
        self,
        components: Sequence[Component],
        shutdown_delay_seconds: float = 0.0,
        drain_timeout_seconds: float = 25.0,
    ) -> None:
        self.components = list(components)
        self.shutdown_delay_seconds = shutdown_delay_seconds
        self.drain_timeout_seconds = drain_timeout_seconds
        self.stopping = asyncio.Event()
        self._signals = 0

    def request_stop(self) -> None:
        self.stopping.set()

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting now", extra={"signal": signum})
            sys.stderr.flush()
            os._exit(1)
        log.info("signal received: shutting down", extra={"signal": signum})
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)

    async def run(self, install_signals: bool = True) -> None:
        if install_signals:
            self.install_signal_handlers()
        started: list[Component] = []
        try:
            for component in self.components:
                await component.start()
                started.append(component)
                log.debug("started", extra={"component": component.name})
            log.info("serving", extra={"components": [c.name for c in started]})
            await self.stopping.wait()
            await self._shutdown(started)
        finally:
            for component in reversed(started):
                try:
                    await component.close()
                except Exception:
                    log.exception("close failed", extra={"component": component.name})

    async def _shutdown(self, started: Sequence[Component]) -> None:
        began = time.monotonic()
        for component in started:
            component.mark_not_ready()
        if self.shutdown_delay_seconds > 0:
            await asyncio.sleep(self.shutdown_delay_seconds)
        for component in started:
            await component.stop_accepting()
        deadline = asyncio.get_running_loop().time() + self.drain_timeout_seconds
        await asyncio.gather(*(c.drain(deadline) for c in started), return_exceptions=True)
        log.info("drained", extra={"seconds": round(time.monotonic() - began, 3)})


def run(main: Coroutine[Any, Any, T]) -> T:
    """Runs ``main`` on uvloop where available, the standard loop otherwise (the code runs on both)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
