"""The OpenAPI document is complete, self-consistent and matches the app's routes exactly."""

from __future__ import annotations

import ast
import pathlib
import re

import msgspec
import pytest

from gateway import rest
from gateway.app import create_app
from gateway.config import Config
from gateway.errors import ERRORS
from gateway.openapi import build_openapi, path_parameters

DOC = build_openapi(rest.ALL_ROUTES)


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_openapi_module_is_pure():
    tree = ast.parse(pathlib.Path("gateway/openapi.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"asyncio", "psycopg", "aiohttp", "redis"}


def test_every_app_route_is_documented_and_every_documented_route_exists():
    app = create_app(Config(database_url="postgresql://127.0.0.1:1/unused"))  # not started: no connection
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    routes = {(m, p) for m, p in routes if not (m == "HEAD" and ("GET", p) in routes)}  # GET's automatic HEAD
    documented = {(m.upper(), p) for p, ops in DOC["paths"].items() for m in ops}
    assert routes == documented


def test_seed_endpoints_are_documented():
    paths = DOC["paths"]
    assert {"get", "post"} <= set(paths["/v1/realtime/channels"])
    assert {"get", "patch", "delete"} <= set(paths["/v1/realtime/channels/{channelId}"])
    assert "post" in paths["/v1/realtime/channels/{channelId}/publish"]
    history = paths["/v1/realtime/channels/{channelId}/history"]["get"]
    assert {p["name"] for p in history["parameters"]} == {"channelId", "limit", "before", "since"}
    limit = next(p for p in history["parameters"] if p["name"] == "limit")
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}


def test_every_ref_resolves_and_every_path_parameter_is_declared():
    schemas = DOC["components"]["schemas"]
    for ref in _refs(DOC):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    for path, ops in DOC["paths"].items():
        for method, op in ops.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(path_parameters(path)), (method, path)
            assert op["responses"], (method, path)
            assert re.fullmatch(r"[a-zA-Z]+", op["operationId"])


def test_request_schemas_are_the_validating_types():
    schemas = DOC["components"]["schemas"]
    create = schemas["CreateChannel"]
    assert create["required"] == ["name"] and create["additionalProperties"] is False
    assert set(create["properties"]) == {"name", "maxConnections", "rateLimit", "historyMaxCount",
                                         "historyMaxAgeSeconds"}
    # what the document says is exactly what the decoder enforces
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"name": "a", "maxConnections": 0}', type=rest.CreateChannel)
    assert schemas["RateLimitBody"]["properties"]["messages"]["minimum"] == 1
    publish = DOC["paths"]["/v1/realtime/channels/{channelId}/publish"]["post"]
    assert publish["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PublishBody"}


def test_error_responses_use_the_error_table():
    for path, ops in DOC["paths"].items():
        for op in ops.values():
            for status, resp in op["responses"].items():
                if int(status) >= 400 and "content" in resp:
                    assert resp["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorResponse"}
                    codes = re.findall(r"`([a-z_]+)`", resp["description"])
                    assert codes and all(ERRORS[c].http_status == int(status) for c in codes)
    limits = DOC["paths"]["/v1/realtime/channels/{channelId}/publish"]["post"]["responses"]["429"]
    assert "rate_limit_exceeded" in limits["description"] and "Retry-After" in limits["headers"]
    assert DOC["paths"]["/v1/realtime/channels"]["get"]["security"] == [{"apiKey": []}]
    assert "security" not in DOC["paths"]["/v1/openapi.json"]["get"]
