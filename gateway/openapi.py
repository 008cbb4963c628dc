"""OpenAPI 3.1 document built from the same route specs and msgspec types the REST layer uses.

Pure: no aiohttp. ``gateway.rest`` registers its handlers from ``RouteSpec``s and validates
bodies and query strings with their msgspec types; ``build_openapi`` renders the very same
specs, so the document cannot drift from the implementation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.errors import ERRORS

_REF = "#/components/schemas/{name}"


class ErrorDetail(msgspec.Struct):
    """Every error on REST and WebSocket; extra details (retryAfter, field, limit, ...) may follow."""
    code: str
    message: str


class ErrorResponse(msgspec.Struct):
    error: ErrorDetail


@dataclass(frozen=True)
class RouteSpec:
    method: str                                  # "GET", "POST", ...
    path: str                                    # aiohttp syntax: /v1/realtime/channels/{channelId}
    operation_id: str
    summary: str
    handler: Callable[..., Any] | None = None    # None: served by another module (core)
    body: type | None = None                     # msgspec Struct of the JSON body
    query: type | None = None                    # msgspec Struct of the query string
    responses: dict[int, tuple[str, type | None]] = field(default_factory=dict)
    errors: tuple[str, ...] = ()                 # error codes from gateway.errors this route can return
    auth: bool = True                            # needs Authorization: Bearer <secret api key>
    description: str = ""


def path_parameters(path: str) -> list[str]:
    return re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", path)


def build_openapi(routes: list[RouteSpec], *, title: str = "Nuvem Realtime", version: str = "0.1.0") -> dict:
    types: list[type] = [ErrorResponse]
    for r in routes:
        types += [t for t in (r.body, r.query) if t is not None]
        types += [t for _, t in r.responses.values() if t is not None]
    types = list(dict.fromkeys(types))
    refs, components = msgspec.json.schema_components(types, ref_template=_REF)
    schema_of = dict(zip(types, refs))
    paths: dict[str, dict] = {}
    for r in routes:
        op: dict[str, Any] = {"operationId": r.operation_id, "summary": r.summary}
        if r.description:
            op["description"] = r.description
        params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"},
                   "description": "the channel's id (ch_...) or its URL-encoded name"} for p in path_parameters(r.path)]
        if r.query is not None:
            q = components[r.query.__name__]
            params += [{"name": name, "in": "query", "required": name in q.get("required", ()), "schema": s}
                       for name, s in q["properties"].items()]
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": schema_of[r.body]}}}
        responses: dict[str, Any] = {}
        for status, (desc, t) in sorted(r.responses.items()):
            resp: dict[str, Any] = {"description": desc}
            if t is not None:
                resp["content"] = {"application/json": {"schema": schema_of[t]}}
            responses[str(status)] = resp
        by_status: dict[int, list[str]] = {}
        for code in r.errors:
            by_status.setdefault(ERRORS[code].http_status, []).append(code)
        for status, codes in sorted(by_status.items()):
            responses[str(status)] = {
                "description": " or ".join(f"`{c}`: {ERRORS[c].description}" for c in codes),
                "content": {"application/json": {"schema": schema_of[ErrorResponse]}}}
            if status == 429:
                responses[str(status)]["headers"] = {"Retry-After": {
                    "description": "seconds to wait, when known", "schema": {"type": "integer"}}}
        op["responses"] = responses
        if r.auth:
            op["security"] = [{"apiKey": []}]
        paths.setdefault(_openapi_path(r.path), {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "REST API of Nuvem Realtime. Errors: {\"error\": {\"code\", \"message\", ...}}."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "a secret API key (nv_live_... / nv_test_...)"}},
        },
    }


def _openapi_path(path: str) -> str:
    return re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*)(:[^}]*)?\}", r"{\1}", path)
