"""TLS for the KEDA-facing gRPC port: a server certificate, optional client-certificate verification (mTLS),
both read from mounted files and picked up again when the files change, without a restart.

gRPC's dynamic server credentials ask a fetcher for a new configuration at every handshake; ours
compares the files' (mtime, size) with what it last loaded and returns a new configuration only when
they changed, so a handshake costs two ``stat`` calls. A Secret mounted as a volume is updated by the
kubelet with an atomic symlink swap, which this sees as a change of the files it names. A half-written
pair (key and certificate that do not match) cannot be loaded: the fetcher then keeps serving the
previous pair and logs once. With a client CA, a client without a certificate that CA signed is refused.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from kedahttp.process.settings import ConfigurationError

log = logging.getLogger("kedahttp.scaler.tls")


class TlsConfigError(ConfigurationError, ValueError):
    """The TLS files cannot be used; the message names the file (exit 2, like any configuration error)."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None  # None: clients are not asked for a certificate


def _read(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN" not in data:
        raise TlsConfigError(f"{path} holds no PEM block")
    return data


class ReloadingCredentials:
    """Builds dynamic gRPC server credentials over ``files``; ``loads`` counts configurations handed out."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self.loads = 0
        self._lock = threading.Lock()  # the fetcher runs on gRPC's threads
        self._stamp: tuple[tuple[int, int], ...] = ()
        self._failed_stamp: tuple[tuple[int, int], ...] = ()

    def _paths(self) -> tuple[Path, ...]:
        return (self.files.cert, self.files.key, *((self.files.client_ca,) if self.files.client_ca else ()))

    def _stamp_now(self) -> tuple[tuple[int, int], ...]:
        out = []
        for path in self._paths():
            try:
                st = os.stat(path)  # follows the kubelet's ..data symlink
            except OSError:
                out.append((0, 0))
            else:
                out.append((st.st_mtime_ns, st.st_size))
        return tuple(out)

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        cert, key = _read(self.files.cert), _read(self.files.key)
        root = _read(self.files.client_ca) if self.files.client_ca else None
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=root)

    def initial(self) -> grpc.ServerCertificateConfiguration:
        """The first configuration; raises TlsConfigError when the files are not usable."""
        with self._lock:
            self._stamp = self._stamp_now()
            self.loads += 1
            return self._configuration()

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's per-handshake question: a new configuration, or None to keep the current one."""
        with self._lock:
            stamp = self._stamp_now()
            if stamp == self._stamp or stamp == self._failed_stamp:
                return None
            try:
                configuration = self._configuration()
            except TlsConfigError as exc:
                self._failed_stamp = stamp
                log.error("TLS files changed but cannot be used: serving the previous certificate",
                          extra={"error": str(exc)})
                return None
            self._stamp = stamp
            self.loads += 1
            log.info("TLS certificate reloaded", extra={"cert": str(self.files.cert)})
            return configuration

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            # the stub says the fetcher must return a configuration; gRPC documents None as "keep the current"
            self.initial(), self.fetch,  # type: ignore[arg-type]
            require_client_authentication=self.files.client_ca is not None,
        )


def tls_files(cert: str, key: str, client_ca: str) -> TlsFiles | None:
    """The TLS files from the settings; None for plaintext. Half a pair is a configuration error."""
    if not cert and not key:
        if client_ca:
            raise TlsConfigError("a client CA needs a server certificate and key too")
        return None
    if not (cert and key):
        raise TlsConfigError("the server certificate and key go together: set both or neither")
    return TlsFiles(Path(cert), Path(key), Path(client_ca) if client_ca else None)
