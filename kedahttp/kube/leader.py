"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does it.

Every controller replica keeps its caches warm; only the holder of the Lease writes. A replica renews
the Lease every ``retry_seconds`` while it leads, and stops leading when it could not renew for
``renew_deadline_seconds``, before anyone else may take over. A follower takes the Lease once it has seen
the same holder and renew time, unchanged, for ``lease_seconds`` by its own monotonic clock (never by
comparing the holder's timestamps with its own clock, so clock skew cannot hand over early). Every
write carries the resourceVersion it read: two candidates racing for an expired Lease cannot both win.
A leader that shuts down cleanly gives the Lease up (holder emptied), so a rolling update hands over at
once instead of after a lease time.

``LeaseRecord``/``decide`` are the pure part; ``LeaderElector`` runs them against the API server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kedahttp.kube.cluster import LEASE, Cluster, ClusterError, Conflict, NotFound

log = logging.getLogger("kedahttp.kube.leader")


def now_micro() -> str:
    """A MicroTime as the API server writes it."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    holder: str
    renew_time: str
    transitions: int

    @classmethod
    def of(cls, lease: Mapping[str, Any] | None) -> LeaseRecord | None:
        if lease is None:
            return None
        spec = lease.get("spec") or {}
        return cls(str(spec.get("holderIdentity") or ""), str(spec.get("renewTime") or ""),
                   int(spec.get("leaseTransitions") or 0))


def decide(record: LeaseRecord | None, me: str, unchanged_for_seconds: float, lease_seconds: float) -> str:
    """What a candidate does with the Lease it just read: ``create``, ``renew``, ``take`` or ``wait``."""
    if record is None:
        return "create"
    if record.holder == me:
        return "renew"
    if not record.holder or unchanged_for_seconds >= lease_seconds:
        return "take"
    return "wait"


class LeaderElector:
    """Campaigns for one Lease until cancelled; ``is_leader`` says whether this replica may write now.

    ``on_change(leading)`` is called on the event loop whenever leadership is gained or lost.
    """

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: float = 15.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_deadline_seconds = lease_seconds * 2 / 3  # client-go's 15 s / 10 s / 2 s, scaled
        self.retry_seconds = lease_seconds * 2 / 15
        self.on_change = on_change
        self.is_leader = False
        self.changed = asyncio.Event()
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0

    async def run(self) -> None:
        try:
            while True:
                await self._attempt()
                await asyncio.sleep(self.retry_seconds)
        finally:
            if self.is_leader:
                self._set_leader(False)
                await asyncio.shield(asyncio.to_thread(self._release))

    async def _attempt(self) -> None:
        try:
            won = await asyncio.to_thread(self._try_acquire_or_renew)
        except ClusterError as exc:
            log.warning("lease: API call failed", extra={"lease": self.name, "error": exc.message})
            won = None
        now = time.monotonic()
        if won:
            self._renewed_at = now
            if not self.is_leader:
                self._set_leader(True)
        elif self.is_leader and (won is False or now - self._renewed_at >= self.renew_deadline_seconds):
            self._set_leader(False)

    def _set_leader(self, leading: bool) -> None:
        self.is_leader = leading
        log.info("leading" if leading else "not leading any more",
                 extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity})
        self.changed.set()
        self.changed = asyncio.Event()
        if self.on_change is not None:
            self.on_change(leading)

    def _try_acquire_or_renew(self) -> bool:
        """True: we hold the Lease now; False: someone else does. Blocking: runs in a thread."""
        lease = self.cluster.read_optional(LEASE, self.namespace, self.name)
        record = LeaseRecord.of(lease)
        now = time.monotonic()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        action = decide(record, self.identity, now - self._observed_at, self.lease_seconds)
        if action == "wait":
            return False
        stamp = now_micro()
        try:
            if action == "create" or lease is None:
                self.cluster.create(LEASE, self.namespace, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(stamp, stamp, 0),
                })
                return True
            spec = lease.get("spec") or {}
            if action == "renew":
                new_spec = {**spec, "renewTime": stamp, "leaseDurationSeconds": int(self.lease_seconds)}
            else:
                new_spec = self._spec(stamp, stamp, int(spec.get("leaseTransitions") or 0) + 1)
            stored = self.cluster.replace(LEASE, {**lease, "spec": new_spec})
        except (Conflict, NotFound):  # another candidate wrote first
            return False
        self._observed, self._observed_at = LeaseRecord.of(stored), now
        return True

    def _spec(self, acquired: str, renewed: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_seconds),
            "acquireTime": acquired,
            "renewTime": renewed,
            "leaseTransitions": transitions,
        }

    def _release(self) -> None:
        """Gives the Lease up on a clean shutdown, so a follower takes over at its next attempt."""
        try:
            lease = self.cluster.read_optional(LEASE, self.namespace, self.name)
            if lease is None or LeaseRecord.of(lease).holder != self.identity:  # type: ignore[union-attr]
                return
            spec = {**(lease.get("spec") or {}), "holderIdentity": "", "renewTime": now_micro()}
            self.cluster.replace(LEASE, {**lease, "spec": spec})
            log.info("lease released", extra={"lease": f"{self.namespace}/{self.name}"})
        except ClusterError as exc:
            log.warning("lease: release failed", extra={"lease": self.name, "error": exc.message})
