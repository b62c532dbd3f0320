"""The admin API's OpenAPI 3.1 document, served at /api/v1/openapi.json.

Built in code rather than shipped as a file, so defaults and limits come from the same constants the
validation in appspec.py uses and cannot drift from it.
"""

from __future__ import annotations

from typing import Any

from kedahttp import __version__
from kedahttp.kube import appspec, trigger

_DNS1035 = "^[a-z]([-a-z0-9]*[a-z0-9])?$"
_DNS1123 = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_HOST = r"^(\*\.)?[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*$"


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": schema_ref}}}}


def _schemas() -> dict[str, Any]:
    positive = {"type": "number", "exclusiveMinimum": 0}
    create = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "image", "port", "hosts"],
        "properties": {
            "name": {"type": "string", "maxLength": 63, "pattern": _DNS1035,
                     "description": "name of the Deployment, Service and ScaledObject (a DNS-1035 label)"},
            "namespace": {"type": "string", "maxLength": 63, "pattern": _DNS1123, "default": appspec.DEFAULT_NAMESPACE,
                          "description": "default: the proxy's WATCH_NAMESPACE, else 'default'"},
            "image": {"type": "string", "minLength": 1, "maxLength": appspec.MAX_IMAGE_LENGTH},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "the container's HTTP port"},
            "hosts": {"type": "array", "minItems": 1, "maxItems": appspec.MAX_HOSTS,
                      "items": {"type": "string", "maxLength": 255, "pattern": _HOST},
                      "description": "exact host names or '*.' wildcards; a (host, path prefix) pair may "
                                     "belong to one app only (else 422 naming the host)"},
            "pathPrefixes": {"type": "array", "minItems": 1, "default": ["/"],
                             "items": {"type": "string", "pattern": "^/[^\\s,?#]*$",
                                       "maxLength": appspec.MAX_PATH_PREFIX_LENGTH},
                             "description": "longest prefix wins, matched on whole path segments"},
            "minReplicas": {"type": "integer", "minimum": 0, "default": appspec.DEFAULT_MIN_REPLICAS},
            "maxReplicas": {"type": "integer", "minimum": 1, "default": appspec.DEFAULT_MAX_REPLICAS,
                            "description": "at least minReplicas"},
            "targetConcurrency": {**positive, "default": trigger.DEFAULT_TARGET_CONCURRENCY,
                                  "description": "in-flight plus held requests per replica"},
            "targetRequestRate": {**positive, "description": "requests per second per replica; adds a second metric"},
            "coldStartTimeoutSeconds": {**positive, "description": "default: the proxy's COLD_START_TIMEOUT_SECONDS"},
            "env": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": appspec.MAX_ENV},
        },
    }
    app_props = {key: dict(value) for key, value in create["properties"].items()}  # type: ignore[attr-defined]
    app_props["status"] = {
        "type": "object",
        "properties": {
            "replicas": {"type": "integer"},
            "readyReplicas": {"type": "integer", "description": "from the Deployment's status"},
            "missing": {"type": "array", "items": {"enum": ["Deployment", "Service", "ScaledObject"]},
                        "description": "objects of the app that do not exist (deleted by hand)"},
            "inFlight": {"type": "integer", "description": "requests in flight through this proxy, when known"},
            "requestRate": {"type": "number", "description": "requests per second, when known"},
        },
        "additionalProperties": True,
    }
    app_props["createdAt"] = {"type": ["string", "null"], "format": "date-time"}
    return {
        "AppCreate": create,
        "App": {"type": "object", "properties": app_props},
        "AppList": {"type": "object", "properties": {"apps": {"type": "array", "items": {"$ref": "#/components/schemas/App"}}}},
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "field": {"type": "string", "description": "the offending field, on 422 (e.g. hosts[1], env.PORT)"},
                "failed": {"type": "string", "description": "on a failed create: the object that could not be made"},
                "rolledBack": {"type": "array", "items": {"type": "string"}},
                "leftOver": {"type": "array", "items": {"type": "string"}},
            },
        },
    }


def document() -> dict[str, Any]:
    app_path_params = [
        {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
    ]
    unauthorized = _error("missing or wrong bearer token")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kedahttp admin API",
            "version": __version__,
            "description": "Creates and deletes apps (Deployment + Service + KEDA ScaledObject) that the "
                           "kedahttp proxy routes to and scales from zero.",
        },
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "KEDAHTTP_ADMIN_TOKEN; not needed when the admin "
                                                          "API has no token and listens on loopback"}},
            "schemas": _schemas(),
        },
        "paths": {
            "/api/v1/apps": {
                "post": {
                    "summary": "Create an app: Deployment (0 replicas), Service, ScaledObject; all or nothing",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AppCreate"}}}},
                    "responses": {
                        "201": _json("#/components/schemas/App", "created"),
                        "400": _error("the body is not JSON"),
                        "401": unauthorized,
                        "409": _error("an object of the app exists already; nothing was left behind"),
                        "413": _error(f"body over {appspec.MAX_BODY_BYTES} bytes"),
                        "422": _error("bad input; `field` names it"),
                        "502": _error("the Kubernetes API refused (RBAC, KEDA not installed); what was made was rolled back"),
                        "503": _error("the Kubernetes API cannot be reached"),
                    },
                },
                "get": {
                    "summary": "List apps with status",
                    "parameters": [{"name": "namespace", "in": "query", "required": False, "schema": {"type": "string"}}],
                    "responses": {"200": _json("#/components/schemas/AppList", "the apps"), "401": unauthorized},
                },
            },
            "/api/v1/apps/{namespace}/{name}": {
                "parameters": app_path_params,
                "get": {
                    "summary": "One app with status",
                    "responses": {"200": _json("#/components/schemas/App", "the app"), "401": unauthorized,
                                  "404": _error("no such app")},
                },
                "delete": {
                    "summary": "Delete the app's ScaledObject, Service and Deployment",
                    "responses": {"204": {"description": "deleted"}, "401": unauthorized, "404": _error("no such app")},
                },
            },
            "/api/v1/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1 document"}}},
            },
        },
    }
