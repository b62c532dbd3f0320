"""KEDA's interface must match KEDA byte for byte on the wire, and the committed stubs must match the .proto."""

import filecmp
from pathlib import Path

from kedahttp.protos import externalscaler_pb2 as pb
from kedahttp.protos.generate import PROTO_FILES, generate

PACKAGE = Path(__file__).resolve().parents[2] / "kedahttp" / "protos"


def test_committed_stubs_match_the_protos(tmp_path: Path) -> None:
    generate(tmp_path)
    produced = sorted(p for p in (tmp_path / "kedahttp" / "protos").iterdir())
    assert {p.name for p in produced} >= {f"{name.removesuffix('.proto')}_pb2.py" for name, _ in PROTO_FILES}
    for path in produced:
        committed = PACKAGE / path.name
        assert committed.exists(), f"{path.name} is not committed: run `make proto`"
        assert filecmp.cmp(path, committed, shallow=False), f"{path.name} drifted from its .proto: run `make proto`"


def _fields(message) -> dict[str, tuple[int, str]]:
    return {f.name: (f.number, f.type) for f in message.DESCRIPTOR.fields}


def test_keda_external_scaler_facts() -> None:
    F = pb.ScaledObjectRef.DESCRIPTOR.fields_by_name
    assert pb.DESCRIPTOR.package == "externalscaler"
    service = pb.DESCRIPTOR.services_by_name["ExternalScaler"]
    methods = {m.name: (m.input_type.name, m.output_type.name, m.server_streaming) for m in service.methods}
    assert methods == {
        "IsActive": ("ScaledObjectRef", "IsActiveResponse", False),
        "StreamIsActive": ("ScaledObjectRef", "IsActiveResponse", True),
        "GetMetricSpec": ("ScaledObjectRef", "GetMetricSpecResponse", False),
        "GetMetrics": ("GetMetricsRequest", "GetMetricsResponse", False),
    }
    assert service.full_name == "externalscaler.ExternalScaler"
    T = F["name"].__class__
    assert _fields(pb.ScaledObjectRef)["name"] == (1, T.TYPE_STRING)
    assert _fields(pb.ScaledObjectRef)["namespace"] == (2, T.TYPE_STRING)
    assert F["scalerMetadata"].number == 3 and F["scalerMetadata"].message_type.GetOptions().map_entry
    assert _fields(pb.IsActiveResponse) == {"result": (1, T.TYPE_BOOL)}
    assert _fields(pb.GetMetricSpecResponse)["metricSpecs"][0] == 1
    assert _fields(pb.MetricSpec) == {
        "metricName": (1, T.TYPE_STRING), "targetSize": (2, T.TYPE_INT64), "targetSizeFloat": (3, T.TYPE_DOUBLE),
    }
    assert {k: v[0] for k, v in _fields(pb.GetMetricsRequest).items()} == {"scaledObjectRef": 1, "metricName": 2}
    assert _fields(pb.GetMetricsResponse)["metricValues"][0] == 1
    assert _fields(pb.MetricValue) == {
        "metricName": (1, T.TYPE_STRING), "metricValue": (2, T.TYPE_INT64), "metricValueFloat": (3, T.TYPE_DOUBLE),
    }
