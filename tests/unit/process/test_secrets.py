"""Secrets are masked where URLs are shown and scrubbed from every log line, in both formats."""

from __future__ import annotations

import io
import logging

import pytest

from kedahttp.process import logs, secrets


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://***@h:6379/0"),
        ("rediss://user:p@ss@h:6380", "rediss://***@h:6380"),
        ("nats://a:b@h1:4222,nats://c:d@h2:4222", "nats://***@h1:4222,nats://***@h2:4222"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("memory://dev", "memory://dev"),
        ("error connecting to redis://:pw@h:1: refused", "error connecting to redis://***@h:1: refused"),
    ],
)
def test_redact_url(text: str, shown: str) -> None:
    assert secrets.redact_url(text) == shown


def test_url_secrets_are_the_user_and_password_raw_and_decoded() -> None:
    assert set(secrets.url_secrets("redis://u%3Ax:p%40w@h")) == {"u%3Ax", "u:x", "p%40w", "p@w"}


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_every_log_line_is_scrubbed_of_the_secrets(log_format: str, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logs.configure(log_format, "info", secrets.scrub_list(["hunter2", "tok-12345"]))
    log = logging.getLogger("kedahttp.test")
    log.warning("cannot reach %s", "redis.example with hunter2", extra={"token": "tok-12345"})
    try:
        raise ConnectionError("AUTH hunter2 refused by nats://u:v@host")
    except ConnectionError:
        log.exception("failed")
    out = stream.getvalue()
    assert "hunter2" not in out and "tok-12345" not in out and "u:v" not in out
    assert out.count("***") >= 4
    logs.configure("text", "info")
