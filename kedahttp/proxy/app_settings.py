"""Per-app data-path settings: upstream timeouts and the cold-start placeholder, with proxy-wide defaults.

An app may override any of the proxy-wide settings (``AppSettings``, every field optional, carried on its
``Backend``); the data path reads the merged result (``AppLimits``), resolved once when a backend is added
or changed, never per request. The routes file and the HTTPApp resource spell the overrides the same way,
so ``parse_app_settings`` reads that shape for both:

    timeouts:
      connectSeconds: 5            # opening a connection to the app
      responseHeaderSeconds: 60    # request sent -> status line; past it: 504
      idleSeconds: 60              # the longest pause either way: between two reads of a response body
                                   # (then the response is cut), or the app taking none of a request body
                                   # (then 504, or a cut if a response began)
      totalSeconds: 300            # a whole non-streaming response; 0: no cap
      tunnelIdleSeconds: 600       # a WebSocket/Upgrade tunnel with no byte either way is closed
    coldStart:
      placeholder: page            # hold (default) | page: browsers get a waiting page at once
      template: waiting.html       # optional; the routes file reads it relative to itself

Pure: the template text arrives already read (``read_template``); nothing here touches a file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from kedahttp.process.settings import SPEC_BY_NAME
from kedahttp.proxy.waiting_page import DEFAULT, PageTemplate, TemplateError

if TYPE_CHECKING:
    from kedahttp.process.settings import Settings

PLACEHOLDERS: Final = ("hold", "page")

# routes-file / HTTPApp field -> AppSettings field
TIMEOUT_FIELDS: Final[Mapping[str, str]] = {
    "connectSeconds": "connect_timeout_seconds",
    "responseHeaderSeconds": "response_header_timeout_seconds",
    "idleSeconds": "idle_timeout_seconds",
    "totalSeconds": "total_timeout_seconds",
    "tunnelIdleSeconds": "tunnel_idle_timeout_seconds",
}
COLD_START_FIELDS: Final = frozenset({"placeholder", "template"})
_ZERO_ALLOWED: Final = frozenset({"total_timeout_seconds"})  # 0 switches the cap off


@dataclass(frozen=True, slots=True)
class AppSettings:
    """One app's overrides; None takes the proxy-wide setting."""

    connect_timeout_seconds: float | None = None
    response_header_timeout_seconds: float | None = None
    idle_timeout_seconds: float | None = None
    total_timeout_seconds: float | None = None
    tunnel_idle_timeout_seconds: float | None = None
    placeholder: str | None = None  # "hold" or "page"
    page_template: str | None = None  # template text; None: the built-in page


NO_OVERRIDES: Final = AppSettings()


@dataclass(frozen=True, slots=True)
class AppLimits:
    """What the data path applies to one app: defaults with the app's overrides laid over them.

    Timeouts in seconds; ``total_timeout_seconds`` 0 means no cap. ``page`` is the waiting page when the
    placeholder is ``page``, else None (requests are held).
    """

    connect_timeout_seconds: float
    response_header_timeout_seconds: float
    idle_timeout_seconds: float
    total_timeout_seconds: float
    tunnel_idle_timeout_seconds: float
    page: PageTemplate | None = None

    @property
    def shortest_timeout_seconds(self) -> float:
        """The smallest timeout the sweep must resolve (the connect timeout is a per-connect timer)."""
        values = [self.response_header_timeout_seconds, self.idle_timeout_seconds, self.tunnel_idle_timeout_seconds]
        if self.total_timeout_seconds:
            values.append(self.total_timeout_seconds)
        return min(values)

    def for_app(self, app: AppSettings) -> AppLimits:
        """These limits (the proxy-wide ones) with ``app``'s overrides applied.

        Raises TemplateError when the app's template cannot be used (sources check it when they load it,
        so this is for a template that was never checked).
        """
        page = self.page
        if app.placeholder == "hold":
            page = None
        elif app.placeholder == "page" or (app.placeholder is None and page is not None):
            page = page or DEFAULT
            if app.page_template is not None:
                try:
                    page = PageTemplate(app.page_template)
                except TemplateError:  # sources check templates as they load them; this one was not
                    page = DEFAULT
        return AppLimits(
            connect_timeout_seconds=_pick(app.connect_timeout_seconds, self.connect_timeout_seconds),
            response_header_timeout_seconds=_pick(app.response_header_timeout_seconds,
                                                  self.response_header_timeout_seconds),
            idle_timeout_seconds=_pick(app.idle_timeout_seconds, self.idle_timeout_seconds),
            total_timeout_seconds=_pick(app.total_timeout_seconds, self.total_timeout_seconds),
            tunnel_idle_timeout_seconds=_pick(app.tunnel_idle_timeout_seconds, self.tunnel_idle_timeout_seconds),
            page=page,
        )


_SETTING_NAMES: Final = ("upstream_connect_timeout_seconds", "upstream_response_header_timeout_seconds",
                          "upstream_idle_timeout_seconds", "upstream_total_timeout_seconds",
                          "tunnel_idle_timeout_seconds")


def limits_from_settings(settings: Settings) -> AppLimits:
    """The proxy-wide limits: the UPSTREAM_* and TUNNEL_* settings and COLD_START_PLACEHOLDER."""
    connect, header, idle, total, tunnel = (float(getattr(settings, name)) for name in _SETTING_NAMES)
    return AppLimits(connect, header, idle, total, tunnel,
                     page=DEFAULT if settings.cold_start_placeholder == "page" else None)


def default_limits() -> AppLimits:
    """The limits of a proxy started without any of those settings (the defaults of the settings table)."""
    connect, header, idle, total, tunnel = (float(SPEC_BY_NAME[name].parse(SPEC_BY_NAME[name].default or ""))
                                            for name in _SETTING_NAMES)
    return AppLimits(connect, header, idle, total, tunnel)


def _pick(override: float | None, default: float) -> float:
    return default if override is None else override


class AppSettingsError(ValueError):
    """An override that cannot be used; ``field`` is its path as written (``timeouts.idleSeconds``)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"field '{field}': {reason}")
        self.field = field
        self.reason = reason


def parse_app_settings(
    timeouts: Any, cold_start: Any, read_template: Callable[[str], str] | None = None,
) -> AppSettings:
    """``AppSettings`` from the ``timeouts`` and ``coldStart`` mappings of a routes-file entry or an HTTPApp
    (either may be None). ``read_template`` turns ``coldStart.template`` into the template's text; without
    one a template is refused.

    Raises AppSettingsError naming the field.
    """
    values: dict[str, Any] = {}
    if timeouts is not None:
        if not isinstance(timeouts, Mapping):
            raise AppSettingsError("timeouts", "must be a mapping")
        unknown = set(timeouts) - set(TIMEOUT_FIELDS)
        if unknown:
            raise AppSettingsError("timeouts", f"unknown field(s) {', '.join(sorted(map(str, unknown)))}; "
                                   f"known: {', '.join(TIMEOUT_FIELDS)}")
        for name, attr in TIMEOUT_FIELDS.items():
            value = timeouts.get(name)
            if value is None:
                continue
            zero_ok = attr in _ZERO_ALLOWED
            if (isinstance(value, bool) or not isinstance(value, int | float) or value != value
                    or value == float("inf") or value < 0 or (value == 0 and not zero_ok)):
                raise AppSettingsError(f"timeouts.{name}",
                                       f"must be a number {'>= 0' if zero_ok else '> 0'} (got {value!r})")
            values[attr] = float(value)
    if cold_start is not None:
        if not isinstance(cold_start, Mapping):
            raise AppSettingsError("coldStart", "must be a mapping")
        unknown = set(cold_start) - COLD_START_FIELDS
        if unknown:
            raise AppSettingsError("coldStart", f"unknown field(s) {', '.join(sorted(map(str, unknown)))}; "
                                   f"known: {', '.join(sorted(COLD_START_FIELDS))}")
        placeholder = cold_start.get("placeholder")
        if placeholder is not None:
            if placeholder not in PLACEHOLDERS:
                raise AppSettingsError("coldStart.placeholder",
                                       f"must be one of {', '.join(PLACEHOLDERS)} (got {placeholder!r})")
            values["placeholder"] = placeholder
        template = cold_start.get("template")
        if template is not None:
            if not isinstance(template, str) or not template:
                raise AppSettingsError("coldStart.template", f"must be a file name (got {template!r})")
            if read_template is None:
                raise AppSettingsError("coldStart.template", "templates are not read by this source")
            try:
                text = read_template(template)
                PageTemplate(text)
            except (OSError, UnicodeDecodeError) as exc:
                raise AppSettingsError("coldStart.template", f"cannot read {template!r}: {exc}") from exc
            except TemplateError as exc:
                raise AppSettingsError("coldStart.template", f"{template!r}: {exc}") from exc
            values["page_template"] = text
    return AppSettings(**values)
