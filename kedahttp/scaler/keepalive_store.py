"""Where the adaptive keep-alive's per-backend snapshots live between scaler restarts: the bus's own server.

The bus keeps only RETENTION_SECONDS of history, far less than the hours of idle times the keep-alive
learns from, so its snapshots (keepalive.py) are kept beside the log: a Redis hash, or a NATS JetStream
key-value bucket, or a dict in memory for ``memory://``. The store is chosen by the bus URL's scheme.
Every replica folds the same log and so writes the same snapshots; the last write wins and restoring
merges, so there is no coordination. A store that cannot be reached costs only what the keep-alive would
have remembered: the scaler starts with empty histograms and keeps writing when the store is back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Protocol

import nats
import nats.errors
import nats.js.errors
import redis.asyncio as aredis
from redis.exceptions import RedisError

from kedahttp.activity.nats_bus import server_list
from kedahttp.activity.redis_bus import split_url

REDIS_HASH_SUFFIX: Final = ":keepalive"  # after the stream key: the hash lives beside the log it summarises
NATS_BUCKET: Final = "kedahttp-keepalive"
TIMEOUT_SECONDS: Final = 3.0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class StoreUnavailable(ConnectionError):
    """The store cannot be reached or refused the operation."""


class KeepAliveStore(Protocol):
    async def load(self) -> dict[str, str]:
        """Every stored snapshot, by backend."""

    async def save(self, snapshots: Sequence[tuple[str, str]]) -> None: ...

    async def delete(self, backends: Sequence[str]) -> None:
        """Removes the snapshots of backends the keep-alive has forgotten (absent ones are no error)."""

    async def close(self) -> None: ...


class MemoryStore:
    """For ``memory://`` buses: shared by every scaler of the process that names the same bus."""

    _STORES: Final[dict[str, dict[str, str]]] = {}

    def __init__(self, url: str) -> None:
        self.data = self._STORES.setdefault(url.partition("://")[2] or "default", {})

    async def load(self) -> dict[str, str]:
        return dict(self.data)

    async def save(self, snapshots: Sequence[tuple[str, str]]) -> None:
        self.data.update(snapshots)

    async def delete(self, backends: Sequence[str]) -> None:
        for backend in backends:
            self.data.pop(backend, None)

    async def close(self) -> None:
        pass


class RedisStore:
    def __init__(self, url: str) -> None:
        client_url, stream_key = split_url(url)
        self.key = stream_key + REDIS_HASH_SUFFIX
        self._client = aredis.Redis.from_url(client_url, decode_responses=True, socket_timeout=TIMEOUT_SECONDS,
                                             socket_connect_timeout=TIMEOUT_SECONDS)

    async def load(self) -> dict[str, str]:
        try:
            stored = await self._client.hgetall(self.key)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"keep-alive store {self.key}: {exc!r}") from exc
        return {_text(k): _text(v) for k, v in stored.items()}

    async def save(self, snapshots: Sequence[tuple[str, str]]) -> None:
        if not snapshots:
            return
        try:
            await self._client.hset(self.key, mapping=dict(snapshots))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"keep-alive store {self.key}: {exc!r}") from exc

    async def delete(self, backends: Sequence[str]) -> None:
        if not backends:
            return
        try:
            await self._client.hdel(self.key, *backends)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"keep-alive store {self.key}: {exc!r}") from exc

    async def close(self) -> None:
        await self._client.aclose()


_NATS_ERRORS: Final = (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError)


def nats_key(backend: str) -> str:
    """``namespace/name`` is a valid key as it is (DNS labels and one ``/``)."""
    return backend


class NatsStore:
    def __init__(self, url: str) -> None:
        self.servers = server_list(url)
        self._nc: nats.NATS | None = None
        self._kv: object | None = None

    async def _bucket(self):  # type: ignore[no-untyped-def]  # nats-py's KeyValue type is not exported
        if self._kv is None or self._nc is None or not self._nc.is_connected:
            if self._nc is not None:
                await self.close()
            try:
                self._nc = await nats.connect(servers=self.servers, allow_reconnect=False,
                                              connect_timeout=TIMEOUT_SECONDS, max_reconnect_attempts=1,
                                              reconnect_time_wait=0)
                js = self._nc.jetstream(timeout=TIMEOUT_SECONDS)
                try:
                    self._kv = await js.key_value(NATS_BUCKET)
                except nats.js.errors.BucketNotFoundError:
                    self._kv = await js.create_key_value(bucket=NATS_BUCKET, history=1)
            except _NATS_ERRORS as exc:
                raise StoreUnavailable(f"keep-alive bucket {NATS_BUCKET}: {exc!r}") from exc
        return self._kv

    async def load(self) -> dict[str, str]:
        kv = await self._bucket()
        out: dict[str, str] = {}
        try:
            try:
                keys = await kv.keys()
            except nats.js.errors.NoKeysError:
                return out
            for key in keys:
                entry = await kv.get(key)
                if entry.value:
                    out[key] = entry.value.decode()
        except _NATS_ERRORS as exc:
            raise StoreUnavailable(f"keep-alive bucket {NATS_BUCKET}: {exc!r}") from exc
        return out

    async def save(self, snapshots: Sequence[tuple[str, str]]) -> None:
        if not snapshots:
            return
        kv = await self._bucket()
        try:
            for backend, text in snapshots:
                await kv.put(nats_key(backend), text.encode())
        except _NATS_ERRORS as exc:
            raise StoreUnavailable(f"keep-alive bucket {NATS_BUCKET}: {exc!r}") from exc

    async def delete(self, backends: Sequence[str]) -> None:
        if not backends:
            return
        kv = await self._bucket()
        try:
            for backend in backends:
                await kv.purge(nats_key(backend))  # purge: the key's earlier values go too, not just hidden
        except _NATS_ERRORS as exc:
            raise StoreUnavailable(f"keep-alive bucket {NATS_BUCKET}: {exc!r}") from exc

    async def close(self) -> None:
        nc, self._nc, self._kv = self._nc, None, None
        if nc is not None and not nc.is_closed:
            try:
                await nc.close()
            except _NATS_ERRORS:
                pass


STORE_SCHEMES: Final[dict[str, Callable[[str], KeepAliveStore]]] = {
    "redis": RedisStore, "rediss": RedisStore, "nats": NatsStore, "memory": MemoryStore,
}


def open_store(bus_url: str) -> KeepAliveStore:
    """The store beside the bus that ``bus_url`` names (its scheme picks the kind)."""
    scheme = bus_url.partition("://")[0].lower()
    try:
        cls = STORE_SCHEMES[scheme]
    except KeyError:
        raise ValueError(f"bus URL {bus_url!r}: no keep-alive store for scheme {scheme!r}") from None
    return cls(bus_url)
