"""With no ADMIN_TOKEN, the admin API may only listen on a loopback address."""

from __future__ import annotations

import pytest

from kedahttp.kube.apps_api import AdminExposureError, check_admin_exposure
from kedahttp.process.settings import SettingError, load


@pytest.mark.parametrize("addr", ["127.0.0.1:8081", "[::1]:8081", "localhost:8081", "127.0.0.9:1"])
def test_loopback_without_token_is_allowed(addr: str) -> None:
    check_admin_exposure(load({"admin_addr": addr}, environ={}))


@pytest.mark.parametrize("addr", ["0.0.0.0:8081", "[::]:8081", "10.1.2.3:8081", "proxy.internal:8081"])
def test_non_loopback_without_token_is_refused(addr: str) -> None:
    with pytest.raises(AdminExposureError) as caught:
        check_admin_exposure(load({"admin_addr": addr}, environ={}))
    assert isinstance(caught.value, SettingError)  # the proxy's start-up reports it like a bad setting
    assert "KEDAHTTP_ADMIN_TOKEN" in str(caught.value) and "KEDAHTTP_ADMIN_ADDR" in str(caught.value)


def test_any_address_with_a_token_is_allowed() -> None:
    check_admin_exposure(load({"admin_addr": "0.0.0.0:8081", "admin_token": "s3cret"}, environ={}))
