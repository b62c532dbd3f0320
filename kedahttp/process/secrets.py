"""Credentials kept out of everything a person or a collector reads: logs, errors, metrics, pages.

Two layers. At the source, a URL is shown through ``redact_url`` (its user and password become ``***``),
and secret settings are masked in the settings dump. Behind that, the log formatters (process/logs.py)
scrub every secret value the settings hold from each finished line, so a library's exception text or a
traceback that quotes a URL cannot carry the password out either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"
# scheme://userinfo@ ; userinfo is everything up to the last '@' before the host (passwords may hold '@').
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s,]*)@")
# Shorter values are not scrubbed from log lines (they would mask every occurrence of a common string);
# the sources redact them anyway.
MIN_SCRUB_LENGTH = 4


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it masked: ``redis://:pw@h:6379`` -> ``redis://***@h:6379``.

    Works on lists of URLs too (``nats://a:b@h1,nats://c:d@h2``); text without credentials comes back as it is.
    """
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def url_secrets(text: str) -> list[str]:
    """The credentials in the URLs of ``text`` (user, password, token), raw and percent-decoded."""
    found: list[str] = []
    for match in _USERINFO.finditer(text):
        user, _, password = match.group("userinfo").partition(":")
        for part in (user, password):
            if part:
                found += [part, unquote(part)]
    return found


def scrub(line: str, secrets: Iterable[str]) -> str:
    """``line`` with each secret (longest first) replaced by the mask."""
    for secret in secrets:
        if secret in line:
            line = line.replace(secret, MASK)
    return redact_url(line)


def scrub_list(values: Iterable[str]) -> tuple[str, ...]:
    """The values worth scrubbing from log lines, longest first so a secret inside another goes with it."""
    unique = {v for v in values if len(v) >= MIN_SCRUB_LENGTH}
    return tuple(sorted(unique, key=len, reverse=True))
