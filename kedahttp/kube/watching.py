"""Lists then watches kinds of objects, in threads, and hands what they see to an asyncio consumer.

The official client blocks, so each watched kind gets a daemon thread that lists once, then follows a
watch from the list's resourceVersion; what it sees crosses to the event loop with
``call_soon_threadsafe``. A watch that drops resumes from the last resourceVersion seen (bookmarks
included), after a jittered backoff when it failed; ``410 Gone`` lists again. The proxy's route source
and the controller both build on ``follow``; neither knows about threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kedahttp.kube.cluster import Cluster, ClusterError, Gone, Kind
from kedahttp.process.backoff import Backoff

log = logging.getLogger("kedahttp.kube.watching")


@dataclass(frozen=True, slots=True)
class Listed:
    kind: Kind
    items: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Changed:
    kind: Kind
    type: str
    object: dict[str, Any]


class Watcher:
    """Lists then watches one kind in a daemon thread, handing ``Listed``/``Changed`` to ``deliver``.

    A dropped or failed watch is opened again from the last resourceVersion seen (bookmarks included),
    after a backoff when it fails; ``Gone`` (410) lists again. ``stop`` ends the thread promptly, even in
    the middle of a blocking read.
    """

    def __init__(
        self,
        cluster: Cluster,
        kind: Kind,
        namespace: str | None,
        label_selector: str,
        deliver: Callable[[Listed | Changed], None],
        watch_timeout_seconds: int = 300,
        retry_min_seconds: float = 0.5,
        retry_max_seconds: float = 15.0,
    ) -> None:
        self.cluster = cluster
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.deliver = deliver
        self.watch_timeout_seconds = watch_timeout_seconds
        self.retry_min_seconds = retry_min_seconds
        self.retry_max_seconds = retry_max_seconds
        self.resource_version = ""
        self._stopped = threading.Event()
        self._stream_lock = threading.Lock()
        self._stream: Any = None
        self._thread = threading.Thread(target=self._run, name=f"kedahttp-watch-{kind.plural}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._stream_lock:
            if self._stream is not None:
                self._stream.close()

    def _run(self) -> None:
        backoff = Backoff(self.retry_min_seconds, self.retry_max_seconds, jitter=(0.8, 1.2))
        where = self.namespace or "all namespaces"
        while not self._stopped.is_set():
            try:
                if not self.resource_version:
                    listed = self.cluster.list(self.kind, self.namespace, self.label_selector)
                    self.resource_version = listed.resource_version
                    self.deliver(Listed(self.kind, listed.items))
                began = time.monotonic()
                if self._watch_once() or time.monotonic() - began > 1.0:
                    backoff.reset()
                else:  # ended at once with nothing: do not spin against a server that does that
                    self._stopped.wait(backoff.next_delay(jitter=False))
            except Gone:
                log.info("watch expired: listing again", extra={"kind": self.kind.plural, "namespace": where})
                self.resource_version = ""
            except ClusterError as exc:
                if self._stopped.is_set():
                    break
                log.warning(
                    "watch failed: retrying",
                    extra={"kind": self.kind.plural, "namespace": where, "error": str(exc),
                           "retry_seconds": round(backoff.delay_seconds, 2)},
                )
                self._stopped.wait(backoff.next_delay())
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                break
            except Exception:
                if self._stopped.is_set():
                    break
                log.exception("watch loop error: retrying", extra={"kind": self.kind.plural, "namespace": where})
                self._stopped.wait(backoff.next_delay(jitter=False))

    def _watch_once(self) -> int:
        """Follows one watch until it ends; returns how many events it brought."""
        stream = self.cluster.watch(
            self.kind, self.namespace, self.label_selector, self.resource_version, self.watch_timeout_seconds,
        )
        with self._stream_lock:
            self._stream = stream
        events = 0
        try:
            if self._stopped.is_set():
                return events
            for event in stream:
                events += 1
                if event.resource_version:
                    self.resource_version = event.resource_version
                if event.type != "BOOKMARK":
                    self.deliver(Changed(self.kind, event.type, event.object))
            return events
        finally:
            with self._stream_lock:
                self._stream = None
            stream.close()


@dataclass(frozen=True, slots=True)
class WatchSpec:
    kind: Kind
    label_selector: str = ""


@dataclass(frozen=True, slots=True)
class WatchTiming:
    """How long one watch stays open, and the retry backoff's first and longest delay (process/backoff)."""

    watch_timeout_seconds: int = 300
    retry_min_seconds: float = 0.5
    retry_max_seconds: float = 15.0


DEFAULT_TIMING = WatchTiming()


async def follow(
    cluster: Cluster,
    namespace: str | None,
    watches: Sequence[WatchSpec],
    handle: Callable[[Listed | Changed], Awaitable[None] | None],
    timing: WatchTiming = DEFAULT_TIMING,
) -> None:
    """Watches every kind in ``watches`` and calls ``handle`` on the event loop for each message, in
    the order each kind saw them, until cancelled."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Listed | Changed] = asyncio.Queue()

    def deliver(message: Listed | Changed) -> None:  # runs in a watch thread
        loop.call_soon_threadsafe(queue.put_nowait, message)

    watchers = [
        Watcher(cluster, spec.kind, namespace, spec.label_selector, deliver, timing.watch_timeout_seconds,
                timing.retry_min_seconds, timing.retry_max_seconds)
        for spec in watches
    ]
    for watcher in watchers:
        watcher.start()
    try:
        while True:
            result = handle(await queue.get())
            if result is not None:
                await result
    finally:
        # Daemon threads: a thread in the middle of a call ends when the call returns, and the loop
        # never waits for it.
        for watcher in watchers:
            watcher.stop()
