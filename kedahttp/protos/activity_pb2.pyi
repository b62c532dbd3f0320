from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BackendActivity(_message.Message):
    __slots__ = ("backend", "in_flight", "held", "started", "completed", "busy_seconds", "last_request_at")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    BUSY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LAST_REQUEST_AT_FIELD_NUMBER: _ClassVar[int]
    backend: str
    in_flight: int
    held: int
    started: int
    completed: int
    busy_seconds: float
    last_request_at: float
    def __init__(self, backend: _Optional[str] = ..., in_flight: _Optional[int] = ..., held: _Optional[int] = ..., started: _Optional[int] = ..., completed: _Optional[int] = ..., busy_seconds: _Optional[float] = ..., last_request_at: _Optional[float] = ...) -> None: ...

class ActivityReport(_message.Message):
    __slots__ = ("instance", "seq", "sent_at", "interval_start", "interval_seconds", "backends", "routes_version", "routes_listed", "routed")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_START_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUTES_LISTED_FIELD_NUMBER: _ClassVar[int]
    ROUTED_FIELD_NUMBER: _ClassVar[int]
    instance: str
    seq: int
    sent_at: float
    interval_start: float
    interval_seconds: float
    backends: _containers.RepeatedCompositeFieldContainer[BackendActivity]
    routes_version: int
    routes_listed: bool
    routed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, instance: _Optional[str] = ..., seq: _Optional[int] = ..., sent_at: _Optional[float] = ..., interval_start: _Optional[float] = ..., interval_seconds: _Optional[float] = ..., backends: _Optional[_Iterable[_Union[BackendActivity, _Mapping]]] = ..., routes_version: _Optional[int] = ..., routes_listed: _Optional[bool] = ..., routed: _Optional[_Iterable[str]] = ...) -> None: ...

class WakeEvent(_message.Message):
    __slots__ = ("backend", "instance", "at")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    backend: str
    instance: str
    at: float
    def __init__(self, backend: _Optional[str] = ..., instance: _Optional[str] = ..., at: _Optional[float] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("report", "wake")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    WAKE_FIELD_NUMBER: _ClassVar[int]
    report: ActivityReport
    wake: WakeEvent
    def __init__(self, report: _Optional[_Union[ActivityReport, _Mapping]] = ..., wake: _Optional[_Union[WakeEvent, _Mapping]] = ...) -> None: ...
