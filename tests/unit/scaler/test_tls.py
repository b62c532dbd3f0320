"""The scaler's gRPC port over TLS with client-certificate verification: a client without a certificate is
refused, a KEDA-like client with the right CA and client certificate is answered, and a certificate
rotated on disk (as the kubelet updates a mounted Secret) is served to new connections without a restart."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from kedahttp.protos import externalscaler_pb2 as pb
from kedahttp.protos.externalscaler_pb2_grpc import ExternalScalerStub
from kedahttp.scaler.tls import TlsConfigError, tls_files
from tests.harness.certs import Pair, make_ca, make_signed
from tests.harness.scaler import Scaler, running_scaler

pytestmark = pytest.mark.timeout(60)
NAME = "kedahttp-scaler"  # the name in the server certificate, as KEDA dials it


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Pair]:
    ca = make_ca(tmp_path / "pki")
    return {
        "ca": ca,
        "server": make_signed(ca, tmp_path / "pki", "server"),
        "server2": make_signed(ca, tmp_path / "pki", "server2"),
        "client": make_signed(ca, tmp_path / "pki", "client", dns="keda-operator", client=True),
        "stranger": make_signed(make_ca(tmp_path / "other", "other-ca"), tmp_path / "other", "stranger",
                                dns="keda-operator", client=True),
    }


@pytest.fixture
async def scaler(pki: dict[str, Pair], tmp_path: Path) -> AsyncIterator[tuple[Scaler, Path]]:
    mounted = tmp_path / "mounted"  # what the Secret volume holds
    mounted.mkdir()
    for name, source in (("tls.crt", pki["server"].cert), ("tls.key", pki["server"].key), ("ca.crt", pki["ca"].cert)):
        shutil.copy(source, mounted / name)
    async with running_scaler(f"memory://tls-{uuid.uuid4().hex[:8]}", scaler_tls_cert_file=str(mounted / "tls.crt"),
                              scaler_tls_key_file=str(mounted / "tls.key"),
                              scaler_tls_client_ca_file=str(mounted / "ca.crt")) as running:
        yield running, mounted


def channel(target: str, ca: Pair, client: Pair | None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.cert.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )
    return grpc.aio.secure_channel(target, credentials, options=[("grpc.ssl_target_name_override", NAME)])


async def call(target: str, ca: Pair, client: Pair | None) -> grpc.StatusCode:
    async with channel(target, ca, client) as ch:
        try:
            await ExternalScalerStub(ch).GetMetricSpec(pb.ScaledObjectRef(name="app", namespace="default"), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def served_certificate(port: int, ca: Pair, client: Pair) -> str:
    """The fingerprint of the certificate a new TLS connection is shown."""
    context = ssl.create_default_context(cafile=str(ca.cert))
    context.load_cert_chain(str(client.cert), str(client.key))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(
        raw, server_hostname=NAME,
    ) as conn:
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def fingerprint(pair: Pair) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pair.cert.read_text())).hexdigest()


async def test_mtls_refuses_a_client_without_a_certificate_and_answers_keda(
    scaler: tuple[Scaler, Path], pki: dict[str, Pair],
) -> None:
    running, _ = scaler
    assert await call(running.target, pki["ca"], pki["client"]) == grpc.StatusCode.OK
    assert await call(running.target, pki["ca"], None) == grpc.StatusCode.UNAVAILABLE  # handshake refused
    assert await call(running.target, pki["ca"], pki["stranger"]) == grpc.StatusCode.UNAVAILABLE
    async with grpc.aio.insecure_channel(running.target) as plain:  # plaintext is not spoken at all
        with pytest.raises(grpc.aio.AioRpcError):
            await ExternalScalerStub(plain).GetMetricSpec(pb.ScaledObjectRef(name="app", namespace="default"),
                                                          timeout=3)


async def test_a_rotated_certificate_is_served_without_restart(
    scaler: tuple[Scaler, Path], pki: dict[str, Pair],
) -> None:
    running, mounted = scaler
    port = running.grpc.port
    before = await asyncio.to_thread(served_certificate, port, pki["ca"], pki["client"])
    assert before == fingerprint(pki["server"])
    # the kubelet's update of a Secret volume: new files appear under the same names
    staged = mounted / ".new"
    staged.mkdir()
    shutil.copy(pki["server2"].cert, staged / "tls.crt")
    shutil.copy(pki["server2"].key, staged / "tls.key")
    later = time.time() + 1
    for name in ("tls.key", "tls.crt"):
        os.utime(staged / name, (later, later))
        os.replace(staged / name, mounted / name)
    after = await asyncio.to_thread(served_certificate, port, pki["ca"], pki["client"])
    assert after == fingerprint(pki["server2"])
    assert await call(running.target, pki["ca"], pki["client"]) == grpc.StatusCode.OK
    assert running.grpc.tls is not None and running.grpc.tls.loads == 2


async def test_a_broken_rotation_keeps_the_previous_certificate(
    scaler: tuple[Scaler, Path], pki: dict[str, Pair],
) -> None:
    running, mounted = scaler
    (mounted / "tls.key").write_text("not a key\n")  # half-way through an update, or a bad Secret
    served = await asyncio.to_thread(served_certificate, running.grpc.port, pki["ca"], pki["client"])
    assert served == fingerprint(pki["server"])


def test_half_a_pair_is_a_configuration_error() -> None:
    assert tls_files("", "", "") is None
    with pytest.raises(TlsConfigError, match="go together"):
        tls_files("/c", "", "")
    with pytest.raises(TlsConfigError, match="client CA"):
        tls_files("", "", "/ca")
