"""Channel names and the configuration of channels created by REST.

Channels exist implicitly on first use with default settings; ``POST /v1/realtime/channels``
creates one with a config (connection cap, rate limit, history retention) stored in
``nuvem_realtime.channels``. Channel names share one namespace per deployment.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg.errors

from gateway.errors import NuvemError

CHANNEL_NAME_GRAMMAR = r"^[A-Za-z0-9_\-:.@]{1,200}$"
_NAME_RE = re.compile(CHANNEL_NAME_GRAMMAR)
_PATTERN_RE = re.compile(r"^[A-Za-z0-9_\-:.@*]{1,200}$")
_ID_RE = re.compile(r"^ch_[0-9a-f]{16}$")


def is_channel_id(ref: str) -> bool:
    """Whether ``ref`` has the shape of a channel id ("ch_" + 16 hex digits), reserved for ids."""
    return bool(_ID_RE.match(ref))


def validate_channel_name(name: str, *, field: str = "channel") -> None:
    """Raise NuvemError("invalid_request") unless ``name`` matches CHANNEL_NAME_GRAMMAR.

    Names shaped like a channel id are refused too, so that ``:channelId`` (an id or a name)
    always names one channel.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise NuvemError("invalid_request",
                         f"invalid channel name {name!r}: use 1-200 characters from A-Z a-z 0-9 _ - : . @"
                         " (e.g. 'chat:sala-principal')", field=field, grammar=CHANNEL_NAME_GRAMMAR)
    if is_channel_id(name):
        raise NuvemError("invalid_request",
                         f"channel name {name!r} is reserved: 'ch_' followed by 16 hex digits is the form of"
                         " channel ids; choose another name", field=field)


def validate_channel_pattern(pattern: str) -> None:
    """Raise NuvemError("invalid_request") unless ``pattern`` is a channel name that may contain ``*``."""
    if not isinstance(pattern, str) or not _PATTERN_RE.match(pattern):
        raise NuvemError("invalid_request",
                         f"invalid channel pattern {pattern!r}: a channel name where '*' matches any"
                         " characters (e.g. 'chat:*')", field="channels")


@dataclass(frozen=True, slots=True)
class RateLimit:
    messages: int            # at most this many messages ...
    window_seconds: float    # ... in any window of this many seconds

    def to_json(self) -> dict[str, Any]:
        return {"messages": self.messages, "windowSeconds": self.window_seconds}


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    id: str
    name: str
    max_connections: int | None
    rate_limit: RateLimit | None
    history_max_count: int | None
    history_max_age_seconds: float | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "maxConnections": self.max_connections,
            "rateLimit": self.rate_limit.to_json() if self.rate_limit else None,
            "historyMaxCount": self.history_max_count, "historyMaxAgeSeconds": self.history_max_age_seconds,
            "createdAt": self.created_at.isoformat(),
        }


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()   # "leave this field as it is" in ChannelRegistry.update

# one row at most: names shaped like ids are refused (validate_channel_name)
_BY_REF = "(id = %s OR name = %s)"
_COLUMNS = ("id, name, max_connections, rate_limit_messages, rate_limit_window_seconds,"
            " history_max_count, history_max_age_seconds, created_at")


def _config(row: tuple) -> ChannelConfig:
    id_, name, max_conn, rl_messages, rl_window, h_count, h_age, created_at = row
    rate = RateLimit(rl_messages, rl_window) if rl_messages is not None else None
    return ChannelConfig(id_, name, max_conn, rate, h_count, h_age, created_at)


def _check_settings(max_connections: Any, rate_limit: Any, history_max_count: Any,
                    history_max_age_seconds: Any) -> None:
    if max_connections not in (None, UNSET) and (not isinstance(max_connections, int) or max_connections < 1):
        raise NuvemError("invalid_request", "maxConnections must be a positive integer or null",
                         field="maxConnections")
    if isinstance(rate_limit, RateLimit):
        if rate_limit.messages < 1:
            raise NuvemError("invalid_request", "rateLimit.messages must be at least 1", field="rateLimit.messages")
        if not rate_limit.window_seconds > 0:
            raise NuvemError("invalid_request", "rateLimit.windowSeconds must be greater than 0",
                             field="rateLimit.windowSeconds")
    if history_max_count not in (None, UNSET) and history_max_count < 0:
        raise NuvemError("invalid_request", "historyMaxCount must be 0 or more", field="historyMaxCount")
    if history_max_age_seconds not in (None, UNSET) and not history_max_age_seconds > 0:
        raise NuvemError("invalid_request", "historyMaxAgeSeconds must be greater than 0",
                         field="historyMaxAgeSeconds")


class ChannelRegistry:
    """Channels created by REST, cached in memory.

    ``get`` is on the publish path, so answers (including "no such channel") are cached for
    ``cache_seconds`` (default 2 s). Changes made through this registry are visible at once in
    this process; changes made on another node within ``cache_seconds``.
    """

    def __init__(self, pool: Any, *, cache_seconds: float = 2.0) -> None:
        self._pool = pool
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ChannelConfig | None]] = {}

    async def get(self, id_or_name: str) -> ChannelConfig | None:
        """The channel with this id or name; None for a channel never created by REST (implicit)."""
        hit = self._cache.get(id_or_name)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._cache_seconds:
            return hit[1]
        config = await self._one(f"SELECT {_COLUMNS} FROM nuvem_realtime.channels WHERE {_BY_REF}",
                                 (id_or_name, id_or_name))
        self._remember(id_or_name, config, now)
        return config

    async def create(self, name: str, *, max_connections: int | None = None, rate_limit: RateLimit | None = None,
                     history_max_count: int | None = None,
                     history_max_age_seconds: float | None = None) -> ChannelConfig:
        """Create a channel with a config; NuvemError("conflict") if one with that name exists."""
        validate_channel_name(name, field="name")
        _check_settings(max_connections, rate_limit, history_max_count, history_max_age_seconds)
        channel_id = "ch_" + secrets.token_hex(8)
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "INSERT INTO nuvem_realtime.channels (id, name, max_connections, rate_limit_messages,"
                    " rate_limit_window_seconds, history_max_count, history_max_age_seconds)"
                    f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                    (channel_id, name, max_connections, rate_limit.messages if rate_limit else None,
                     rate_limit.window_seconds if rate_limit else None, history_max_count,
                     history_max_age_seconds))
                config = _config(await cur.fetchone())
        except psycopg.errors.UniqueViolation:
            raise NuvemError("conflict", f"channel {name!r} already exists; PATCH it to change its config",
                             channel=name) from None
        self._forget(name)
        self._remember(config.id, config)
        self._remember(config.name, config)
        return config

    async def update(self, id_or_name: str, *, max_connections: int | None = UNSET,
                     rate_limit: RateLimit | None = UNSET, history_max_count: int | None = UNSET,
                     history_max_age_seconds: float | None = UNSET) -> ChannelConfig:
        """Change the given settings (None clears one; UNSET leaves it); NuvemError("channel_not_found")."""
        _check_settings(max_connections, rate_limit, history_max_count, history_max_age_seconds)
        sets: list[str] = []
        params: list[Any] = []
        for column, value in (("max_connections", max_connections), ("history_max_count", history_max_count),
                              ("history_max_age_seconds", history_max_age_seconds)):
            if value is not UNSET:
                sets.append(f"{column} = %s")
                params.append(value)
        if rate_limit is not UNSET:
            sets += ["rate_limit_messages = %s", "rate_limit_window_seconds = %s"]
            params += [rate_limit.messages if rate_limit else None, rate_limit.window_seconds if rate_limit else None]
        sets.append("updated_at = now()")
        config = await self._one(f"UPDATE nuvem_realtime.channels SET {', '.join(sets)} WHERE {_BY_REF}"
                                 f" RETURNING {_COLUMNS}", (*params, id_or_name, id_or_name))
        if config is None:
            raise channel_not_found(id_or_name)
        self._remember(config.id, config)
        self._remember(config.name, config)
        return config

    async def delete(self, id_or_name: str) -> ChannelConfig:
        """Delete a created channel's config (it becomes implicit again); NuvemError("channel_not_found")."""
        config = await self._one(f"DELETE FROM nuvem_realtime.channels WHERE {_BY_REF} RETURNING {_COLUMNS}",
                                 (id_or_name, id_or_name))
        if config is None:
            raise channel_not_found(id_or_name)
        self._remember(config.id, None)
        self._remember(config.name, None)
        return config

    async def list(self) -> list[ChannelConfig]:
        """Every created channel, by name."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM nuvem_realtime.channels ORDER BY name")
            return [_config(r) for r in await cur.fetchall()]

    async def _one(self, sql: str, params: tuple) -> ChannelConfig | None:
        async with self._pool.connection() as conn:
            row = await (await conn.execute(sql, params)).fetchone()
        return _config(row) if row else None

    def _remember(self, key: str, config: ChannelConfig | None, now: float | None = None) -> None:
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic() if now is None else now, config)

    def _forget(self, key: str) -> None:
        self._cache.pop(key, None)


def channel_not_found(id_or_name: str) -> NuvemError:
    """The 404 for a ``:channelId`` (an id or a name) that names no channel."""
    return NuvemError("channel_not_found", f"no channel with id or name {id_or_name!r}"
                      " (POST /v1/realtime/channels creates one)", channelId=id_or_name)
