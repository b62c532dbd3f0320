"""`kedahttp apps` end to end: the installed console script, as a subprocess, against the admin API on a
real port, backed by the fake Kubernetes API server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.harness.admin import TOKEN, Admin
from tests.harness.fake_apiserver import FakeApiServer
from tests.harness.servers import free_port

KEDAHTTP = str(Path(sys.executable).parent / "kedahttp")


@dataclass
class Result:
    code: int
    out: str
    err: str


async def kedahttp(*args: str, **env: str) -> Result:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KEDAHTTP_")}
    environ.update(env)
    proc = await asyncio.create_subprocess_exec(
        KEDAHTTP, "apps", *args, env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def flags(admin: Admin) -> list[str]:
    return ["--server", admin.url, "--token", TOKEN]


async def test_create_get_list_delete(admin: Admin, apiserver: FakeApiServer) -> None:
    created = await kedahttp(
        "create", "hello", "--image", "ghcr.io/acme/hello:1", "--port", "8080", "--host", "hello.example.com",
        "--host", "*.hello.example.org", "--path-prefix", "/api", "--max-replicas", "3",
        "--target-concurrency", "5", "--target-request-rate", "2.5", "-e", "GREETING=hi there", "-n", "team",
        *flags(admin),
    )
    assert (created.code, created.out.strip(), created.err) == (0, "app team/hello created", "")
    scaled = apiserver.get("ScaledObject", "team", "hello")
    assert scaled is not None
    assert scaled["spec"]["triggers"][0]["metadata"]["targetRequestRate"] == "2.5"
    assert scaled["spec"]["maxReplicaCount"] == 3

    # server and token from the environment, JSON out
    env = {"KEDAHTTP_SERVER": admin.url, "KEDAHTTP_ADMIN_TOKEN": TOKEN}
    got = await kedahttp("get", "hello", "-n", "team", "-o", "json", **env)
    assert got.code == 0, got.err
    app = json.loads(got.out)
    assert app["hosts"] == ["hello.example.com", "*.hello.example.org"]
    assert app["pathPrefixes"] == ["/api"]
    assert app["env"] == {"GREETING": "hi there"}
    assert app["targetConcurrency"] == 5 and app["targetRequestRate"] == 2.5

    admin.context.statuses["team/hello"] = {"inFlight": 4, "requestRate": 12.5}
    listed = await kedahttp("list", "-o", "yaml", **env)
    assert listed.code == 0, listed.err
    assert [a["name"] for a in yaml.safe_load(listed.out)["apps"]] == ["hello"]
    table = await kedahttp("list", *flags(admin))
    header, row = table.out.strip().splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "HOSTS", "READY", "MIN", "MAX", "IN-FLIGHT", "RATE", "IMAGE"]
    assert row.split() == ["team", "hello", "hello.example.com,*.hello.example.org", "0/0", "0", "3", "4", "12.5",
                           "ghcr.io/acme/hello:1"]
    empty = await kedahttp("list", "-n", "elsewhere", *flags(admin))
    assert (empty.code, empty.out) == (0, "")
    assert "no apps" in empty.err

    deleted = await kedahttp("delete", "hello", "-n", "team", *flags(admin))
    assert (deleted.code, deleted.out.strip()) == (0, "app team/hello deleted")
    assert apiserver.of_kind("Deployment") == apiserver.of_kind("Service") == apiserver.of_kind("ScaledObject") == []
    again = await kedahttp("delete", "hello", "-n", "team", *flags(admin))
    assert again.code == 1 and again.out == ""
    assert "no app team/hello (HTTP 404)" in again.err
    ignored = await kedahttp("delete", "hello", "-n", "team", "--ignore-not-found", *flags(admin))
    assert (ignored.code, ignored.out, ignored.err) == (0, "", "")


async def test_api_errors_exit_1_on_stderr(admin: Admin) -> None:
    base = ["create", "hello", "--image", "img:1", "--host", "hello.example.com", *flags(admin)]
    assert (await kedahttp(*base, "--port", "8080")).code == 0
    conflict = await kedahttp(*base, "--port", "8080")
    assert (conflict.code, conflict.out) == (1, "")
    assert conflict.err.startswith("error: ") and "already exists (HTTP 409)" in conflict.err
    invalid = await kedahttp(*base, "--port", "70000")
    assert invalid.code == 1
    assert "port: must be between 1 and 65535 (HTTP 422)" in invalid.err
    denied = await kedahttp("list", "--server", admin.url, KEDAHTTP_ADMIN_TOKEN="wrong")
    assert denied.code == 1 and "HTTP 401" in denied.err
    gone = await kedahttp("list", "--server", f"http://127.0.0.1:{free_port()}")
    assert gone.code == 1 and "cannot reach the admin API" in gone.err


async def test_usage_errors_exit_2(admin: Admin) -> None:
    for args in (
        ["create", "hello", "--image", "img:1", "--port", "eighty", "--server", admin.url],
        ["create", "hello", "--port", "80", "--server", admin.url],  # no image
        ["create", "hello", "--image", "i", "--port", "80", "-e", "NOEQUALS", "--server", admin.url],
        ["get", "hello", "-o", "xml", "--server", admin.url],
    ):
        result = await kedahttp(*args)
        assert result.code == 2, (args, result)
        assert result.out == ""
