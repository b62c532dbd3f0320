"""The whole Kubernetes path through the real proxy: an app created on the proxy's admin API appears as a
Service in the (fake) cluster, the proxy's KubernetesSource routes it, a request for it is held while the
app has no ready endpoint, and is answered the moment its EndpointSlice turns ready."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from kedahttp.activity.bus import open_transport
from kedahttp.kube.cluster import Cluster
from kedahttp.proxy.kube_source import KubernetesSource
from tests.harness.fake_apiserver import FakeApiServer
from tests.harness.proxy import make_settings, start_proxy
from tests.harness.upstreams import Upstream
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)
TOKEN = "proxy-admin-token"


async def test_create_route_hold_and_release(
    apiserver: FakeApiServer, cluster: Cluster, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # the admin API finds the cluster as in a pod-less run
    settings = make_settings(admin_token=TOKEN, scaler_address="scaler.test:9090", cold_start_timeout_seconds=30)
    source = KubernetesSource(settings, cluster=cluster, watch_timeout_seconds=30, retry_min_seconds=0.02)
    upstream = await Upstream().start()
    proxy = await start_proxy(source, settings, open_transport(settings.bus))
    assert proxy.proxy.admin is not None
    admin_url = f"http://127.0.0.1:{proxy.proxy.admin.port}"
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as session:
            body = {"name": "hello", "image": "img:1", "port": upstream.port, "hosts": ["hello.test"]}
            async with session.post(f"{admin_url}/api/v1/apps", json=body,
                                    headers=auth) as response:
                assert response.status == 201, await response.text()
            await until(lambda: proxy.proxy.routes.get("default/hello") is not None, 10.0, "the route")

            # cold: the request is held ...
            held = asyncio.create_task(session.get(f"{proxy.url}/headers", headers={"Host": "hello.test"}))
            for _ in range(500):  # the proxy's own status, through the admin API
                async with session.get(f"{admin_url}/api/v1/apps/default/hello", headers=auth) as response:
                    status = (await response.json())["status"]
                if status.get("held") == 1:
                    break
                await asyncio.sleep(0.02)
            assert status["held"] == 1 and status["inFlight"] == 0 and status["readyReplicas"] == 0
            assert not held.done()
            # ... until the app's pod is ready, as the EndpointSlice controller reports it
            apiserver.put({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "hello-abc12", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "hello"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                "ports": [{"name": "http", "port": upstream.port, "protocol": "TCP"}],
            })
            response = await asyncio.wait_for(held, 10)
            async with response:
                assert response.status == 200
                assert response.headers.get("X-KEDAHTTP-Cold-Start") == "true"
                assert (await response.json())["path"] == "/headers"
            # warm now: straight through
            async with session.get(f"{proxy.url}/headers", headers={"Host": "hello.test"}) as response:
                assert response.status == 200
                assert "X-KEDAHTTP-Cold-Start" not in response.headers
            # deleted: the route goes away with the Service
            async with session.delete(f"{admin_url}/api/v1/apps/default/hello",
                                      headers=auth) as response:
                assert response.status == 204
            await until(lambda: proxy.proxy.routes.get("default/hello") is None, 10.0, "the route removed")
            async with session.get(f"{proxy.url}/", headers={"Host": "hello.test"}) as response:
                assert response.status == 404
    finally:
        await proxy.stop()
        await upstream.stop()
