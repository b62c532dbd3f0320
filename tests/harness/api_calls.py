"""Derives, from the source, every Kubernetes API request the proxy can make, as RBAC (group, resource, verb).

Two layers are read with ``ast``, nothing is run:

1. ``kedahttp/kube/cluster.py`` (the only module that imports ``kubernetes``): which client function
   serves each operation (``_Ops`` field) for each ``Kind``, and which operations each public ``Cluster``
   method uses. The client function's own request (HTTP method and path) comes from the installed
   ``kubernetes`` client, so the path is the client's truth, not a guess from the function name.
2. Every other module importing ``kedahttp.kube.cluster``: which ``Cluster`` methods it calls (or passes
   on, as in ``self._call(cluster.create, kind, ...)``) with which ``Kind``. A literal Kind constant
   counts exactly; a Kind held in a variable counts as every Kind constant that module names.

The result is what the RBAC rules must grant: no less, and no more.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client as k8s

from tests.harness.render import REPO

PACKAGE = REPO / "kedahttp"
CLUSTER = PACKAGE / "kube" / "cluster.py"
CLUSTER_MODULE = "kedahttp.kube.cluster"


@dataclass(frozen=True, order=True)
class Permission:
    group: str
    resource: str
    verb: str

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}{'.' + self.group if self.group else ''}"


@dataclass(frozen=True)
class KindInfo:
    group: str
    plural: str


class DerivationError(AssertionError):
    """The source uses a pattern this reader does not understand: extend it rather than guess."""


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _kinds(tree: ast.Module) -> dict[str, KindInfo]:
    """Module-level ``NAME = Kind("Kind", "group", "version", "plural")``."""
    kinds = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id == "Kind"
        ):
            _, group, _, plural = (ast.literal_eval(a) for a in node.value.args)
            for target in node.targets:
                assert isinstance(target, ast.Name)
                kinds[target.id] = KindInfo(group, plural)
    if not kinds:
        raise DerivationError(f"{CLUSTER}: no `NAME = Kind(...)` constants found")
    return kinds


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise DerivationError(f"{CLUSTER}: no function {name}")


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise DerivationError(f"{CLUSTER}: no class {name}")


def client_request(api_class: str, method: str) -> tuple[str, str]:
    """(HTTP method, resource path) of a client function, read from the installed client's source."""
    cls = getattr(k8s, api_class)
    serializer = getattr(cls, f"_{method}_serialize", None)
    source = inspect.getsource(
        serializer if serializer is not None else getattr(cls, f"{method}_with_http_info")
    )
    http = re.search(r"method='(\w+)'", source) or re.search(r"'(GET|POST|PUT|PATCH|DELETE)'", source)
    path = re.search(r"resource_path='([^']+)'", source) or re.search(r"call_api\(\s*'([^']+)'", source)
    if not (http and path):
        raise DerivationError(f"cannot read the request of {api_class}.{method} from the client's source")
    return http[1], path[1]


def permission(http: str, path: str, kind: KindInfo, watch: bool) -> Permission:
    """What RBAC calls a request: the resource (with subresource) and the verb."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        group, rest = "", parts[2:]
    else:
        group, rest = parts[1], parts[3:]
    if group == "{group}":
        group = kind.group
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    resource = kind.plural if rest[0] == "{plural}" else rest[0]
    item = len(rest) >= 2
    subresource = "/".join(rest[2:])
    if subresource:
        resource = f"{resource}/{subresource}"
    verbs = {
        ("GET", True): "get",
        ("GET", False): "watch" if watch else "list",
        ("POST", False): "create",
        ("PUT", True): "update",
        ("PATCH", True): "patch",
        ("DELETE", True): "delete",
        ("DELETE", False): "deletecollection",
    }
    if (http, item) not in verbs:
        raise DerivationError(f"no RBAC verb for {http} {path}")
    return Permission(group, resource, verbs[(http, item)])


def _ops_capabilities(
    tree: ast.Module, kinds: dict[str, KindInfo]
) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """(Kind constant, _Ops field) -> {(api class, client method)} from the ``_ops_table`` function."""
    fields = [
        n.target.id
        for n in _class(tree, "_Ops").body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    ]
    table = _function(tree, "_ops_table")
    receivers = {}  # local name -> API class, from `core = k8s.CoreV1Api(api_client)`
    for node in ast.walk(table):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr.endswith("Api")
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    receivers[target.id] = node.value.func.attr
    returned = [n.value for n in table.body if isinstance(n, ast.Return)]  # not those of nested helpers
    if len(returned) != 1 or not isinstance(returned[0], ast.Dict):
        raise DerivationError("_ops_table must return one dict literal {KIND: _Ops(...)}")
    capabilities: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for key, value in zip(returned[0].keys, returned[0].values, strict=True):
        if not (isinstance(key, ast.Name) and key.id in kinds and isinstance(value, ast.Call)):
            raise DerivationError(
                f"_ops_table entry {ast.unparse(key) if key else '**'} is not KIND: _Ops(...)"
            )
        args = dict(zip(fields, value.args, strict=False)) | {k.arg: k.value for k in value.keywords if k.arg}
        for field, expr in args.items():
            calls = {
                (receivers[n.value.id], n.attr)
                for n in ast.walk(expr)
                if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in receivers
            }
            if len(calls) != 1:
                raise DerivationError(
                    f"_ops_table: {key.id}.{field} should name one client function: {ast.unparse(expr)}"
                )
            capabilities[(key.id, field)] = calls
    return capabilities


def _method_operations(tree: ast.Module, fields: set[str]) -> dict[str, tuple[set[str], bool]]:
    """Public ``Cluster`` method -> (_Ops fields it reaches, whether it watches)."""
    methods = {n.name: n for n in _class(tree, "Cluster").body if isinstance(n, ast.FunctionDef)}
    direct: dict[str, tuple[set[str], set[str], bool]] = {}
    for name, node in methods.items():
        used = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute) and n.attr in fields}
        calls = {
            n.attr
            for n in ast.walk(node)
            if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name)
            and n.value.id == "self"
            and n.attr in methods
        }
        watches = any(
            (
                isinstance(n, ast.Dict)
                and any(
                    isinstance(k, ast.Constant)
                    and k.value == "watch"
                    and isinstance(v, ast.Constant)
                    and v.value is True
                    for k, v in zip(n.keys, n.values, strict=True)
                )
            )
            or (
                isinstance(n, ast.keyword)
                and n.arg == "watch"
                and isinstance(n.value, ast.Constant)
                and n.value.value
            )
            for n in ast.walk(node)
        )
        direct[name] = (used, calls, watches)

    def reach(name: str, seen: frozenset[str] = frozenset()) -> tuple[set[str], bool]:
        used, calls, watches = direct[name]
        out = set(used)
        for callee in calls - seen - {name}:
            more, more_watch = reach(callee, seen | {name})
            out |= more
            watches = watches or more_watch
        return out, watches

    return {name: reach(name) for name in methods if not name.startswith("_")}


def _cluster_imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == CLUSTER_MODULE:
            names |= {alias.asname or alias.name for alias in node.names}
    return names


def callers() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if path != CLUSTER and _cluster_imports(parse(path)))


def _uses(path: Path, methods: set[str], kinds: set[str]) -> set[tuple[str, str]]:
    """(Cluster method, Kind constant) pairs one caller module uses."""
    tree = parse(path)
    imported = _cluster_imports(tree)
    module_kinds = kinds & imported
    if any(
        isinstance(n, ast.ImportFrom) and n.module == CLUSTER_MODULE and n.names[0].name == "*"
        for n in ast.walk(tree)
    ):
        raise DerivationError(f"{path}: `from {CLUSTER_MODULE} import *` hides which kinds it uses")

    def method_of(node: ast.expr) -> str | None:
        # `cluster.create`, `self.cluster.list`, `self._cluster.watch`: a Cluster method on a cluster object
        if (
            isinstance(node, ast.Attribute)
            and node.attr in methods
            and "cluster" in ast.unparse(node.value).lower()
        ):
            return node.attr
        return None

    def kinds_of(node: ast.expr | None, where: ast.AST) -> set[str]:
        if isinstance(node, ast.Name) and node.id in kinds:
            return {node.id}
        if not module_kinds:
            raise DerivationError(
                f"{path}:{getattr(where, 'lineno', '?')}: cannot tell the Kind of {ast.unparse(where)}"
            )
        return module_kinds

    pairs: set[tuple[str, str]] = set()
    seen: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        direct = method_of(node.func)
        if direct:  # cluster.list(KIND, ...)
            seen.add(id(node.func))
            first = (
                node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "kind"), None)
            )
            pairs |= {(direct, k) for k in kinds_of(first, node)}
            continue
        for index, arg in enumerate(node.args):  # helper(cluster.list, KIND, ...)
            passed = method_of(arg)
            if passed:
                seen.add(id(arg))
                following = node.args[index + 1] if index + 1 < len(node.args) else None
                pairs |= {(passed, k) for k in kinds_of(following, node)}
    for node in ast.walk(tree):  # a method reference used some other way would escape the analysis
        if isinstance(node, ast.Attribute) and method_of(node) and id(node) not in seen:
            raise DerivationError(f"{path}:{node.lineno}: unrecognised use of {ast.unparse(node)}")
    return pairs


def derive() -> tuple[set[Permission], list[str]]:
    """The permissions the proxy's code needs, and a trace of where each comes from."""
    tree = parse(CLUSTER)
    kinds = _kinds(tree)
    capabilities = _ops_capabilities(tree, kinds)
    fields = {field for _, field in capabilities}
    operations = _method_operations(tree, fields)
    needed: set[Permission] = set()
    trace: list[str] = []
    api_methods = {name for name, (used, _) in operations.items() if used}  # not from_environment, close
    for path in callers():
        for method, kind in sorted(_uses(path, api_methods, set(kinds))):
            used_fields, watches = operations[method]
            for field in sorted(used_fields):
                for api_class, client_method in capabilities[(kind, field)]:
                    http, resource_path = client_request(api_class, client_method)
                    granted = permission(http, resource_path, kinds[kind], watches)
                    needed.add(granted)
                    trace.append(
                        f"{path.relative_to(REPO)}: Cluster.{method}({kind}) -> {api_class}.{client_method} "
                        f"-> {http} {resource_path} -> {granted}"
                    )
    return needed, trace


def imports_kubernetes(path: Path) -> bool:
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "kubernetes" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "kubernetes":
            return True
    return False
