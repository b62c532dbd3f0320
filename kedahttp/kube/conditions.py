"""An HTTPApp's status, computed from what the controller sees: pure data in, the status dict out.

Conditions take the standard Kubernetes shape (type, status, reason, message, lastTransitionTime,
observedGeneration). ``lastTransitionTime`` moves only when a condition's status changes, so the same
inputs give the same status and the controller writes only on a real change (its own write comes back
as a watch event, and must not cause another). ``ScaledObjectReady`` is read from KEDA's own status on
the ScaledObject: that is where a scaler's ``NOT_FOUND`` or ``INVALID_ARGUMENT`` message lands, so the
HTTPApp shows why an app never wakes. ``inFlight`` and ``active`` come together from the scaler's last
answer (the controller asks it at a bounded rate) and fall back to KEDA's Active condition before it has
answered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ROUTED = "Routed"
SERVICE_READY = "ServiceReady"
SCALED_OBJECT_READY = "ScaledObjectReady"
READY = "Ready"
TYPES = (ROUTED, SERVICE_READY, SCALED_OBJECT_READY, READY)


@dataclass(frozen=True, slots=True)
class Observed:
    """What the controller knows about one HTTPApp when it computes its status."""

    key: str  # namespace/name
    generation: int
    spec_error: str | None  # why the spec cannot be routed, or None
    service_name: str
    service_error: str | None  # the Service or its port is missing: why; None when it is there
    ready_endpoints: int
    scaled_object: Mapping[str, Any] | None  # the ScaledObject that scales the app, if any
    scaled_object_problem: str | None = None  # e.g. a ScaledObject of the app's name the app does not own
    conflict: str | None = None  # an older HTTPApp serves one of its (host, path prefix) pairs
    # What the scaler last said (kube/live.py): requests in flight and whether it counts the app active.
    # None until it has answered; status.active then comes from KEDA's Active condition.
    in_flight: int | None = None
    scaler_active: bool | None = None


def _condition(type_: str, ok: bool | None, reason: str, message: str) -> dict[str, Any]:
    return {"type": type_, "status": "Unknown" if ok is None else ("True" if ok else "False"),
            "reason": reason, "message": message}


def _keda_condition(scaled_object: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in (scaled_object.get("status") or {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == type_:
            return condition
    return None


def _scaled_object_condition(seen: Observed) -> dict[str, Any]:
    if seen.scaled_object_problem:
        return _condition(SCALED_OBJECT_READY, False, "ScaledObjectConflict", seen.scaled_object_problem)
    so = seen.scaled_object
    if so is None:
        return _condition(
            SCALED_OBJECT_READY, False, "NoScaledObject",
            f"no ScaledObject scales backend {seen.key}: set spec.scaling, or write one whose kedahttp "
            f"trigger has backend: {seen.key}",
        )
    meta = so.get("metadata") or {}
    name = f"{meta.get('namespace')}/{meta.get('name')}"
    ready = _keda_condition(so, "Ready")
    if ready is None or ready.get("status") not in ("True", "False"):
        return _condition(SCALED_OBJECT_READY, None, "WaitingForKEDA", f"KEDA has not reported on ScaledObject {name} yet")
    ok = ready.get("status") == "True"
    reason = str(ready.get("reason") or ("ScaledObjectReady" if ok else "ScaledObjectNotReady"))
    message = str(ready.get("message") or "")
    return _condition(SCALED_OBJECT_READY, ok, reason, f"ScaledObject {name}: {message}" if message else f"ScaledObject {name}")


def conditions(seen: Observed) -> list[dict[str, Any]]:
    """The four conditions, without times (``merge`` adds them)."""
    if seen.spec_error:
        routed = _condition(ROUTED, False, "InvalidSpec", seen.spec_error)
    elif seen.conflict:
        routed = _condition(ROUTED, False, "HostConflict", seen.conflict)
    else:
        routed = _condition(ROUTED, True, "Accepted", "the proxies route the app's hosts and path prefixes")
    if seen.service_error:
        service = _condition(SERVICE_READY, False, "ServiceNotFound", seen.service_error)
    else:
        service = _condition(
            SERVICE_READY, True, "ServiceFound",
            f"Service {seen.service_name}: {seen.ready_endpoints} ready endpoint(s)",
        )
    scaled = _scaled_object_condition(seen)
    parts = (routed, service, scaled)
    failing = next((c for c in parts if c["status"] != "True"), None)
    if failing is None:
        ready = _condition(READY, True, "Ready", "routed, Service found, ScaledObject ready")
    else:
        ready = _condition(READY, False if failing["status"] == "False" else None, failing["reason"],
                           f"{failing['type']}: {failing['message']}")
    return [*parts, ready]


def merge(old: Sequence[Mapping[str, Any]] | None, new: Sequence[Mapping[str, Any]], generation: int,
          now: str) -> list[dict[str, Any]]:
    """``new`` with each condition's lastTransitionTime kept from ``old`` when its status did not change."""
    previous = {c.get("type"): c for c in old or [] if isinstance(c, Mapping)}
    out = []
    for condition in new:
        before = previous.get(condition["type"])
        since = before.get("lastTransitionTime") if before and before.get("status") == condition["status"] else None
        out.append({**condition, "observedGeneration": generation, "lastTransitionTime": since or now})
    return out


def status(seen: Observed, old_status: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    """The whole ``status`` of the HTTPApp."""
    old_status = old_status or {}
    so = seen.scaled_object
    active = _keda_condition(so, "Active") if so is not None else None
    out: dict[str, Any] = {
        "observedGeneration": seen.generation,
        "conditions": merge(old_status.get("conditions"), conditions(seen), seen.generation, now),
        "readyReplicas": seen.ready_endpoints,
    }
    if seen.in_flight is not None and seen.scaler_active is not None:
        # one answer of the scaler for both columns, so they agree (KEDA's condition lags its last poll)
        out["inFlight"] = seen.in_flight
        out["active"] = "True" if seen.scaler_active else "False"
    elif active is not None and active.get("status") in ("True", "False", "Unknown"):
        out["active"] = str(active["status"])
    if so is not None:
        out["scaledObject"] = str((so.get("metadata") or {}).get("name") or "")
    return out
