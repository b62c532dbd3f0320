import socket

from tests.harness.servers import NatsServer, RedisServer


def test_servers_start_stop_restart(redis_server: RedisServer, nats_server: NatsServer) -> None:
    for server in (redis_server, nats_server):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        port = server.port
        server.stop()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            raise AssertionError(f"{server.name} still answers after stop")
        except OSError:
            pass
        server.start()
        assert server.port == port
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
