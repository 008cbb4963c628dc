"""Typed keys for what ``create_app`` stores on the aiohttp application.

Handlers reach shared objects only through these keys (``request.app[NODE]``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

CONFIG: web.AppKey[Any] = web.AppKey("config")          # gateway.config.Config
DB: web.AppKey[Any] = web.AppKey("db")                  # psycopg_pool.AsyncConnectionPool
NODE: web.AppKey[Any] = web.AppKey("node")              # gateway.node.Node: channels, publish, presence, history
AUTH: web.AppKey[Any] = web.AppKey("auth")              # gateway.auth.Authenticator
LIMITS: web.AppKey[Any] = web.AppKey("limits")          # gateway.limits.Limits
CHANNELS: web.AppKey[Any] = web.AppKey("channels")      # gateway.channels.ChannelRegistry
