"""Hostile input to the admin API, over a real socket, through the real kubernetes client to the fake API
server: tokens in the wrong place or scheme (401), bodies too large (413), not JSON (400), JSON of the
wrong shape, injection in names, hosts, path prefixes and env (422 naming the field), and hosts another
app serves (422 naming the host, as documented). After every refusal nothing was created: the fake API
server saw no write at all."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.harness.admin import TOKEN, Admin
from tests.harness.fake_apiserver import FakeApiServer

pytestmark = pytest.mark.timeout(60)

APP: dict[str, Any] = {"name": "hello", "image": "ghcr.io/acme/hello:1", "port": 8080, "hosts": ["hello.example.com"]}


async def call(admin: Admin, method: str, path: str, *, body: Any = None, data: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    headers = admin.headers if headers is None else headers
    if body is not None:
        data = json.dumps(body).encode()
        headers = {**headers, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session, session.request(
        method, admin.url + path, data=data, headers=headers,
    ) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


def writes(apiserver: FakeApiServer) -> list[str]:
    return [f"{r.method} {r.path}" for r in apiserver.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")]


def objects(apiserver: FakeApiServer) -> list[dict[str, Any]]:
    return [o for kind in ("Deployment", "Service", "ScaledObject") for o in apiserver.of_kind(kind)]


# -- tokens ----------------------------------------------------------------------------------------------------

WRONG_CREDENTIALS = {
    "no header": {},
    "token without scheme": {"Authorization": TOKEN},
    "Token scheme": {"Authorization": f"Token {TOKEN}"},
    "Basic scheme": {"Authorization": f"Basic {TOKEN}"},
    "Bearer with nothing": {"Authorization": "Bearer "},
    "Bearer with a prefix of the token": {"Authorization": f"Bearer {TOKEN[:-1]}"},
    "Bearer with the token extended": {"Authorization": f"Bearer {TOKEN}x"},
    "Bearer with another case": {"Authorization": f"Bearer {TOKEN.upper()}"},
    "token in another header": {"X-Admin-Token": TOKEN, "X-Auth-Token": TOKEN},
    "token as a cookie": {"Cookie": f"token={TOKEN}"},
    "non-ASCII token": {"Authorization": "Bearer t\u00f6ken"},
}
ROUTES = [("GET", "/api/v1/apps"), ("POST", "/api/v1/apps"), ("GET", "/api/v1/apps/default/hello"),
          ("DELETE", "/api/v1/apps/default/hello"), ("GET", "/api/v1/openapi.json")]


@pytest.mark.parametrize("case", list(WRONG_CREDENTIALS))
async def test_wrong_credentials_are_401_on_every_route(admin: Admin, apiserver: FakeApiServer, case: str) -> None:
    for method, path in ROUTES:
        status, data = await call(admin, method, path, body=APP if method == "POST" else None,
                                  headers=WRONG_CREDENTIALS[case])
        assert status == 401, (method, path)
        assert TOKEN not in json.dumps(data)  # the answer never echoes a token
    status, _ = await call(admin, "GET", f"/api/v1/apps?token={TOKEN}&access_token={TOKEN}", headers={})
    assert status == 401
    assert apiserver.requests == []


async def test_two_authorization_headers_are_not_merged_into_a_pass(admin: Admin, apiserver: FakeApiServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", int(admin.url.rsplit(":", 1)[1]))
    writer.write(b"GET /api/v1/apps HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer wrong\r\n"
                 b"Authorization: Bearer " + TOKEN.encode() + b"\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(-1), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401 ") or answer.startswith(b"HTTP/1.1 400 ")
    assert apiserver.requests == []


# -- bodies ----------------------------------------------------------------------------------------------------


async def test_oversized_bodies_are_413_before_being_read(admin: Admin, apiserver: FakeApiServer) -> None:
    big = {**APP, "env": {f"V{i}": "x" * 1000 for i in range(100)}}  # ~100 KiB of valid JSON
    status, _ = await call(admin, "POST", "/api/v1/apps", body=big)
    assert status == 413
    # a declared 10 GB body is refused from its Content-Length alone, without waiting for the bytes
    reader, writer = await asyncio.open_connection("127.0.0.1", int(admin.url.rsplit(":", 1)[1]))
    writer.write(b"POST /api/v1/apps HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer " + TOKEN.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413 ")
    assert writes(apiserver) == []


BAD_JSON = {
    "empty": b"",
    "truncated": b'{"name": "hello", "image": "x", ',
    "trailing garbage": json.dumps(APP).encode() + b"}",
    "two documents": json.dumps(APP).encode() * 2,
    "not UTF-8": b'{"name": "h\xff\xfe", "image": "x", "port": 80, "hosts": ["a.example.com"]}',
    "lone surrogate escape": b'{"name": "\\ud800", "image": "x", "port": 80, "hosts": ["a.example.com"]}',
    "single quotes": b"{'name': 'hello'}",
    "NaN literal": json.dumps(APP)[:-1].encode() + b', "targetConcurrency": NaN}',
    "comment": b"/* hi */" + json.dumps(APP).encode(),
    "NUL byte": b'{"name": "hello\x00"}',
}


@pytest.mark.parametrize("case", list(BAD_JSON))
async def test_malformed_json_is_400_or_422_and_creates_nothing(admin: Admin, apiserver: FakeApiServer,
                                                                case: str) -> None:
    status, data = await call(admin, "POST", "/api/v1/apps", data=BAD_JSON[case],
                              headers={**admin.headers, "Content-Type": "application/json"})
    assert status in (400, 422), data
    assert isinstance(data, dict) and data.get("error")
    if status == 422:
        assert data.get("field")
    assert writes(apiserver) == [] and objects(apiserver) == []


@pytest.mark.parametrize("opening", [b"[", b'{"a":'])
async def test_deeply_nested_json_is_400(admin: Admin, apiserver: FakeApiServer, opening: bytes) -> None:
    closing = b"]" if opening == b"[" else b"}"
    data = b'{"name": ' + opening * 5000 + b"1" + closing * 5000 + b"}"
    status, _ = await call(admin, "POST", "/api/v1/apps", data=data,
                           headers={**admin.headers, "Content-Type": "application/json"})
    assert status == 400
    assert writes(apiserver) == []


WRONG_SHAPES: list[tuple[Any, str]] = [
    ([APP], "body"),
    ("hello", "body"),
    (None, "body"),
    (42, "body"),
    ({**APP, "port": "8080"}, "port"),
    ({**APP, "port": 8080.5}, "port"),
    ({**APP, "port": True}, "port"),
    ({**APP, "port": 10**100}, "port"),
    ({**APP, "port": -1}, "port"),
    ({**APP, "hosts": "hello.example.com"}, "hosts"),
    ({**APP, "hosts": {"0": "hello.example.com"}}, "hosts"),
    ({**APP, "hosts": [["hello.example.com"]]}, "hosts[0]"),
    ({**APP, "hosts": [None]}, "hosts[0]"),
    ({**APP, "hosts": []}, "hosts"),
    ({**APP, "hosts": ["a.example.com"] * 2000}, "hosts"),  # a huge array, still under 64 KiB
    ({**APP, "pathPrefixes": ["/p"] * 5000}, "pathPrefixes"),
    ({**APP, "env": [["A", "1"]]}, "env"),
    ({**APP, "env": {"A": 1}}, "env.A"),
    ({**APP, "env": {"A": None}}, "env.A"),
    ({**APP, "env": {f"V{i}": "x" for i in range(1000)}}, "env"),
    ({**APP, "minReplicas": -1}, "minReplicas"),
    ({**APP, "maxReplicas": 0}, "maxReplicas"),
    ({**APP, "maxReplicas": 2**40}, "maxReplicas"),
    ({**APP, "targetConcurrency": "100"}, "targetConcurrency"),
    ({**APP, "targetConcurrency": -5}, "targetConcurrency"),
    ({**APP, "targetConcurrency": 1e999}, "targetConcurrency"),  # json.dumps writes Infinity
    ({**APP, "targetRequestRate": [1]}, "targetRequestRate"),
    ({**APP, "coldStartTimeoutSeconds": 0}, "coldStartTimeoutSeconds"),
    ({**APP, "image": ""}, "image"),
    ({**APP, "image": "x" * 2000}, "image"),
    ({**APP, "name": None}, "name"),
    ({**APP, "__proto__": {"admin": True}}, "__proto__"),
    ({**APP, "metadata": {"labels": {"app.kubernetes.io/managed-by": "someone"}}}, "metadata"),
    ({**APP, "spec": {"replicas": 100}}, "spec"),
]


@pytest.mark.parametrize(("body", "field"), WRONG_SHAPES, ids=[f"{i}-{f}" for i, (_, f) in enumerate(WRONG_SHAPES)])
async def test_json_of_the_wrong_shape_is_422_naming_the_field(admin: Admin, apiserver: FakeApiServer,
                                                               body: Any, field: str) -> None:
    status, data = await call(admin, "POST", "/api/v1/apps", data=json.dumps(body).encode(),
                              headers={**admin.headers, "Content-Type": "application/json"})
    assert status == 422, data
    assert data["field"] == field
    assert writes(apiserver) == []


# -- injection in names, hosts, prefixes, env ------------------------------------------------------------------

INJECTIONS: list[tuple[dict[str, Any], str]] = [
    ({"name": "a/b"}, "name"),
    ({"name": ".."}, "name"),
    ({"name": "../kube-system/x"}, "name"),
    ({"name": "Hello"}, "name"),
    ({"name": "h\u00e9llo"}, "name"),
    ({"name": "a" * 64}, "name"),
    ({"name": "1app"}, "name"),
    ({"name": "app-"}, "name"),
    ({"name": ""}, "name"),
    ({"name": "app\n"}, "name"),
    ({"name": "app,x"}, "name"),
    ({"name": "app.x"}, "name"),
    ({"namespace": ".."}, "namespace"),
    ({"namespace": "a/b"}, "namespace"),
    ({"namespace": "Default"}, "namespace"),
    ({"namespace": "x" * 64}, "namespace"),
    ({"hosts": ["a b.example.com"]}, "hosts[0]"),
    ({"hosts": ["a.*.example.com"]}, "hosts[0]"),
    ({"hosts": ["*"]}, "hosts[0]"),
    ({"hosts": ["**.example.com"]}, "hosts[0]"),
    ({"hosts": ["a.example.com:8080"]}, "hosts[0]"),
    ({"hosts": ["http://a.example.com"]}, "hosts[0]"),
    ({"hosts": ["a.example.com/path"]}, "hosts[0]"),
    ({"hosts": ["user@a.example.com"]}, "hosts[0]"),
    ({"hosts": ["a.example.com,evil.example.com"]}, "hosts[0]"),  # would add a host to the annotation
    ({"hosts": ["a.example.com\nevil.example.com"]}, "hosts[0]"),
    ({"hosts": ["a.example.com."]}, "hosts[0]"),
    ({"hosts": ["h\u00e9llo.example.com"]}, "hosts[0]"),
    ({"hosts": ["[::1]"]}, "hosts[0]"),
    ({"hosts": [""]}, "hosts[0]"),
    ({"hosts": ["ok.example.com", "-bad.example.com"]}, "hosts[1]"),
    ({"hosts": ["a" * 64 + ".example.com"]}, "hosts[0]"),
    ({"pathPrefixes": ["/a,/b"]}, "pathPrefixes[0]"),  # would add a prefix to the annotation
    ({"pathPrefixes": ["/a b"]}, "pathPrefixes[0]"),
    ({"pathPrefixes": ["/a\n/b"]}, "pathPrefixes[0]"),
    ({"pathPrefixes": ["a"]}, "pathPrefixes[0]"),
    ({"pathPrefixes": ["/a?x=1"]}, "pathPrefixes[0]"),
    ({"pathPrefixes": ["/" + "p" * 2000]}, "pathPrefixes[0]"),
    ({"env": {"A\nB": "x"}}, "env.A\nB"),
    ({"env": {"A=B": "x"}}, "env.A=B"),
    ({"env": {"": "x"}}, "env."),
    ({"env": {"1A": "x"}}, "env.1A"),
    ({"env": {"A B": "x"}}, "env.A B"),
    ({"image": "x\ny"}, "image"),
    ({"image": "x y"}, "image"),
    ({"image": "x\x00y"}, "image"),
]


@pytest.mark.parametrize(("changes", "field"), INJECTIONS,
                         ids=[f"{i}-{f}" for i, (_, f) in enumerate(INJECTIONS)])
async def test_injection_is_422_naming_the_field_and_creates_nothing(admin: Admin, apiserver: FakeApiServer,
                                                                     changes: dict[str, Any], field: str) -> None:
    status, data = await call(admin, "POST", "/api/v1/apps", body={**APP, **changes})
    assert status == 422, data
    assert data["field"] == field
    assert writes(apiserver) == [] and objects(apiserver) == []


async def test_env_values_with_newlines_stay_one_value(admin: Admin, apiserver: FakeApiServer) -> None:
    # Newlines are legal in an environment value (a PEM block): stored verbatim, as one variable.
    env = {"CERT": "-----BEGIN X-----\nabc\n-----END X-----\n", "QUOTES": "a\"b'c`$(d)"}
    status, view = await call(admin, "POST", "/api/v1/apps", body={**APP, "env": env})
    assert status == 201, view
    deployment = apiserver.get("Deployment", "default", "hello")
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "CERT", "value": env["CERT"]}, {"name": "QUOTES", "value": env["QUOTES"]}]
    assert view["env"] == env


async def test_env_value_with_nul_is_422(admin: Admin, apiserver: FakeApiServer) -> None:
    status, data = await call(admin, "POST", "/api/v1/apps", body={**APP, "env": {"A": "x\x00y"}})
    assert (status, data.get("field")) == (422, "env.A")
    assert writes(apiserver) == []


async def test_host_case_and_padding_are_normalized_not_trusted(admin: Admin, apiserver: FakeApiServer) -> None:
    status, view = await call(admin, "POST", "/api/v1/apps",
                              body={**APP, "hosts": [" Hello.Example.COM ", "hello.example.com"]})
    assert status == 201, view
    assert view["hosts"] == ["hello.example.com"]
    service = apiserver.get("Service", "default", "hello")
    assert service is not None
    assert service["metadata"]["annotations"]["kedahttp.dev/hosts"] == "hello.example.com"


# -- collisions ----------------------------------------------------------------------------------------------


async def test_hosts_another_app_serves_are_422_naming_the_host(admin: Admin, apiserver: FakeApiServer) -> None:
    status, _ = await call(admin, "POST", "/api/v1/apps",
                           body={**APP, "hosts": ["hello.example.com", "*.apps.example.com"]})
    assert status == 201
    before = objects(apiserver)
    for hosts, index in [
        (["other.example.com", "HELLO.EXAMPLE.COM"], 1),  # differs only in case
        ([" hello.example.com "], 0),  # and in padding
        (["x.example.com", "*.apps.example.com"], 1),  # the same wildcard
    ]:
        attempt = {**APP, "name": "other", "namespace": "team", "hosts": hosts}
        status, data = await call(admin, "POST", "/api/v1/apps", body=attempt)
        assert status == 422, (hosts, data)
        assert data["field"] == f"hosts[{index}]"
        assert "default/hello" in data["error"]
    assert objects(apiserver) == before
    assert [w for w in writes(apiserver) if "team" in w] == []


async def test_the_same_app_again_is_409_and_changes_nothing(admin: Admin, apiserver: FakeApiServer) -> None:
    assert (await call(admin, "POST", "/api/v1/apps", body=APP))[0] == 201
    before = objects(apiserver)
    status, data = await call(admin, "POST", "/api/v1/apps",
                              body={**APP, "image": "evil/image:1", "hosts": ["other.example.com"]})
    assert status == 409, data
    assert objects(apiserver) == before


async def test_concurrent_creates_claiming_one_host_make_one_app(admin: Admin, apiserver: FakeApiServer) -> None:
    bodies = [{**APP, "name": f"racer{i}", "hosts": ["contested.example.com"]} for i in range(8)]
    results = await asyncio.gather(*(call(admin, "POST", "/api/v1/apps", body=b) for b in bodies))
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [422] * 7, results
    services = apiserver.of_kind("Service")
    assert len(services) == 1
    assert len(apiserver.of_kind("Deployment")) == 1 and len(apiserver.of_kind("ScaledObject")) == 1


async def test_paths_with_traversal_never_reach_other_objects(admin: Admin, apiserver: FakeApiServer) -> None:
    apiserver.put({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "coredns", "namespace": "kube-system"}, "spec": {}})
    for path in ("/api/v1/apps/kube-system/coredns", "/api/v1/apps/default/..%2Fkube-system%2Fcoredns",
                 "/api/v1/apps/default%2F..%2Fkube-system/coredns", "/api/v1/apps/KUBE-SYSTEM/coredns"):
        status, _ = await call(admin, "DELETE", path)
        assert status == 404, path
    assert apiserver.get("Deployment", "kube-system", "coredns") is not None
    assert writes(apiserver) == []
