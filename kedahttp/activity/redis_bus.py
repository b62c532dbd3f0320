"""The Redis transport (``redis://`` and ``rediss://``): one Redis stream holds every envelope in order.

Redis assigns each entry an id ``<server ms>-<n>``, so "replay from a time" is a range read from
``<since ms>-0`` and "trim to retention" is ``XADD ... MINID ~ <now - retention>``, with no index of our
own. Reads page through the history with XRANGE up to the newest id seen at subscribe time, then follow
live with a blocking XREAD. Timeouts are short and client retries minimal, so a dead server surfaces as
BusUnavailable in about a second instead of stalling the publisher or the feed; reconnecting is the
connection pool's job on the next call.

URL: ``redis[s]://[user:password@]host:port/db[?stream=KEY]``; the stream key defaults to
``kedahttp:activity``. Any other query argument is passed to redis-py as a connection option.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from kedahttp.activity.bus import CAUGHT_UP, RETENTION_SECONDS, BusUnavailable, CaughtUp
from kedahttp.process.secrets import redact_url

DEFAULT_STREAM_KEY: Final = "kedahttp:activity"
FIELD: Final = b"e"  # each stream entry has one field: the encoded envelope
PAGE_SIZE: Final = 1000
BLOCK_MS: Final = 1000
# A blocking XREAD holds the socket for BLOCK_MS, so the read timeout must exceed it; everything else
# is kept short so an unreachable server is noticed in about a second.
CONNECT_TIMEOUT_SECONDS: Final = 1.0
SOCKET_TIMEOUT_SECONDS: Final = BLOCK_MS / 1000 + 1.0
HEALTH_CHECK_INTERVAL_SECONDS: Final = 5


def split_url(url: str) -> tuple[str, str]:
    """Returns (the URL redis-py should see, the stream key): our ``stream`` query argument is removed."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    key = next((v for k, v in query if k == "stream" and v), DEFAULT_STREAM_KEY)
    rest = urlencode([(k, v) for k, v in query if k != "stream"])
    return urlunsplit(parts._replace(query=rest)), key


class RedisTransport:
    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = redact_url(url)  # the URL as messages show it: no credentials
        self._client_url, self.key = split_url(url)
        self._client: aredis.Redis | None = None

    def _redis(self) -> aredis.Redis:
        if self._client is None:
            try:
                self._client = aredis.Redis.from_url(
                    self._client_url,
                    decode_responses=False,
                    socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    socket_timeout=SOCKET_TIMEOUT_SECONDS,
                    health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
                    # One immediate retry replaces a pooled connection the server closed (a restart).
                    # Timeouts are not retried: a silent server must surface now, and anything longer
                    # than one retry is the publisher's backoff or the feed's, not the client's.
                    retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                )
            except ValueError as exc:  # a malformed URL: a configuration error, not an outage
                raise ValueError(f"bus URL {self.shown!r}: {exc}") from exc
        return self._client

    async def connect(self) -> None:
        try:
            await self._redis().ping()
        except (RedisError, OSError) as exc:
            raise BusUnavailable(f"{self.shown}: {exc}") from exc

    async def publish(self, payloads: Sequence[bytes]) -> None:
        if not payloads:
            return
        # Entries older than retention go with the batch that passes them; "~" lets Redis trim whole
        # macro-nodes only, which costs next to nothing.
        min_id = int((time.time() - RETENTION_SECONDS) * 1000)
        pipe = self._redis().pipeline(transaction=False)
        for payload in payloads:
            pipe.xadd(self.key, {FIELD: payload}, minid=min_id, approximate=True)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BusUnavailable(f"{self.shown}: publish failed: {exc}") from exc

    async def subscribe(self, since: float) -> AsyncIterator[bytes | CaughtUp]:
        client = self._redis()
        try:
            newest: Any = await client.xrevrange(self.key, "+", "-", count=1)
            cursor: bytes = b"0-0"  # the last id handed out (or known to precede ``since``)
            if newest:
                end: bytes = newest[0][0]
                start: bytes | str = f"{max(0, int(since * 1000))}-0"
                while True:
                    page: Any = await client.xrange(self.key, start, end, count=PAGE_SIZE)
                    for _entry_id, fields in page:
                        payload = fields.get(FIELD)
                        if payload is not None:
                            yield payload
                    if len(page) < PAGE_SIZE or page[-1][0] == end:
                        break
                    start = b"(" + page[-1][0]
                cursor = end
            yield CAUGHT_UP
            while True:
                reply: Any = await client.xread({self.key: cursor}, count=PAGE_SIZE, block=BLOCK_MS)
                if not reply:
                    continue
                for entry_id, fields in reply[0][1]:
                    cursor = entry_id
                    payload = fields.get(FIELD)
                    if payload is not None:
                        yield payload
        except (RedisError, OSError) as exc:
            raise BusUnavailable(f"{self.shown}: read failed: {exc}") from exc

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
