"""Generates the Python stubs for protos/*.proto into this package.

The stubs are committed so that installing kedahttp needs no protoc; tests/unit/test_protos.py
regenerates them into a temporary folder and fails when the committed ones drift from the .proto.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parents[2] / "protos"
# (file, has a gRPC service)
PROTO_FILES = (("externalscaler.proto", True), ("activity.proto", False))


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc  # build-time dependency only

    # Map protos/ onto kedahttp/protos/ so that generated imports are absolute package imports.
    for name, has_service in PROTO_FILES:
        args = [
            "protoc",
            f"-Ikedahttp/protos={PROTO_DIR}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            *([f"--grpc_python_out={out_dir}"] if has_service else []),
            f"kedahttp/protos/{name}",
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {name}")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]
    generate(out)


if __name__ == "__main__":
    main()
