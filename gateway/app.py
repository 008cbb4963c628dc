"""``create_app(config)``: the aiohttp application with every shared object under gateway.appkeys.

Startup (cleanup_ctx, in order): open the Postgres pool, apply migrations, build the backends
(memory broker and presence, Postgres history, memory limits with Postgres usage counts), start
the node. Shutdown: on_shutdown closes every WebSocket with ``server_shutdown``; cleanup stops
the node (flushing accepted messages), the limits and the pool, awaiting every background task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from gateway import ws
from gateway.appkeys import AUTH, CHANNELS, CONFIG, DB, LIMITS, NODE
from gateway.auth import Authenticator
from gateway.broker_memory import MemoryBroker, MemoryBus
from gateway.channels import ChannelRegistry
from gateway.config import Config
from gateway.errors import NuvemError
from gateway.history import Retention
from gateway.history_postgres import HistoryPostgres
from gateway.limits_memory import MemoryLimits
from gateway.migrate import migrate
from gateway.node import Node
from gateway.presence import PresenceStore
from gateway.presence_memory import MemoryPresence

_log = structlog.get_logger("gateway.app")


_BUS: web.AppKey[MemoryBus | None] = web.AppKey("memory_bus")
_PRESENCE: web.AppKey[PresenceStore | None] = web.AppKey("presence_store")


def create_app(config: Config, *, bus: MemoryBus | None = None, presence: PresenceStore | None = None
               ) -> web.Application:
    """The app. ``bus``/``presence``: share these between apps in one process to run several
    nodes against one database (as tests do); by default each app has its own."""
    if not config.database_url:
        raise ValueError("create_app needs config.database_url (serve starts the embedded Postgres first)")
    app = web.Application(middlewares=[_errors_middleware])
    app[CONFIG] = config
    app[_BUS] = bus
    app[_PRESENCE] = presence
    app.cleanup_ctx.append(_backends)
    app.router.add_get("/healthz", _healthz)
    ws.add_routes(app)
    try:
        from gateway import rest
    except ModuleNotFoundError as e:  # pragma: no cover - only while the REST module is missing
        if e.name != "gateway.rest":
            raise
        _log.warning("gateway.rest not available: REST API disabled")
    else:
        rest.add_routes(app)
    return app


async def _backends(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    applied = await migrate(config.database_url)
    if applied:
        _log.info("migrations applied", names=applied)
    pool = AsyncConnectionPool(config.database_url, min_size=config.db_pool_min, max_size=config.db_pool_max,
                               open=False, kwargs={"autocommit": True})
    await pool.open(wait=True)
    limits = MemoryLimits(pool)
    channels = ChannelRegistry(pool)
    node_ref: list[Node] = []

    async def on_durable(pub):  # the history writer hands committed messages to the node
        await node_ref[0]._on_durable(pub)

    history = HistoryPostgres(pool, on_durable=on_durable, batch_max=config.history_batch_max,
                              flush_interval=config.history_flush_interval,
                              sweep_interval=config.history_sweep_interval)
    node = Node(broker=MemoryBroker(app[_BUS]), presence=app[_PRESENCE] or MemoryPresence(ttl=config.presence_ttl),
                history=history,
                limits=limits, channels=channels, presence_ttl=config.presence_ttl,
                default_retention=Retention(config.history_max_count, config.history_max_age_seconds))
    node_ref.append(node)
    app[DB] = pool
    app[LIMITS] = limits
    app[CHANNELS] = channels
    app[AUTH] = Authenticator(pool)
    app[NODE] = node
    await node.start()
    try:
        yield
    finally:
        await node.close()
        await limits.close()
        await pool.close()


async def _healthz(request: web.Request) -> web.Response:
    try:
        async with request.app[DB].connection(timeout=2.0) as conn:
            await conn.execute("SELECT 1")
    except Exception as e:
        return web.json_response({"status": "unavailable", "database": repr(e)}, status=503)
    return web.json_response({"status": "ok", "node": request.app[NODE].node_id})


@web.middleware
async def _errors_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Every error as {"error": {"code", "message", ...}}: NuvemError with the table's HTTP status,
    and aiohttp's own HTTP errors (unknown path 404, wrong method 405, body too large 413, ...)
    with their status instead of aiohttp's plain text."""
    try:
        return await handler(request)
    except NuvemError as e:
        return web.json_response(e.to_dict(), status=e.http_status)
    except web.HTTPException as e:
        if e.status < 400:   # redirects and the like pass through
            raise
        error, headers = _http_error(request, e)
        return web.json_response(error.to_dict(), status=e.status, headers=headers)


def _http_error(request: web.Request, e: web.HTTPException) -> tuple[NuvemError, dict[str, str]]:
    if isinstance(e, web.HTTPMethodNotAllowed):
        allowed = sorted(e.allowed_methods)
        return (NuvemError("invalid_request", f"method {request.method} is not allowed on {request.path};"
                           f" allowed: {', '.join(allowed)}", allowed=allowed),
                {"Allow": ", ".join(allowed)})
    if e.status == 404:
        return NuvemError("not_found", f"no such endpoint: {request.method} {request.path}; the API is under"
                          " /v1/realtime (see GET /v1/openapi.json)"), {}
    if e.status == 413:
        return NuvemError("payload_too_large", f"request body over the size limit: {e.text or e.reason}"), {}
    code = "unauthorized" if e.status == 401 else "forbidden" if e.status == 403 else \
        "internal_error" if e.status >= 500 else "invalid_request"
    return NuvemError(code, e.text or e.reason), {}
