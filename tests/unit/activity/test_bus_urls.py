"""Bus URLs: the scheme picks the transport; each transport reads its own URL form."""

from __future__ import annotations

import pytest

from kedahttp.activity.bus import open_transport
from kedahttp.activity.memory_bus import MemoryTransport
from kedahttp.activity.nats_bus import SUBJECT, SUBJECTS, NatsTransport, covers, message_id, server_list
from kedahttp.activity.redis_bus import DEFAULT_STREAM_KEY, RedisTransport, split_url


@pytest.mark.parametrize(
    ("url", "cls"),
    [
        ("redis://127.0.0.1:6379/0", RedisTransport),
        ("rediss://user:pw@redis.example:6380/2", RedisTransport),
        ("nats://127.0.0.1:4222", NatsTransport),
        ("memory://dev", MemoryTransport),
    ],
)
def test_scheme_picks_the_transport(url: str, cls: type) -> None:
    transport = open_transport(url)
    assert isinstance(transport, cls)
    assert transport.url == url


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="scheme must be one of"):
        open_transport("kafka://broker:9092")


def test_redis_stream_key_comes_from_the_query_and_is_hidden_from_the_client() -> None:
    assert split_url("redis://h:1/3") == ("redis://h:1/3", DEFAULT_STREAM_KEY)
    assert split_url("redis://:pw@h:1/3?stream=team-a:activity&ssl_cert_reqs=none") == (
        "redis://:pw@h:1/3?ssl_cert_reqs=none",
        "team-a:activity",
    )


def test_nats_server_lists() -> None:
    assert server_list("nats://a:4222") == ["nats://a:4222"]
    assert server_list("nats://a:4222,b:4223") == ["nats://a:4222", "nats://b:4223"]
    assert server_list("nats://u:p@a:4222, nats://u:p@b:4222") == ["nats://u:p@a:4222", "nats://u:p@b:4222"]
    with pytest.raises(ValueError):
        server_list(" , ")


def test_nats_subject_matching() -> None:
    assert covers(SUBJECTS, SUBJECT)
    assert covers("kedahttp.*.envelope", SUBJECT)
    assert covers(SUBJECT, SUBJECT)
    assert not covers("kedahttp.activity", SUBJECT)
    assert not covers("kedahttp.activity.envelope.x", SUBJECT)
    assert not covers("other.>", SUBJECT)


def test_nats_message_id_is_a_stable_digest_of_the_envelope() -> None:
    assert message_id(b"report 1") == message_id(b"report 1")
    assert message_id(b"report 1") != message_id(b"report 2")
