"""Which upstream timeout an exchange has run past, decided by the server's periodic sweep, not a timer each.

Arming a ``loop.call_later`` per request and cancelling it when the response arrives costs a handle
allocation and two timer-heap operations on every request, for a timeout that almost never fires.
Instead the data path only stamps what it can read for free (the upstream's last byte, from a coarse
clock the sweep advances), and the sweep, which already visits every client connection for the header
and keep-alive timeouts, looks at the one exchange each connection has in progress: the first sweep to
see its request sent in full notes the time (a request answered within a sweep period is never looked
at), and later sweeps ask ``overdue``. A timeout therefore fires between its value and its value plus two
sweep periods, never early, and the period follows the shortest timeout configured: a tenth of it,
between ``MIN_SWEEP_SECONDS`` and the server's own (one second by default), so a 60 s timeout is late by
two seconds at most and a 1 s one by 0.2 s.

What counts as idle: the response-header timeout runs from the moment the request was fully sent until
the status line; the idle timeout from the upstream's last byte of the response body, except while the
client is not reading (the proxy then stops reading the upstream on purpose), and, the other way, from
the last byte of the request body the upstream took while more waits for it (an app that stops reading
an upload: the proxy's write buffer to it stays full); the total cap from the
request being sent to the end of a response framed by Content-Length (chunked and read-until-close
responses are streams and never capped); a tunnel from the last byte in either direction. Pure.
"""

from __future__ import annotations

from typing import Final

from kedahttp.proxy.app_settings import AppLimits

MIN_SWEEP_SECONDS: Final = 0.05

NOT_DUE, RESPONSE_HEADER, BODY_IDLE, TOTAL, TUNNEL_IDLE, UPLOAD_IDLE = range(6)
REASONS: Final = {
    RESPONSE_HEADER: "no response header within the response-header timeout",
    BODY_IDLE: "response body stalled past the idle timeout",
    UPLOAD_IDLE: "upstream stopped reading the request body past the idle timeout",
    TOTAL: "response not complete within the total timeout",
    TUNNEL_IDLE: "tunnel idle past its timeout",
}


def sweep_interval(shortest_timeout_seconds: float, ceiling_seconds: float) -> float:
    """The sweep period: a tenth of the shortest timeout, within [MIN_SWEEP_SECONDS, ceiling]."""
    return max(MIN_SWEEP_SECONDS, min(ceiling_seconds, shortest_timeout_seconds / 10))


def overdue(limits: AppLimits, now: float, slack: float, *, sent_at: float, req_done: bool, resp_started: bool,
            streaming: bool, last_read: float, reading_paused: bool, last_taken: float = 0.0) -> int:
    """Which timeout a forwarded exchange (request sent, response not complete) has passed, or NOT_DUE.

    ``sent_at``: when the sweep first saw the request out in full (0 before); ``last_read``:
    the upstream's last byte on the coarse clock; ``last_taken``: while request bytes wait for the
    upstream, when it last took one (coarse clock; 0: nothing waits); ``slack``: how early a coarse
    stamp may be.
    """
    if last_taken and now - last_taken >= limits.idle_timeout_seconds + slack:
        return UPLOAD_IDLE
    total = limits.total_timeout_seconds
    if not resp_started:
        if req_done and sent_at and now - sent_at >= limits.response_header_timeout_seconds:
            return RESPONSE_HEADER
        if total and sent_at and now - sent_at >= total:
            return TOTAL
        return NOT_DUE
    if total and not streaming and sent_at and now - sent_at >= total:
        return TOTAL
    if not reading_paused and now - last_read >= limits.idle_timeout_seconds + slack:
        return BODY_IDLE
    return NOT_DUE


def tunnel_overdue(limits: AppLimits, now: float, slack: float, last_activity: float) -> bool:
    """Whether a tunnel with no byte either way since ``last_activity`` (coarse clock) has passed its timeout."""
    return now - last_activity >= limits.tunnel_idle_timeout_seconds + slack
