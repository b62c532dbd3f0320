"""Wire format of the bus: one protobuf ``Envelope`` (protos/activity.proto) per message.

Protobuf because it is compact, versionable (new fields are ignored by old readers) and decodes in C.
Decoding returns the protobuf messages themselves: they carry the same attribute names as the model,
so the aggregator folds them without a copy.
"""

from __future__ import annotations

from kedahttp.activity.model import Report, ReportLike, WakeEvent, WakeLike
from kedahttp.protos import activity_pb2 as pb


class DecodeError(ValueError):
    """A message on the bus is not a kedahttp envelope."""


def encode_report(report: Report | ReportLike) -> bytes:
    msg = pb.Envelope()
    r = msg.report
    r.instance = report.instance
    r.seq = report.seq
    r.sent_at = report.sent_at
    r.interval_start = report.interval_start
    r.interval_seconds = report.interval_seconds
    version = getattr(report, "routes_version", 0)
    if version:
        r.routes_version = version
        if getattr(report, "routes_listed", False):
            r.routes_listed = True
            r.routed.extend(report.routed)  # type: ignore[union-attr]
    add = r.backends.add
    for b in report.backends:
        add(
            backend=b.backend,
            in_flight=b.in_flight,
            held=b.held,
            started=b.started,
            completed=b.completed,
            busy_seconds=b.busy_seconds,
            last_request_at=b.last_request_at,
        )
    return msg.SerializeToString()


def encode_wake(wake: WakeEvent | WakeLike) -> bytes:
    msg = pb.Envelope()
    msg.wake.backend = wake.backend
    msg.wake.instance = wake.instance
    msg.wake.at = wake.at
    return msg.SerializeToString()


def decode(data: bytes) -> ReportLike | WakeLike:
    """Returns the report or wake event in ``data``; raises DecodeError for anything else."""
    msg = pb.Envelope()
    try:
        msg.ParseFromString(data)
    except Exception as exc:  # protobuf raises its own DecodeError type
        raise DecodeError(f"not a kedahttp activity envelope ({len(data)} bytes): {exc}") from exc
    kind = msg.WhichOneof("body")
    if kind == "report":
        return msg.report
    if kind == "wake":
        return msg.wake
    raise DecodeError(f"activity envelope without a body ({len(data)} bytes)")
