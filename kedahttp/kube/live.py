"""What the scaler says about each HTTPApp right now (requests in flight, active), for the app's status.

The controller asks the scaler over the scaler's own KEDA interface (``GetMetrics`` for the concurrency
metric, ``IsActive``), with the metadata of the app's kedahttp trigger exactly as KEDA sends it: the
number is the one KEDA scales on, and asking has no effect KEDA's own calls would not have (the scaler
takes an app's keep-alive mode from the trigger it is asked with). The kube layer may not import the
scaler, and needs nothing from it but this public interface.

One round asks for every app, over one channel opened for the round (so a rotated client certificate or
CA is read again each round), at most ``CONCURRENT_CALLS`` calls at a time. An app the scaler refuses
(``NOT_FOUND``, ``INVALID_ARGUMENT``: KEDA shows those in the ScaledObject's conditions) is left out; a
scaler that cannot answer at all (down, no fresh data, TLS refused) ends the round with
``ScalerUnreachable`` and the caller keeps what it had.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc

from kedahttp.kube.httpapp import kedahttp_triggers, object_key
from kedahttp.kube.trigger import BACKEND_KEY, CONCURRENCY_METRIC
from kedahttp.process.settings import ConfigurationError, Settings
from kedahttp.protos import externalscaler_pb2 as pb
from kedahttp.protos.externalscaler_pb2_grpc import ExternalScalerStub

CONCURRENT_CALLS: Final = 64
CALL_TIMEOUT_SECONDS: Final = 5.0
# Answers that concern one app only; any other failure means the scaler cannot answer anyone.
_APP_CODES: Final = frozenset({grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT,
                               grpc.StatusCode.FAILED_PRECONDITION})


class ScalerTlsError(ConfigurationError, ValueError):
    """The controller's TLS settings for the scaler do not go together; the message names them."""


class ScalerUnreachable(Exception):
    """The scaler did not answer a round (no connection, TLS refused, no fresh data, timeout)."""


@dataclass(frozen=True, slots=True)
class ScalerTls:
    """Files the controller dials the scaler with: the CA of the scaler's certificate, and the client
    certificate the scaler asks for under mTLS (both or neither)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        try:
            ca = self.ca.read_bytes()
            cert = self.cert.read_bytes() if self.cert else None
            key = self.key.read_bytes() if self.key else None
        except OSError as exc:
            raise ScalerUnreachable(f"cannot read the TLS files for the scaler: {exc}") from exc
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def scaler_tls(settings: Settings) -> ScalerTls | None:
    """The controller's TLS files for the scaler from its settings; None for plaintext."""
    ca, cert, key = settings.scaler_ca_file, settings.scaler_client_cert_file, settings.scaler_client_key_file
    if bool(cert) != bool(key):
        raise ScalerTlsError("KEDAHTTP_SCALER_CLIENT_CERT_FILE and KEDAHTTP_SCALER_CLIENT_KEY_FILE go together: "
                             "set both or neither")
    if cert and not ca:
        raise ScalerTlsError("a client certificate for the scaler needs KEDAHTTP_SCALER_CA_FILE too")
    if not ca:
        return None
    return ScalerTls(Path(ca), Path(cert) if cert else None, Path(key) if key else None)


@dataclass(frozen=True, slots=True)
class Live:
    in_flight: int  # the concurrency KEDA scales on (in flight plus held), rounded up as the scaler's int field
    active: bool


@dataclass(frozen=True, slots=True)
class Query:
    """One app as KEDA would ask about it: the ScaledObject's namespace and name, its trigger's metadata."""

    app: str  # namespace/name of the HTTPApp
    namespace: str
    name: str
    metadata: Mapping[str, str]


def queries(apps: Iterable[str], scaled_objects: Iterable[Mapping[str, Any]],
            owned: Mapping[str, Mapping[str, Any]]) -> list[Query]:
    """A query per app: with the metadata of the trigger that names it (the app's own ScaledObject first,
    from ``owned``, else any that names it), or the bare backend when none does yet."""
    named: dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
    for so in scaled_objects:
        for backend, metadata in kedahttp_triggers(so):
            named.setdefault(backend, (so, metadata))
    out = []
    for app in apps:
        own = owned.get(app)
        found = next(((own, m) for b, m in kedahttp_triggers(own) if b == app), None) if own else None
        found = found or named.get(app)
        # no trigger names the app yet: asked as KEDA would ask about a ScaledObject named like it
        so_key, metadata = (object_key(found[0]), found[1]) if found else (app, {BACKEND_KEY: app})
        namespace, _, name = so_key.partition("/")
        out.append(Query(app, namespace, name, {str(k): str(v) for k, v in metadata.items()}))
    return out


class ScalerClient:
    """Asks the scaler at ``address`` about many apps in one round."""

    def __init__(self, address: str, tls: ScalerTls | None = None,
                 timeout_seconds: float = CALL_TIMEOUT_SECONDS) -> None:
        self.address = address
        self.tls = tls
        self.timeout_seconds = timeout_seconds

    def _channel(self) -> grpc.aio.Channel:
        if self.tls is None:
            return grpc.aio.insecure_channel(self.address)
        return grpc.aio.secure_channel(self.address, self.tls.credentials())

    async def ask(self, asked: Sequence[Query]) -> dict[str, Live]:
        """What the scaler says about each app it answers for; raises ScalerUnreachable when it cannot answer."""
        if not asked:
            return {}
        gate = asyncio.Semaphore(CONCURRENT_CALLS)
        async with self._channel() as channel:
            stub = ExternalScalerStub(channel)

            async def one(query: Query) -> tuple[str, Live | None]:
                ref = pb.ScaledObjectRef(name=query.name, namespace=query.namespace, scalerMetadata=query.metadata)
                async with gate:
                    try:
                        metrics = await stub.GetMetrics(
                            pb.GetMetricsRequest(scaledObjectRef=ref, metricName=CONCURRENCY_METRIC),
                            timeout=self.timeout_seconds)
                        active = await stub.IsActive(ref, timeout=self.timeout_seconds)
                    except grpc.aio.AioRpcError as exc:
                        if exc.code() in _APP_CODES:
                            return query.app, None
                        raise ScalerUnreachable(f"{exc.code().name}: {exc.details()}") from exc
                values = [v.metricValue for v in metrics.metricValues]
                return query.app, Live(max(0, values[0]) if values else 0, bool(active.result))

            try:
                async with asyncio.TaskGroup() as group:  # the first failure cancels the rest of the round
                    tasks = [group.create_task(one(q)) for q in asked]
            except ExceptionGroup as failed:
                first = failed.exceptions[0]
                if isinstance(first, ScalerUnreachable):
                    raise first from None
                raise
        return {app: live for app, live in (t.result() for t in tasks) if live is not None}
