"""Per-app data-path settings: parsing the routes-file/HTTPApp shape, and overrides laid over the defaults."""

from __future__ import annotations

from typing import Any

import pytest

from kedahttp.proxy.app_settings import AppLimits, AppSettings, AppSettingsError, parse_app_settings
from kedahttp.proxy.waiting_page import DEFAULT

DEFAULTS = AppLimits(connect_timeout_seconds=5, response_header_timeout_seconds=60, idle_timeout_seconds=60,
                     total_timeout_seconds=0, tunnel_idle_timeout_seconds=600)


def test_overrides_win_and_unset_fields_take_the_defaults() -> None:
    app = parse_app_settings({"responseHeaderSeconds": 2, "idleSeconds": 0.5, "totalSeconds": 0}, None)
    assert app == AppSettings(response_header_timeout_seconds=2.0, idle_timeout_seconds=0.5,
                              total_timeout_seconds=0.0)
    limits = DEFAULTS.for_app(app)
    assert limits.response_header_timeout_seconds == 2 and limits.idle_timeout_seconds == 0.5
    assert limits.connect_timeout_seconds == 5 and limits.tunnel_idle_timeout_seconds == 600
    assert limits.page is None and limits.shortest_timeout_seconds == 0.5
    assert DEFAULTS.for_app(AppSettings()) == DEFAULTS


def test_placeholder_page_default_and_custom_template() -> None:
    assert DEFAULTS.for_app(parse_app_settings(None, {"placeholder": "page"})).page is DEFAULT
    custom = parse_app_settings(None, {"placeholder": "page", "template": "w.html"},
                                read_template=lambda name: "<p>$app is coming</p>")
    page = DEFAULTS.for_app(custom).page
    assert page is not None and page.render(backend="ns/shop", waited_seconds=0) == b"<p>shop is coming</p>"
    # a proxy whose default is the page: an app may still ask to be held
    paging = AppLimits(5, 60, 60, 0, 600, page=DEFAULT)
    assert paging.for_app(AppSettings()).page is DEFAULT
    assert paging.for_app(parse_app_settings(None, {"placeholder": "hold"})).page is None


@pytest.mark.parametrize(("timeouts", "cold_start", "field"), [
    ({"idleSeconds": 0}, None, "timeouts.idleSeconds"),
    ({"idleSeconds": -1}, None, "timeouts.idleSeconds"),
    ({"idleSeconds": True}, None, "timeouts.idleSeconds"),
    ({"idleSeconds": "5"}, None, "timeouts.idleSeconds"),
    ({"totalSeconds": -1}, None, "timeouts.totalSeconds"),
    ({"readSeconds": 5}, None, "timeouts"),
    ([5], None, "timeouts"),
    (None, {"placeholder": "spinner"}, "coldStart.placeholder"),
    (None, {"page": True}, "coldStart"),
    (None, {"template": ""}, "coldStart.template"),
    (None, "page", "coldStart"),
])
def test_bad_values_name_the_field(timeouts: Any, cold_start: Any, field: str) -> None:
    with pytest.raises(AppSettingsError) as info:
        parse_app_settings(timeouts, cold_start, read_template=lambda name: "")
    assert info.value.field == field


def test_template_problems_name_the_template() -> None:
    def missing(name: str) -> str:
        raise FileNotFoundError(2, "No such file or directory")

    with pytest.raises(AppSettingsError, match=r"cannot read 'w\.html'"):
        parse_app_settings(None, {"template": "w.html"}, read_template=missing)
    with pytest.raises(AppSettingsError, match=r"'w.html': unknown placeholder\(s\) \$nope"):
        parse_app_settings(None, {"template": "w.html"}, read_template=lambda name: "$nope")
    with pytest.raises(AppSettingsError, match="not read by this source"):
        parse_app_settings(None, {"template": "w.html"})
