"""Child processes for the local runtime, started without fork() and awaited without a thread or a watcher.

``subprocess.Popen`` starts a child with vfork/exec, so nothing runs in a copy of this process: with
gRPC streams and the proxy's sockets live in it, a plain fork() (as an event loop's own subprocess
support may do) runs gRPC's fork handlers and prints their complaints on every scale-up. The exit is
awaited through a pidfd registered with the event loop (Linux 5.3+), or by polling elsewhere; no child
watcher, no thread blocked in waitpid per replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import IO

POLL_SECONDS = 0.1


class ChildProcess:
    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._fd = -1
        self._poll_handle: asyncio.TimerHandle | None = None
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            with contextlib.suppress(OSError):
                self._fd = pidfd_open(self.pid)
        if self._fd >= 0:
            self._loop.add_reader(self._fd, self._on_exit)
        else:
            self._poll()

    @classmethod
    async def start(cls, argv: Sequence[str], env: Mapping[str, str], output: IO[bytes]) -> ChildProcess:
        """Starts ``argv`` in its own session (a Ctrl-C on the terminal reaches only its parent)."""
        popen = await asyncio.to_thread(
            subprocess.Popen, list(argv), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            env=dict(env), start_new_session=True, close_fds=True,
        )
        return cls(popen)

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    def send_signal(self, signum: int) -> None:
        if not self._exited.done():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        """The exit code, once the child has exited (and been reaped); any number of callers may wait."""
        return await asyncio.shield(self._exited)

    def _on_exit(self) -> None:
        self._release()
        self._finish(self.popen.wait())  # the pidfd is readable: it has exited, this reaps at once

    def _poll(self) -> None:
        code = self.popen.poll()
        if code is None:
            self._poll_handle = self._loop.call_later(POLL_SECONDS, self._poll)
        else:
            self._finish(code)

    def _finish(self, code: int) -> None:
        if not self._exited.done():
            self._exited.set_result(code)

    def _release(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        if self._poll_handle is not None:
            self._poll_handle.cancel()
            self._poll_handle = None

    def close(self) -> None:
        """Stops watching (the process itself is left alone; stop it first)."""
        self._release()
