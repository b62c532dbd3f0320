"""The page a browser gets while its app wakes from zero, instead of a blank tab until the app is ready.

For an app whose ``coldStart.placeholder`` is ``page``, a GET or HEAD that accepts ``text/html`` and finds
the app cold is answered at once: 503 with ``Retry-After`` and ``Cache-Control: no-store``, and a small
HTML page that refreshes itself (``<meta http-equiv="refresh">`` and the ``Refresh`` header: no script,
no external asset, readable in a text browser) and says which app is starting and for how long. The
request still counts and still wakes the app; once the app is ready, the next refresh reaches it. API
clients (no ``text/html`` in Accept) keep today's behaviour: they are held and answered by the app.

A custom template is text with ``$app``, ``$backend``, ``$waited_seconds`` and ``$refresh_seconds``
(``string.Template`` syntax; ``$$`` is a dollar sign). It is checked once when loaded: an unknown name or
a stray ``$`` is an error naming it. Every value is HTML-escaped when rendered. Pure: no I/O here; the
route sources read template files.
"""

from __future__ import annotations

import html
import string
from typing import Final

REFRESH_SECONDS: Final = 2  # how often the page reloads itself; also its Retry-After
MAX_TEMPLATE_BYTES: Final = 64 * 1024
PLACEHOLDERS: Final = frozenset({"app", "backend", "waited_seconds", "refresh_seconds"})

DEFAULT_TEMPLATE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="$refresh_seconds">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Starting $app</title>
<style>
body { font-family: system-ui, sans-serif; margin: 15vh auto; max-width: 34em; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; }
p { color: #555; }
</style>
</head>
<body>
<h1>Starting $app&hellip;</h1>
<p>This app was asleep and is waking up: $waited_seconds s so far.</p>
<p>This page reloads itself every $refresh_seconds s and shows the app as soon as it is ready.</p>
</body>
</html>
"""


class TemplateError(ValueError):
    """A waiting-page template that cannot be used; the message says what is wrong."""


class PageTemplate:
    """A checked waiting-page template."""

    __slots__ = ("_template", "text")

    def __init__(self, text: str) -> None:
        if len(text.encode()) > MAX_TEMPLATE_BYTES:
            raise TemplateError(f"template is larger than {MAX_TEMPLATE_BYTES} bytes")
        template = string.Template(text)
        if not template.is_valid():
            raise TemplateError("template has a '$' that is not a placeholder (write '$$' for a dollar sign)")
        unknown = set(template.get_identifiers()) - PLACEHOLDERS
        if unknown:
            raise TemplateError(f"unknown placeholder(s) {', '.join(sorted('$' + u for u in unknown))}; "
                                f"known: {', '.join(sorted('$' + p for p in PLACEHOLDERS))}")
        self.text = text
        self._template = template

    def render(self, *, backend: str, waited_seconds: float, refresh_seconds: int = REFRESH_SECONDS) -> bytes:
        """The page for ``backend`` ("namespace/name"), every value HTML-escaped."""
        values = {
            "app": backend.rpartition("/")[2],
            "backend": backend,
            "waited_seconds": str(max(0, int(waited_seconds))),
            "refresh_seconds": str(refresh_seconds),
        }
        return self._template.substitute({k: html.escape(v, quote=True) for k, v in values.items()}).encode()


DEFAULT: Final = PageTemplate(DEFAULT_TEMPLATE)


def accepts_html(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request's Accept names ``text/html`` (with a q above 0): a browser navigating, not an API
    client. ``*/*`` alone does not count: curl and most libraries send it."""
    for name, value in headers:
        if len(name) == 6 and name.lower() == b"accept":
            for media_range in value.lower().split(b","):
                media, _, params = media_range.partition(b";")
                if media.strip() == b"text/html" and not _q_is_zero(params):
                    return True
    return False


def _q_is_zero(params: bytes) -> bool:
    for param in params.split(b";"):
        name, _, value = param.partition(b"=")
        if name.strip() == b"q":
            try:
                return float(value.strip()) <= 0
            except ValueError:
                return False
    return False


def page_response(body: bytes, *, close: bool, head_only: bool, refresh_seconds: int = REFRESH_SECONDS) -> bytes:
    """The whole 503 answer carrying the page."""
    lines = [
        b"HTTP/1.1 503 Service Unavailable\r\n",
        b"Content-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\n" % len(body),
        b"Cache-Control: no-store\r\nRetry-After: %d\r\nRefresh: %d\r\n" % (refresh_seconds, refresh_seconds),
        b"X-KEDAHTTP-Cold-Start: true\r\n",
        b"Connection: close\r\n\r\n" if close else b"\r\n",
    ]
    if not head_only:
        lines.append(body)
    return b"".join(lines)
