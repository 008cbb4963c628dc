"""``nuvem-realtime serve``: HTTP and WebSocket on one port.

Without a database URL (``--database-url`` or ``NUVEM_DATABASE_URL``) it starts the embedded
Postgres in ``./.nuvem/pgdata`` (kept between runs), says so, and stops it on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys

import structlog
from aiohttp import web
from aiohttp.web_log import AccessLogger, KeyMethod

from gateway.config import Config, ConfigError

_log = structlog.get_logger("gateway.serve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=None, help="Postgres URL (default: $NUVEM_DATABASE_URL, "
                        "else an embedded Postgres in ./.nuvem/pgdata)")
    parser.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="listen port (default 4000)")
    parser.add_argument("--config", default=None, help="TOML file with settings (see gateway/config.py)")
    parser.add_argument("--event-loop", dest="event_loop", choices=["auto", "uvloop", "asyncio"], default=None,
                        help="asyncio event loop implementation (default auto: uvloop when installed)")


def run(args: argparse.Namespace) -> int:
    try:
        config = Config.load({k: getattr(args, k, None) for k in ("database_url", "host", "port", "config", "event_loop")})
    except ConfigError as e:
        print(f"nuvem-realtime serve: {e}", file=sys.stderr)
        return 2
    embedded = None
    if not config.database_url:
        from cdc.local_postgres import LocalPostgres

        embedded = LocalPostgres(data_dir="./.nuvem/pgdata", keep=True)
        embedded.start()
        _log.info("no database URL given: started the embedded Postgres", data_dir=str(embedded.data_dir),
                  dsn=embedded.dsn)
        config = config.replace(database_url=embedded.dsn)
    try:
        from gateway.app import create_app

        loop = _new_event_loop(config.event_loop)
        if config.access_log:
            _enable_access_log()
        _log.info("serving", url=f"http://{config.host}:{config.port}",
                  ws=f"ws://{config.host}:{config.port}/v1/realtime/ws", event_loop=type(loop).__module__)
        web.run_app(create_app(config), host=config.host, port=config.port, print=None,
                    shutdown_timeout=5.0, loop=loop, access_log_class=RedactingAccessLogger)
    finally:
        if embedded is not None:
            embedded.stop()
            _log.info("embedded Postgres stopped")
    return 0


def _enable_access_log() -> None:
    access = logging.getLogger("aiohttp.access")
    access.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [access] %(message)s"))
    access.addHandler(handler)
    access.propagate = False


def _new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """uvloop (faster socket writes for fan-out) when asked for or, with "auto", when installed."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise ConfigError("event_loop = uvloop but uvloop is not installed (pip install uvloop)") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


# Credentials travel in the query string of WebSocket URLs (browsers cannot set headers).
_SECRET_QUERY = re.compile(r"(?<=[?&])(apikey|api_key|token|access_token)=[^&#\s]*", re.IGNORECASE)


def redact_query(target: str) -> str:
    """``target`` (a request line, path or URL) with the values of credential query
    parameters (apiKey, token, ...) replaced by ``REDACTED``."""
    return _SECRET_QUERY.sub(lambda m: m.group(1) + "=REDACTED", target)


class RedactingAccessLogger(AccessLogger):
    """aiohttp's access log (same format) without the credentials of ``?apiKey=``/``?token=``
    in the request line (``%r``) or the ``Referer`` header."""

    def __init__(self, logger: logging.Logger, log_format: str = AccessLogger.LOG_FORMAT) -> None:
        super().__init__(logger, log_format)
        self._methods = [_redacting(m) for m in self._methods]


def _redacting(method: KeyMethod) -> KeyMethod:
    if method.key == "first_request_line" or method.key == ("request_header", "Referer"):
        inner = method.method
        return KeyMethod(method.key, lambda request, response, time: redact_query(str(inner(request, response, time))))
    return method
