"""``kedahttp apps``: create, list, get and delete apps through the proxy's admin API.

A thin HTTP client on the standard library (no event loop, nothing heavy to import), so the command
starts fast. The admin API validates everything; the CLI only parses types, so both say the same thing
about a bad value. Data goes to stdout as a table, JSON or YAML; errors from the API go to stderr as
they came, with exit code 1 (2 for usage errors, as click does).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click

DEFAULT_SERVER = "http://127.0.0.1:8081"
DEFAULT_NAMESPACE = "default"
TIMEOUT_SECONDS = 30.0
OUTPUTS = ("table", "json", "yaml")


class ApiFailure(Exception):
    def __init__(self, message: str, status: int = 0) -> None:
        self.status = status
        super().__init__(message)


class Client:
    def __init__(self, server: str, token: str | None) -> None:
        self.server = server.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ApiFailure(_error_message(exc.code, exc.read()), exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiFailure(f"cannot reach the admin API at {self.server}: {reason}") from None
        return json.loads(raw) if raw.strip() else None


def _error_message(status: int, raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        message = str(body["error"])
        if body.get("field"):
            message = f"{body['field']}: {message}"
    else:
        message = raw.decode("utf-8", "replace").strip() or "no details"
    return f"{message} (HTTP {status})"


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


# -- output ----------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None or value == []:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _rows(apps: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = [["NAMESPACE", "NAME", "HOSTS", "READY", "MIN", "MAX", "IN-FLIGHT", "RATE", "IMAGE"]]
    for app in apps:
        status = app.get("status") or {}
        ready = f"{status.get('readyReplicas', 0)}/{status.get('replicas', 0)}"
        if status.get("missing"):
            ready += f" (missing {','.join(status['missing'])})"
        rows.append([
            _cell(app.get("namespace")), _cell(app.get("name")), _cell(app.get("hosts")), ready,
            _cell(app.get("minReplicas")), _cell(app.get("maxReplicas")), _cell(status.get("inFlight")),
            _cell(status.get("requestRate")), _cell(app.get("image")),
        ])
    return rows


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _emit(output: str, data: Any, table: Callable[[], str]) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    elif output == "yaml":
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
    else:
        click.echo(table())


# -- commands --------------------------------------------------------------------------------------------


def _server_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """--server must be an http(s) URL with a host: anything else is a usage error, before any request."""
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{value!r} is not an http:// or https:// URL with a host, like {DEFAULT_SERVER}")
    if parts.username or parts.password:
        raise click.BadParameter("credentials do not belong in the URL: use --token or KEDAHTTP_ADMIN_TOKEN")
    del port
    return value


def _client_options(func: Callable[..., Any]) -> Callable[..., Any]:
    decorators = [
        click.option("--server", envvar="KEDAHTTP_SERVER", default=DEFAULT_SERVER, show_default=True,
                     metavar="URL", callback=_server_url, help="admin API URL [env KEDAHTTP_SERVER]"),
        click.option("--token", envvar="KEDAHTTP_ADMIN_TOKEN", default=None, metavar="TOKEN",
                     help="bearer token [env KEDAHTTP_ADMIN_TOKEN; default: none]"),
        click.option("-o", "--output", type=click.Choice(OUTPUTS), default="table", show_default=True),
    ]
    for decorate in reversed(decorators):
        func = decorate(func)
    return func


def _namespace_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("-n", "--namespace", envvar="KEDAHTTP_NAMESPACE", default=None, metavar="NAMESPACE",
                        help=help_text)


def _run(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ApiFailure as exc:
        _fail(str(exc))


def _client(server: str, token: str | None) -> Client:
    """The client for a subcommand: its own --server/--token when given on its command line, else those
    given to ``kedahttp apps`` itself, else the environment or the default."""
    ctx = click.get_current_context()
    group = ctx.find_object(dict) or {}
    if ctx.get_parameter_source("server") != click.core.ParameterSource.COMMANDLINE and group.get("server"):
        server = group["server"]
    if ctx.get_parameter_source("token") != click.core.ParameterSource.COMMANDLINE and group.get("token"):
        token = group["token"]
    return Client(server, token)


def _optional_server_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else _server_url(ctx, param, value)


@click.group()
@click.option("--server", default=None, metavar="URL", callback=_optional_server_url,
              help=f"admin API URL, for every subcommand [env KEDAHTTP_SERVER; default: {DEFAULT_SERVER}]")
@click.option("--token", default=None, metavar="TOKEN", help="bearer token [env KEDAHTTP_ADMIN_TOKEN; default: none]")
@click.pass_context
def apps(ctx: click.Context, server: str | None, token: str | None) -> None:
    """Create, list, get and delete apps through the proxy's admin API."""
    ctx.obj = {"server": server, "token": token}


@apps.command()
@click.argument("name")
@click.option("--image", required=True, help="container image")
@click.option("--port", type=int, required=True, help="the container's HTTP port")
@click.option("--host", "hosts", multiple=True, help="host to route (repeat; '*.example.com' wildcards)")
@click.option("--path-prefix", "path_prefixes", multiple=True, help="path prefix to route (repeat; default /)")
@click.option("--min-replicas", type=int, default=None, help="default 0")
@click.option("--max-replicas", type=int, default=None, help="default 10")
@click.option("--target-concurrency", type=float, default=None, help="in-flight requests per replica (default 100)")
@click.option("--target-request-rate", type=float, default=None, help="requests per second per replica")
@click.option("--cold-start-timeout-seconds", type=float, default=None, help="default: the proxy's setting")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE", help="environment variable (repeat)")
@_namespace_option("namespace of the app [env KEDAHTTP_NAMESPACE; default: default]")
@_client_options
def create(
    name: str, image: str, port: int, hosts: tuple[str, ...], path_prefixes: tuple[str, ...],
    min_replicas: int | None, max_replicas: int | None, target_concurrency: float | None,
    target_request_rate: float | None, cold_start_timeout_seconds: float | None, env: tuple[str, ...],
    namespace: str | None, server: str, token: str | None, output: str,
) -> None:
    """Create an app: a Deployment at 0 replicas, a Service and a KEDA ScaledObject."""
    variables: dict[str, str] = {}
    for item in env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--env")
        variables[key] = value
    body: dict[str, Any] = {"name": name, "namespace": namespace or DEFAULT_NAMESPACE, "image": image, "port": port,
                            "hosts": list(hosts)}
    optional = {
        "pathPrefixes": list(path_prefixes) or None, "minReplicas": min_replicas, "maxReplicas": max_replicas,
        "targetConcurrency": target_concurrency, "targetRequestRate": target_request_rate,
        "coldStartTimeoutSeconds": cold_start_timeout_seconds, "env": variables or None,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    app = _run(lambda: _client(server, token).call("POST", "/api/v1/apps", body))
    _emit(output, app, lambda: f"app {app['namespace']}/{app['name']} created")


@apps.command()
@click.argument("name")
@click.option("--ignore-not-found", is_flag=True, help="exit 0 when the app does not exist")
@_namespace_option("namespace of the app [env KEDAHTTP_NAMESPACE; default: default]")
@_client_options
def delete(name: str, ignore_not_found: bool, namespace: str | None, server: str, token: str | None, output: str) -> None:
    """Delete an app's ScaledObject, Service and Deployment."""
    namespace = namespace or DEFAULT_NAMESPACE
    try:
        _client(server, token).call("DELETE", f"/api/v1/apps/{_quote(namespace)}/{_quote(name)}")
    except ApiFailure as exc:
        if exc.status == 404 and ignore_not_found:
            return
        _fail(str(exc))
    result = {"name": name, "namespace": namespace, "deleted": True}
    _emit(output, result, lambda: f"app {namespace}/{name} deleted")


@apps.command()
@click.argument("name")
@_namespace_option("namespace of the app [env KEDAHTTP_NAMESPACE; default: default]")
@_client_options
def get(name: str, namespace: str | None, server: str, token: str | None, output: str) -> None:
    """Show one app and its status."""
    namespace = namespace or DEFAULT_NAMESPACE
    app = _run(lambda: _client(server, token).call("GET", f"/api/v1/apps/{_quote(namespace)}/{_quote(name)}"))
    _emit(output, app, lambda: _table(_rows([app])))


@apps.command(name="list")
@_namespace_option("only this namespace [env KEDAHTTP_NAMESPACE; default: all the proxy serves]")
@_client_options
def list_apps(namespace: str | None, server: str, token: str | None, output: str) -> None:
    """List apps and their status."""
    path = "/api/v1/apps" + (f"?namespace={_quote(namespace)}" if namespace else "")
    data = _run(lambda: _client(server, token).call("GET", path))
    items = data.get("apps", []) if isinstance(data, dict) else []
    if not items and output == "table":
        click.echo("no apps found", err=True)
        return
    _emit(output, data, lambda: _table(_rows(items)))
