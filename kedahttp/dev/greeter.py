"""The bundled gRPC sample app: helloworld.Greeter/SayHello, one local process per replica.

It speaks the wire format of gRPC's own helloworld example (HelloRequest{name=1}, HelloReply{message=1}),
encoded by hand so no generated code is needed, and it has a matching client, so the dev loop shows a
gRPC app woken from zero by its first call:

    python -m kedahttp.dev.greeter --port 9001                      # a replica (what `kedahttp dev` runs)
    python -m kedahttp.dev.greeter --call 127.0.0.1:8080 --authority greeter.localhost --name you
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

METHOD = "/helloworld.Greeter/SayHello"


def encode_string(value: str) -> bytes:
    """A message with one string field number 1 (HelloRequest and HelloReply alike)."""
    data = value.encode()
    size = len(data)
    varint = bytearray()
    while True:
        byte = size & 0x7F
        size >>= 7
        varint.append(byte | (0x80 if size else 0))
        if not size:
            break
    return b"\x0a" + bytes(varint) + data


def decode_string(message: bytes) -> str:
    """Field 1 of a message as text ("" when absent); other fields are skipped over."""
    i = 0
    while i < len(message):
        key = message[i]
        i += 1
        if key & 7 == 0:  # varint
            while message[i] & 0x80:
                i += 1
            i += 1
            continue
        if key & 7 != 2:
            break
        size = shift = 0
        while True:
            byte = message[i]
            i += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if key >> 3 == 1:
            return message[i:i + size].decode(errors="replace")
        i += size
    return ""


def _ident(data: bytes) -> bytes:
    return data


def serve(port: int, replica_id: str, startup_seconds: float) -> int:
    time.sleep(startup_seconds)  # pretend boot time, so a cold start is visible

    def say_hello(request: bytes, context: grpc.ServicerContext) -> bytes:
        return encode_string(f"Hello, {decode_string(request) or 'world'}! (from {replica_id})")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.so_reuseport", 0)])
    handler = grpc.unary_unary_rpc_method_handler(say_hello, _ident, _ident)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "helloworld.Greeter", {"SayHello": handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(5).wait()  # finishes the calls in flight, as a pod on SIGTERM
    return 0


def call(target: str, authority: str, name: str, timeout_seconds: float) -> int:
    options = [("grpc.default_authority", authority)] if authority else []
    with grpc.insecure_channel(target, options=options) as channel:
        say_hello = channel.unary_unary(METHOD, _ident, _ident)
        try:
            reply = say_hello(encode_string(name), timeout=timeout_seconds)
        except grpc.RpcError as exc:
            print(f"{exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 1
    print(decode_string(reply))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kedahttp.dev.greeter", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, help="serve on 127.0.0.1:PORT")
    parser.add_argument("--replica-id", default=f"greeter-{os.getpid()}")
    parser.add_argument("--startup-seconds", type=float, default=0.0)
    parser.add_argument("--call", metavar="HOST:PORT", help="call SayHello at HOST:PORT instead of serving")
    parser.add_argument("--authority", default="greeter.localhost", help="the :authority of the call")
    parser.add_argument("--name", default="world")
    parser.add_argument("--timeout-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.call:
        return call(args.call, args.authority, args.name, args.timeout_seconds)
    if args.port is None:
        parser.error("--port or --call is required")
    return serve(args.port, args.replica_id, args.startup_seconds)


if __name__ == "__main__":
    sys.exit(main())
