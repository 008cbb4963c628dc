"""REST API of the product page: channels, server-side publish, history, and the OpenAPI document.

aiohttp handlers only: every route is a ``RouteSpec`` (gateway.openapi), whose msgspec types
both validate the request and describe it in ``GET /v1/openapi.json``. All routes but the
OpenAPI document need ``Authorization: Bearer <secret api key>`` (never ``?apiKey=``: a secret
key in a URL ends up in logs); publishable keys and user tokens get 403 ``forbidden``. A secret key limited to some channel patterns only sees and
touches those channels. Errors are ``{"error": {"code", "message", ...}}`` with the status of
gateway.errors; 429s carry ``Retry-After`` when the wait is known.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any

import msgspec
import structlog
from aiohttp import web

from gateway.appkeys import AUTH, CHANNELS, NODE
from gateway.auth import Principal, credential_from_request
from gateway.channels import UNSET as CHANNEL_UNSET
from gateway.channels import (CHANNEL_NAME_GRAMMAR, ChannelConfig, RateLimit, channel_not_found, is_channel_id,
                              validate_channel_name)
from gateway.errors import NuvemError
from gateway.openapi import RouteSpec, build_openapi

_log = structlog.get_logger(__name__)

_INT4_MAX = 2**31 - 1   # the Postgres integer columns behind channel settings
PositiveInt = Annotated[int, msgspec.Meta(ge=1, le=_INT4_MAX)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0, le=_INT4_MAX)]
Offset = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]   # history offsets are bigint
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


# request and response types ------------------------------------------------------------------
class RateLimitBody(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """At most ``messages`` messages in any window of ``windowSeconds`` seconds."""
    messages: PositiveInt
    window_seconds: PositiveFloat


class CreateChannel(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    name: Annotated[str, msgspec.Meta(pattern=CHANNEL_NAME_GRAMMAR)]
    max_connections: PositiveInt | None = None
    rate_limit: RateLimitBody | None = None
    history_max_count: NonNegativeInt | None = None
    history_max_age_seconds: PositiveFloat | None = None


class UpdateChannel(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """Only the fields sent change; null removes a setting."""
    max_connections: PositiveInt | None | msgspec.UnsetType = msgspec.UNSET
    rate_limit: RateLimitBody | None | msgspec.UnsetType = msgspec.UNSET
    history_max_count: NonNegativeInt | None | msgspec.UnsetType = msgspec.UNSET
    history_max_age_seconds: PositiveFloat | None | msgspec.UnsetType = msgspec.UNSET


class PublishBody(msgspec.Struct, forbid_unknown_fields=True):
    event: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    payload: Any = None


class HistoryQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50
    before: Offset | None = None   # messages with offset < before (paging backwards)
    since: Offset | None = None    # messages with offset > since (catching up)


class Channel(msgspec.Struct, rename="camel"):
    """A channel: created by REST (id, config) or implicit (used but never created: id null)."""
    id: str | None
    name: str
    implicit: bool
    connections: int
    presence: int
    max_connections: int | None
    rate_limit: RateLimitBody | None
    history_max_count: int | None
    history_max_age_seconds: float | None
    created_at: datetime | None


class ChannelList(msgspec.Struct):
    channels: list[Channel]


class Published(msgspec.Struct, rename="camel"):
    channel: str
    offset: int
    event: str
    published_at: datetime


class HistoryMessage(msgspec.Struct, rename="camel"):
    offset: int
    event: str
    payload: Any
    published_at: datetime
    publisher: str | None = None


class HistoryPage(msgspec.Struct, rename="camel"):
    """Newest messages last. Page backwards with before=nextBefore while nextBefore is not null."""
    channel: str
    messages: list[HistoryMessage]
    next_before: int | None
    latest_offset: int
    earliest_offset: int


# helpers ---------------------------------------------------------------------------------------
_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_FIELD = re.compile(r"field `(?P<field>[^`]+)`")


def _invalid(e: msgspec.ValidationError, what: str) -> NuvemError:
    text = str(e)
    m = _AT.search(text)
    path = m.group("path") if m else ""
    f = _FIELD.search(text)
    if f:
        path = f"{path}.{f.group('field')}" if path else f.group("field")
    message = _AT.sub("", text)
    details = {"field": path} if path else {}
    return NuvemError("invalid_request", f"invalid {what}{' field ' + repr(path) if path else ''}: {message}",
                      **details)


async def _body(request: web.Request, t: type) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise NuvemError("payload_too_large", f"request body over {request.client_max_size} bytes") from None
    if not raw:
        raise NuvemError("invalid_request", "the request body must be a JSON object")
    try:
        return msgspec.json.decode(raw, type=t)
    except msgspec.ValidationError as e:
        raise _invalid(e, "request body") from None
    except msgspec.DecodeError as e:
        raise NuvemError("invalid_request", f"the request body is not valid JSON: {e}") from None


def _query(request: web.Request, t: type) -> Any:
    for name in request.query:
        if len(request.query.getall(name)) > 1:
            raise NuvemError("invalid_request", f"query parameter {name!r} is given more than once", field=name)
    try:
        return msgspec.convert(dict(request.query), t, strict=False)
    except msgspec.ValidationError as e:
        raise _invalid(e, "query parameter") from None


async def _admin(request: web.Request) -> Principal:
    if "apiKey" in request.query or "token" in request.query:
        # a secret key in a URL ends up in access logs, proxies and browser history
        raise NuvemError("unauthorized", "the REST API takes the key only in the 'Authorization: Bearer <api_key>'"
                         " header, never in the URL (?apiKey= is for browser WebSockets)")
    principal = await request.app[AUTH].authenticate(credential_from_request(request))
    principal.require_admin()
    return principal


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(obj), status=status, content_type="application/json")


def _error_response(e: NuvemError) -> web.Response:
    response = web.Response(body=msgspec.json.encode(e.to_dict()), status=e.http_status,
                            content_type="application/json")
    retry = e.details.get("retryAfter")
    if isinstance(retry, (int, float)):
        response.headers["Retry-After"] = str(max(1, math.ceil(retry)))
    if e.code == "unauthorized":
        response.headers["WWW-Authenticate"] = 'Bearer realm="nuvem-realtime"'
    return response


def _rendering_errors(handler):
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except NuvemError as e:
            return _error_response(e)
        except web.HTTPException:
            raise
        except Exception:
            _log.exception("rest_handler_failed", path=request.path, method=request.method)
            return _error_response(NuvemError("internal_error", "unexpected server error; safe to retry"))
    wrapped.__name__ = handler.__name__
    return wrapped


def _rate(rate: RateLimit | None) -> RateLimitBody | None:
    return RateLimitBody(rate.messages, rate.window_seconds) if rate else None


def _channel(name: str, config: ChannelConfig | None, stats: dict | None) -> Channel:
    connections = int(stats.get("connections", 0)) if stats else 0
    presence = int(stats.get("presence", 0)) if stats else 0
    if config is None:
        return Channel(None, name, True, connections, presence, None, None, None, None, None)
    return Channel(config.id, config.name, False, connections, presence, config.max_connections,
                   _rate(config.rate_limit), config.history_max_count, config.history_max_age_seconds,
                   config.created_at)


async def _stats_by_name(request: web.Request) -> dict[str, dict]:
    return {s["name"]: s for s in await request.app[NODE].channel_stats()}


async def _resolve(request: web.Request, principal: Principal, *,
                   bad_name_is_404: bool = False) -> tuple[str, ChannelConfig | None]:
    """The channel :channelId names (an id or a name) and its config (None: implicit), if the
    principal may use it. An unknown id is 404 channel_not_found; a ref that is no valid name is
    400 invalid_request naming the grammar, or 404 with ``bad_name_is_404`` (lookups)."""
    ref = request.match_info["channelId"]
    config = await request.app[CHANNELS].get(ref)
    if config is None:
        if is_channel_id(ref):
            raise channel_not_found(ref)
        try:
            validate_channel_name(ref)
        except NuvemError:
            if bad_name_is_404:
                raise channel_not_found(ref) from None
            raise
    name = config.name if config else ref
    principal.require_access(name)
    return name, config


async def _created(request: web.Request, principal: Principal) -> ChannelConfig:
    """The config of the channel created by REST that :channelId names, else 404 channel_not_found."""
    _name, config = await _resolve(request, principal, bad_name_is_404=True)
    if config is None:
        raise channel_not_found(request.match_info["channelId"])
    return config


# handlers --------------------------------------------------------------------------------------
async def list_channels(request: web.Request) -> web.Response:
    principal = await _admin(request)
    stats = await _stats_by_name(request)
    created = {c.name: c for c in await request.app[CHANNELS].list()}
    names = sorted(set(stats) | set(created))
    return _json(ChannelList([_channel(n, created.get(n), stats.get(n)) for n in names
                              if principal.can_access(n)]))


async def create_channel(request: web.Request) -> web.Response:
    principal = await _admin(request)
    body: CreateChannel = await _body(request, CreateChannel)
    principal.require_access(body.name)
    rate = RateLimit(body.rate_limit.messages, body.rate_limit.window_seconds) if body.rate_limit else None
    config = await request.app[CHANNELS].create(
        body.name, max_connections=body.max_connections, rate_limit=rate,
        history_max_count=body.history_max_count, history_max_age_seconds=body.history_max_age_seconds)
    stats = (await _stats_by_name(request)).get(config.name)
    return _json(_channel(config.name, config, stats), status=201)


async def get_channel(request: web.Request) -> web.Response:
    principal = await _admin(request)
    name, config = await _resolve(request, principal, bad_name_is_404=True)
    stats = (await _stats_by_name(request)).get(name)
    if config is None and stats is None:
        page = await request.app[NODE].history(name, limit=1)
        if page.latest_offset == 0:
            raise channel_not_found(name)
    return _json(_channel(name, config, stats))


async def update_channel(request: web.Request) -> web.Response:
    config = await _created(request, await _admin(request))
    body: UpdateChannel = await _body(request, UpdateChannel)
    changes: dict[str, Any] = {}
    for attr in ("max_connections", "history_max_count", "history_max_age_seconds"):
        value = getattr(body, attr)
        changes[attr] = CHANNEL_UNSET if value is msgspec.UNSET else value
    if body.rate_limit is msgspec.UNSET:
        changes["rate_limit"] = CHANNEL_UNSET
    else:
        changes["rate_limit"] = (RateLimit(body.rate_limit.messages, body.rate_limit.window_seconds)
                                 if body.rate_limit else None)
    config = await request.app[CHANNELS].update(config.id, **changes)
    stats = (await _stats_by_name(request)).get(config.name)
    return _json(_channel(config.name, config, stats))


async def delete_channel(request: web.Request) -> web.Response:
    config = await _created(request, await _admin(request))
    await request.app[CHANNELS].delete(config.id)
    return web.Response(status=204)


async def publish(request: web.Request) -> web.Response:
    principal = await _admin(request)
    name, _config = await _resolve(request, principal)
    body: PublishBody = await _body(request, PublishBody)
    pub = await request.app[NODE].publish(name, body.event, body.payload, principal=principal,
                                          publisher=principal.user_id)
    return _json(Published(pub.channel, pub.offset, pub.event, pub.published_at))


async def history(request: web.Request) -> web.Response:
    principal = await _admin(request)
    query: HistoryQuery = _query(request, HistoryQuery)
    if query.before is not None and query.since is not None:
        raise NuvemError("invalid_request", "use either 'before' (older pages) or 'since' (newer messages),"
                         " not both", field="before")
    name, _config = await _resolve(request, principal)
    page = await request.app[NODE].history(name, limit=query.limit, before=query.before, since=query.since)
    return _json(HistoryPage(
        name, [HistoryMessage(m.offset, m.event, m.payload, m.published_at, m.publisher) for m in page.messages],
        page.next_before, page.latest_offset, page.earliest_offset))


async def openapi_document(request: web.Request) -> web.Response:
    return _json(build_openapi(ALL_ROUTES))


# routes ------------------------------------------------------------------------------------------
_AUTH_ERRORS = ("unauthorized", "forbidden", "unavailable")   # unavailable: the key store (Postgres) is down
_CHANNEL = "/v1/realtime/channels/{channelId}"

ROUTES: list[RouteSpec] = [
    RouteSpec("GET", "/v1/realtime/channels", "listChannels", "List active and created channels",
              list_channels, responses={200: ("channels with connection and presence counts", ChannelList)},
              errors=_AUTH_ERRORS),
    RouteSpec("POST", "/v1/realtime/channels", "createChannel", "Create a channel with a config",
              create_channel, body=CreateChannel, responses={201: ("the created channel", Channel)},
              errors=("invalid_request", *_AUTH_ERRORS, "conflict", "payload_too_large")),
    RouteSpec("GET", _CHANNEL, "getChannel", "Get a created channel, or an implicit one with activity",
              get_channel, responses={200: ("the channel", Channel)},
              errors=(*_AUTH_ERRORS, "channel_not_found")),
    RouteSpec("PATCH", _CHANNEL, "updateChannel", "Change a created channel's config", update_channel,
              body=UpdateChannel, responses={200: ("the updated channel", Channel)},
              errors=("invalid_request", *_AUTH_ERRORS, "channel_not_found", "payload_too_large")),
    RouteSpec("DELETE", _CHANNEL, "deleteChannel", "Delete a created channel's config (it becomes implicit)",
              delete_channel, responses={204: ("deleted", None)},
              errors=(*_AUTH_ERRORS, "channel_not_found")),
    RouteSpec("POST", _CHANNEL + "/publish", "publish", "Publish from the server", publish,
              body=PublishBody, responses={200: ("accepted, with its offset", Published)},
              errors=("invalid_request", *_AUTH_ERRORS, "channel_not_found", "payload_too_large",
                      "rate_limit_exceeded", "message_quota_exceeded"),
              description="Delivered to WebSocket subscribers like any message, stored in history."),
    RouteSpec("GET", _CHANNEL + "/history", "history", "Read a channel's history", history,
              query=HistoryQuery, responses={200: ("a page of messages, oldest first", HistoryPage)},
              errors=("invalid_request", *_AUTH_ERRORS, "channel_not_found")),
    RouteSpec("GET", "/v1/openapi.json", "openapi", "This document", openapi_document,
              responses={200: ("the OpenAPI 3.1 document", None)}, auth=False),
]

# served by gateway.app / gateway.ws (core); listed here so the document covers every route
CORE_ROUTES: list[RouteSpec] = [
    RouteSpec("GET", "/healthz", "health", "Liveness and readiness", None,
              responses={200: ("healthy", None), 503: ("a backend is unavailable", None)}, auth=False),
    RouteSpec("GET", "/v1/realtime/ws", "websocket", "WebSocket endpoint (see docs/protocol.md)", None,
              responses={101: ("switching to the WebSocket protocol", None)},
              errors=("unauthorized", "connection_limit_exceeded"), auth=True,
              description="The API key comes as ?apiKey=, a user token as ?token=, or Authorization: Bearer."),
]

ALL_ROUTES = ROUTES + CORE_ROUTES


def add_routes(app: web.Application) -> None:
    """Register every REST route of this module on ``app`` (core registers /healthz and the WebSocket)."""
    for spec in ROUTES:
        app.router.add_route(spec.method, spec.path, _rendering_errors(spec.handler), name=spec.operation_id)
