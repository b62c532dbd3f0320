"""Throw-away certificates for TLS tests, made with the openssl command line: a CA, server and client
certificates it signs. Small keys (EC P-256) so a test makes several in well under a second."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    assert binary, "the TLS tests need the openssl command (Debian: apt-get install openssl)"
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(directory: Path, name: str = "ca") -> Pair:
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", f"/CN=kedahttp test {name}", "-keyout", str(key), "-out", str(cert), cwd=directory)
    return Pair(cert, key)


def make_signed(ca: Pair, directory: Path, name: str, dns: str = "kedahttp-scaler", client: bool = False) -> Pair:
    """A certificate for ``dns`` (and 127.0.0.1) signed by ``ca``; a client certificate with ``client``."""
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    ext = directory / f"{name}.ext"
    usage = "clientAuth" if client else "serverAuth"
    ext.write_text(f"subjectAltName=DNS:{dns},IP:127.0.0.1\nextendedKeyUsage={usage}\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={dns}",
             "-keyout", str(key), "-out", str(csr), cwd=directory)
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
             "-days", "2", "-extfile", str(ext), "-out", str(cert), cwd=directory)
    return Pair(cert, key)
