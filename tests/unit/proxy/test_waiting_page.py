"""The waiting page: who gets it, what it says, that values cannot inject markup, and bad templates."""

from __future__ import annotations

import pytest

from kedahttp.proxy.waiting_page import DEFAULT, PageTemplate, TemplateError, accepts_html, page_response


@pytest.mark.parametrize(("accept", "expected"), [
    (b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),  # a browser navigating
    (b"TEXT/HTML", True),
    (b"application/json, text/html;q=0.1", True),
    (b"*/*", False),  # curl, libraries
    (b"application/json", False),
    (b"text/html;q=0", False),
    (b"text/html; q=0.0", False),
    (b"text/htmlx", False),
])
def test_who_gets_the_page(accept: bytes, expected: bool) -> None:
    assert accepts_html([(b"Host", b"a"), (b"Accept", accept)]) is expected


def test_no_accept_header_is_not_a_browser() -> None:
    assert not accepts_html([(b"Host", b"a")])


def test_default_page_names_the_app_refreshes_itself_and_needs_nothing_else() -> None:
    page = DEFAULT.render(backend="shop/cart", waited_seconds=7.9).decode()
    assert "Starting cart" in page and "7 s so far" in page
    assert '<meta http-equiv="refresh" content="2">' in page
    lowered = page.lower()
    assert "<script" not in lowered and "src=" not in lowered and "href=" not in lowered and "url(" not in lowered
    assert len(page) < 2048


def test_values_are_escaped() -> None:
    template = PageTemplate("<h1>$app</h1><p>$backend</p>")
    out = template.render(backend='ns/<script>alert("x")</script>', waited_seconds=1).decode()
    assert "<script>" not in out and "&lt;script&gt;" in out and "&quot;" in out


@pytest.mark.parametrize(("text", "message"), [
    ("<p>$application</p>", r"unknown placeholder\(s\) \$application"),
    ("<p>costs $5</p>", "not a placeholder"),
    ("x" * (64 * 1024 + 1), "larger than"),
])
def test_bad_templates_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        PageTemplate(text)


def test_dollar_sign_escapes_and_custom_placeholders() -> None:
    out = PageTemplate("$$ $app waited ${waited_seconds}s, refresh $refresh_seconds").render(
        backend="default/app", waited_seconds=3.2).decode()
    assert out == "$ app waited 3s, refresh 2"


def test_the_answer_is_a_503_with_retry_after_and_no_store() -> None:
    raw = page_response(b"<p>hi</p>", close=False, head_only=False)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 503 Service Unavailable"
    assert b"Retry-After: 2" in lines and b"Cache-Control: no-store" in lines and b"Refresh: 2" in lines
    assert b"Content-Type: text/html; charset=utf-8" in lines and b"Content-Length: 9" in lines
    assert body == b"<p>hi</p>"
    head_only = page_response(b"<p>hi</p>", close=True, head_only=True)
    assert head_only.endswith(b"Connection: close\r\n\r\n") and b"Content-Length: 9" in head_only
