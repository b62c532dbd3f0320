"""Which ScaledObject and trigger metadata the controller asks the scaler with, per app: pure data."""

from __future__ import annotations

from typing import Any

from kedahttp.kube.live import Query, queries


def scaled_object(name: str, ns: str = "default", owner: str | None = None, **metadata: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "kedahttp.dev/v1alpha1", "kind": "HTTPApp", "name": owner,
                                    "uid": "u", "controller": True}]
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": meta,
            "spec": {"triggers": [{"type": "cpu", "metadata": {"value": "50"}},
                                  {"type": "external-push", "metadata": metadata}]}}


def test_each_app_is_asked_about_as_keda_asks_about_its_scaled_object() -> None:
    owned = scaled_object("shop", owner="shop", backend="default/shop", targetConcurrency="10", keepAlive="adaptive")
    users = scaled_object("cart-scaler", backend="default/cart", activityWindowSeconds="30")
    implicit = scaled_object("legacy")  # no backend key: the ScaledObject's own namespace/name
    stray = scaled_object("other", backend="default/shop")  # names shop too; the owned one wins
    asked = queries(["default/shop", "default/cart", "default/legacy", "default/new"],
                    [stray, owned, users, implicit], {"default/shop": owned})
    assert asked == [
        Query("default/shop", "default", "shop",
              {"backend": "default/shop", "targetConcurrency": "10", "keepAlive": "adaptive"}),
        Query("default/cart", "default", "cart-scaler", {"backend": "default/cart", "activityWindowSeconds": "30"}),
        Query("default/legacy", "default", "legacy", {}),
        Query("default/new", "default", "new", {"backend": "default/new"}),  # nothing names it yet
    ]
