from __future__ import annotations

from tests.integration.kube.fixtures import admin, apiserver, cluster, kubeconfig

__all__ = ["admin", "apiserver", "cluster", "kubeconfig"]
