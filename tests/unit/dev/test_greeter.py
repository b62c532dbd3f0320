"""The gRPC sample app's hand-made protobuf, and the dev config's protocol for it."""

from __future__ import annotations

import pytest

from kedahttp.dev import config
from kedahttp.dev.greeter import decode_string, encode_string


@pytest.mark.parametrize("text", ["", "you", "é" * 100, "x" * 70_000])
def test_string_field_round_trip(text: str) -> None:
    assert decode_string(encode_string(text)) == text


def test_decode_skips_other_fields() -> None:
    # field 2 varint 300, field 3 bytes "zz", then field 1 "hi"
    assert decode_string(b"\x10\xac\x02\x1a\x02zz\x0a\x02hi") == "hi"


def test_greeter_app_speaks_h2c_and_a_bad_protocol_is_named() -> None:
    app = config.parse({"apps": [{"name": "g", "hosts": ["g.localhost"], "command": "greeter"}]}).apps[0]
    assert app.protocol == "h2c" and not app.is_sample
    with pytest.raises(config.ConfigError, match="protocol"):
        config.parse({"apps": [{"name": "g", "hosts": ["g.localhost"], "protocol": "h3"}]})
