"""TLS between KEDA and the scaler, as shipped: the plain-Secret example (examples/scaler-tls) and the
cert-manager one (components/tls-cert-manager with examples/cert-manager-pki).

Both examples: the scaler and the controller mount the Secrets components/scaler-tls names and their TLS
settings point at keys those Secrets have; the ClusterTriggerAuthentication is valid for KEDA's CRD and
gives KEDA the three keys of its Secret. The plain-Secret example is then run: the real scaler, started
with the settings the rendered Deployment would have (the mount moved to a directory holding the Secret's
keys), answers a KEDA-like client holding the keys of KEDA's Secret and the controller's own client, and
refuses a client without a certificate. The cert-manager objects are valid for cert-manager's CRDs
(excerpts in tests/manifests/schemas), every issuer reference resolves, each Certificate writes the Secret
its reader mounts, and the server certificate names the address KEDA and the controller dial, in the
namespace of the install, for two namespaces.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import pytest
import yaml

from kedahttp.kube.controller_main import own_namespace, scaler_address
from kedahttp.kube.live import scaler_tls
from kedahttp.process import settings
from kedahttp.protos import externalscaler_pb2 as pb
from kedahttp.protos.externalscaler_pb2_grpc import ExternalScalerStub
from tests.harness import render
from tests.harness.certs import Pair, make_ca, make_signed
from tests.harness.crd import crd_validator, strict
from tests.harness.render import Build, rendered
from tests.harness.scaler import running_scaler

SCHEMAS = Path(__file__).parent / "schemas"
EXAMPLES = ("examples/scaler-tls", "examples/scaler-tls-cert-manager")
PKI = "examples/cert-manager-pki"
SECRET_KEYS = {"tls.crt", "tls.key", "ca.crt"}  # what a kubernetes.io/tls Secret from cert-manager holds
CTA = "kedahttp-scaler-tls"
KEDA_SECRET = ("keda", "kedahttp-scaler-tls-client")  # KEDA reads a ClusterTriggerAuthentication's Secrets there
SCALER_SETTINGS = ("scaler_tls_cert_file", "scaler_tls_key_file", "scaler_tls_client_ca_file")
CONTROLLER_SETTINGS = ("scaler_ca_file", "scaler_client_cert_file", "scaler_client_key_file")


@functools.cache
def validator(crd_file: str) -> jsonschema.protocols.Validator:
    return crd_validator(SCHEMAS / crd_file, "v1")


@functools.cache
def trigger_authentication_validator() -> jsonschema.protocols.Validator:
    """KEDA's TriggerAuthentication schema; a ClusterTriggerAuthentication has the same spec."""
    crd = render.load_yaml(render.SCHEMAS / "keda.sh_triggerauthentications.yaml")
    schema = strict(copy.deepcopy(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]))
    return jsonschema.validators.validator_for(schema)(schema)


def mounted_secret(build: Build, component: str) -> tuple[str, str, settings.Settings]:
    """(Secret name, mount path, settings) of a kedahttp component with the TLS volume."""
    workload, container = build.component(component)
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    [mount] = [m for m in container["volumeMounts"] if "secret" in volumes[m["name"]]]
    assert mount.get("readOnly") is True
    loaded = settings.load({}, environ=build.environment(workload, container), component=component)
    return volumes[mount["name"]]["secret"]["secretName"], mount["mountPath"], loaded


def files_in_mount(loaded: settings.Settings, names: tuple[str, ...], mount_path: str) -> dict[str, str]:
    """setting -> the Secret key it reads; fails when a path is outside the mount or names no key."""
    out = {}
    for name in names:
        path = Path(getattr(loaded, name))
        assert path.parent == Path(mount_path), f"{name}={path} is not in the Secret mounted at {mount_path}"
        assert path.name in SECRET_KEYS, f"{name}={path}: the Secret has no key {path.name}"
        out[name] = path.name
    return out


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_scaler_and_the_controller_read_the_keys_of_the_secrets_they_mount(name: str) -> None:
    build = rendered(name)
    secret, path, scaler = mounted_secret(build, "scaler")
    assert secret == "kedahttp-scaler-tls"
    keys = files_in_mount(scaler, SCALER_SETTINGS, path)
    assert keys == {"scaler_tls_cert_file": "tls.crt", "scaler_tls_key_file": "tls.key",
                    "scaler_tls_client_ca_file": "ca.crt"}  # mTLS: clients must show a certificate
    secret, path, controller = mounted_secret(build, "controller")
    assert secret == "kedahttp-controller-tls"
    files_in_mount(controller, CONTROLLER_SETTINGS, path)
    assert scaler_tls(controller) is not None  # the settings go together
    assert controller.scaler_trigger_authentication == CTA
    # the kubelet's gRPC probe cannot speak TLS: the scaler is probed on its port with TCP
    _, container = build.component("scaler")
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe] == {"tcpSocket": {"port": 9090}, "periodSeconds": container[probe]["periodSeconds"]}


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_cluster_trigger_authentication_gives_keda_its_three_keys(name: str) -> None:
    build = rendered(name)
    cta = build.get("ClusterTriggerAuthentication", "", CTA)
    assert cta is not None
    trigger_authentication_validator().validate(cta)
    refs = {r["parameter"]: (r["name"], r["key"]) for r in cta["spec"]["secretTargetRef"]}
    assert refs == {"caCert": (KEDA_SECRET[1], "ca.crt"), "tlsClientCert": (KEDA_SECRET[1], "tls.crt"),
                    "tlsClientKey": (KEDA_SECRET[1], "tls.key")}


def test_a_misspelt_cluster_trigger_authentication_is_rejected() -> None:
    """Guards the validator: the strict schema refuses a field KEDA does not have."""
    cta = copy.deepcopy(rendered(EXAMPLES[0]).get("ClusterTriggerAuthentication", "", CTA))
    assert cta is not None
    cta["spec"]["secretTargetRef"][0]["paramter"] = "caCert"
    with pytest.raises(jsonschema.ValidationError):
        trigger_authentication_validator().validate(cta)


# -- the plain-Secret example, run ----------------------------------------------------------------------


def secret_dir(root: Path, name: str, cert: Pair, ca: Pair) -> Path:
    """A directory laid out like a mounted Secret with the three keys."""
    directory = root / name
    directory.mkdir(parents=True)
    for key, source in (("tls.crt", cert.cert), ("tls.key", cert.key), ("ca.crt", ca.cert)):
        shutil.copy(source, directory / key)
    return directory


def moved(loaded: settings.Settings, names: tuple[str, ...], mount_path: str, directory: Path) -> dict[str, str]:
    return {name: str(directory / Path(getattr(loaded, name)).relative_to(mount_path)) for name in names}


async def answers(target: str, credentials: grpc.ChannelCredentials) -> grpc.StatusCode:
    async with grpc.aio.secure_channel(target, credentials) as channel:
        try:
            await ExternalScalerStub(channel).GetMetricSpec(pb.ScaledObjectRef(name="app", namespace="default"),
                                                            timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def test_the_plain_secret_example_serves_keda_and_the_controller_and_refuses_strangers(tmp_path: Path) -> None:
    build = rendered(EXAMPLES[0])
    namespace = build.component("scaler")[0]["metadata"]["namespace"]
    ca = make_ca(tmp_path / "pki")
    host = f"kedahttp-scaler.{namespace}.svc"  # what KEDA dials (and 127.0.0.1, where the test dials)
    server = make_signed(ca, tmp_path / "pki", "server", dns=host)
    client = make_signed(ca, tmp_path / "pki", "client", dns="keda-operator", client=True)
    scaler_secret = secret_dir(tmp_path, "kedahttp-scaler-tls", server, ca)
    controller_secret = secret_dir(tmp_path, "kedahttp-controller-tls", client, ca)
    keda_secret = secret_dir(tmp_path, KEDA_SECRET[1], client, ca)

    _, scaler_path, scaler = mounted_secret(build, "scaler")
    _, controller_path, controller = mounted_secret(build, "controller")
    flags = moved(scaler, SCALER_SETTINGS, scaler_path, scaler_secret)
    async with running_scaler(f"memory://tls-{uuid.uuid4().hex[:8]}", fresh=False, **flags) as running:
        # KEDA, with the keys its ClusterTriggerAuthentication names
        keda = grpc.ssl_channel_credentials((keda_secret / "ca.crt").read_bytes(), (keda_secret / "tls.key").read_bytes(),
                                            (keda_secret / "tls.crt").read_bytes())
        assert await answers(running.target, keda) == grpc.StatusCode.OK
        # the controller, with its own settings as rendered
        tls = scaler_tls(controller.replace(**moved(controller, CONTROLLER_SETTINGS, controller_path, controller_secret)))
        assert tls is not None
        assert await answers(running.target, tls.credentials()) == grpc.StatusCode.OK
        # no client certificate: refused
        stranger = grpc.ssl_channel_credentials((keda_secret / "ca.crt").read_bytes())
        assert await answers(running.target, stranger) == grpc.StatusCode.UNAVAILABLE


# -- cert-manager ------------------------------------------------------------------------------------------


def cert_manager_objects(*builds: Build) -> list[dict[str, Any]]:
    return [o for b in builds for o in b.objects if o["apiVersion"].startswith("cert-manager.io/")]


def issuer_of(certificate: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, Any]:
    ref = certificate["spec"]["issuerRef"]
    assert ref.get("group", "cert-manager.io") == "cert-manager.io"
    kind = ref.get("kind", "Issuer")
    namespace = certificate["metadata"].get("namespace") if kind == "Issuer" else None
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == ref["name"]
             and o["metadata"].get("namespace") == namespace]
    assert len(found) == 1, f"Certificate {certificate['metadata']['name']}: no {kind} {ref['name']} ({namespace})"
    return found[0]


def certificate(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == "Certificate" and o["metadata"]["name"] == name]
    return found


def test_the_cert_manager_objects_are_valid_and_every_issuer_resolves() -> None:
    install, pki = rendered(EXAMPLES[1]), rendered(PKI)
    objects = cert_manager_objects(install, pki)
    assert {o["kind"] for o in objects} == {"Certificate", "ClusterIssuer"}
    for obj in objects:
        crd = "cert-manager.io_certificates.excerpt.yaml" if obj["kind"] == "Certificate" else "cert-manager.io_issuers.excerpt.yaml"
        validator(crd).validate(obj)
    for cert in (o for o in objects if o["kind"] == "Certificate"):
        issuer = issuer_of(cert, objects)
        if "ca" in issuer["spec"]:  # a CA ClusterIssuer reads its key from cert-manager's namespace
            ca = certificate(objects, issuer["spec"]["ca"]["secretName"])
            assert ca["spec"]["isCA"] is True and ca["metadata"]["namespace"] == "cert-manager"
            assert "selfSigned" in issuer_of(ca, objects)["spec"]
    # whatever KEDA, the scaler and the controller read is made by a Certificate, with the right usage
    keda = certificate(objects, KEDA_SECRET[1])
    assert (keda["metadata"]["namespace"], keda["spec"]["secretName"]) == KEDA_SECRET
    assert "client auth" in keda["spec"]["usages"]
    for component, usage in (("scaler", "server auth"), ("controller", "client auth")):
        secret, _, _ = mounted_secret(install, component)
        [cert] = [c for c in objects if c["kind"] == "Certificate" and c["spec"]["secretName"] == secret]
        assert cert["metadata"]["namespace"] == install.component(component)[0]["metadata"]["namespace"]
        assert usage in cert["spec"]["usages"]


def test_a_misspelt_certificate_is_rejected() -> None:
    cert = copy.deepcopy(certificate(cert_manager_objects(rendered(EXAMPLES[1])), "kedahttp-scaler-tls"))
    cert["spec"]["dnsName"] = cert["spec"].pop("dnsNames")
    with pytest.raises(jsonschema.ValidationError):
        validator("cert-manager.io_certificates.excerpt.yaml").validate(cert)


def dialled_host(build: Build) -> str:
    """The host of the scalerAddress the controller writes into ScaledObjects (KEDA dials it) and dials itself."""
    workload, container = build.component("controller")
    loaded = settings.load({}, environ=build.environment(workload, container), component="controller")
    return scaler_address(loaded, own_namespace(loaded)).rpartition(":")[0]


def test_the_server_certificate_names_what_keda_dials() -> None:
    install = rendered(EXAMPLES[1])
    names = certificate(cert_manager_objects(install), "kedahttp-scaler-tls")["spec"]["dnsNames"]
    assert dialled_host(install) == "kedahttp-scaler.kedahttp.svc" and dialled_host(install) in names


@pytest.mark.parametrize("namespace", ["platform", "team-edge"])
def test_the_server_certificate_follows_the_namespace(namespace: str, tmp_path: Path) -> None:
    """The layout components/tls-cert-manager documents: `namespace:` set in a kustomization below the one
    that adds the component."""
    root = tmp_path / "manifests"
    shutil.copytree(render.MANIFESTS, root)
    moved_install = root / "overlays" / f"in-{namespace}"
    with_tls = root / "overlays" / f"in-{namespace}-tls"
    for directory, body in (
        (moved_install, {"namespace": namespace, "resources": ["../redis"]}),
        (with_tls, {"resources": [f"../in-{namespace}"],
                    "components": [os.path.relpath(root / "components" / "tls-cert-manager", with_tls)]}),
    ):
        directory.mkdir()
        (directory / "kustomization.yaml").write_text(yaml.safe_dump(
            {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", **body}))
    build = Build(with_tls.name, render.build(with_tls))
    certs = [o for o in build.objects if o["kind"] == "Certificate"]
    assert {c["metadata"]["namespace"] for c in certs} == {namespace}
    names = certificate(certs, "kedahttp-scaler-tls")["spec"]["dnsNames"]
    assert dialled_host(build) == f"kedahttp-scaler.{namespace}.svc" and dialled_host(build) in names
    assert not [n for n in names if ".kedahttp" in n], names
    assert build.get("Service", namespace, "kedahttp-scaler") is not None
    for component, names in (("scaler", SCALER_SETTINGS), ("controller", CONTROLLER_SETTINGS)):
        _, path, loaded = mounted_secret(build, component)  # the component's settings merged in that layout too
        files_in_mount(loaded, names, path)
