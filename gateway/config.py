"""Server configuration: a frozen dataclass from CLI flags, ``NUVEM_*`` env and a TOML file.

Precedence, highest first: flags, environment (``NUVEM_<FIELD>``, e.g. ``NUVEM_PORT=4000``,
``NUVEM_DATABASE_URL``), the TOML file (``--config FILE`` or ``NUVEM_CONFIG``; top-level keys
named like the fields), then the defaults below.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid; the operator's fault. The message names the source."""


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 4000
    database_url: str | None = None        # None: `serve` starts the embedded Postgres
    event_loop: str = "auto"               # "auto" (uvloop when installed), "uvloop" or "asyncio"
    access_log: bool = False               # log each HTTP request to stderr (credentials redacted)
    db_pool_min: int = 2
    db_pool_max: int = 10
    # WebSocket
    max_frame_bytes: int = 65536           # larger client frames get a payload_too_large error
    hard_frame_bytes: int = 1048576        # larger still: the connection is closed (1009)
    send_queue_max_messages: int = 1000    # per connection, beyond what the socket buffers
    send_queue_max_bytes: int = 4194304
    heartbeat_interval: float = 25.0       # clients should ping this often
    heartbeat_timeout: float = 60.0        # no frame for this long: closed with heartbeat_timeout
    auth_check_interval: float = 5.0       # an open connection's key/token is re-checked this often
    # history
    history_batch_max: int = 500
    history_flush_interval: float = 0.0    # extra wait to gather a batch (0: natural batching)
    history_max_count: int | None = 1000   # default retention of channels without their own
    history_max_age_seconds: float | None = 86400.0
    history_sweep_interval: float = 10.0
    # presence
    presence_ttl: float = 30.0

    @classmethod
    def load(cls, flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
             config_file: str | os.PathLike[str] | None = None) -> "Config":
        """Merge the sources (flags > env > file > defaults); ``None`` flag values are unset."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        path = config_file or (flags or {}).get("config") or env.get("NUVEM_CONFIG")
        if path:
            values.update(_from_toml(Path(path)))
        for f in fields(cls):
            raw = env.get("NUVEM_" + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _coerce(f, raw, f"env NUVEM_{f.name.upper()}")
        for name, value in (flags or {}).items():
            if value is not None and name in _FIELDS:
                values[name] = _coerce(_FIELDS[name], value, f"--{name.replace('_', '-')}")
        return cls(**values)._checked()

    def _checked(self) -> "Config":
        if self.event_loop not in ("auto", "uvloop", "asyncio"):
            raise ConfigError(f"event_loop must be auto, uvloop or asyncio, got {self.event_loop!r}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be 1-65535, got {self.port}")
        if self.max_frame_bytes < 1024 or self.hard_frame_bytes < self.max_frame_bytes:
            raise ConfigError("max_frame_bytes must be >= 1024 and <= hard_frame_bytes")
        if self.auth_check_interval <= 0:
            raise ConfigError(f"auth_check_interval must be positive, got {self.auth_check_interval}")
        if self.heartbeat_timeout <= 0 or self.send_queue_max_messages <= 0 or self.send_queue_max_bytes <= 0:
            raise ConfigError("heartbeat_timeout and send queue limits must be positive")
        return self

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)._checked()


_FIELDS = {f.name: f for f in fields(Config)}


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    out = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in _FIELDS:
            raise ConfigError(f"config file {path}: unknown setting {key!r}; known: {', '.join(_FIELDS)}")
        out[name] = _coerce(_FIELDS[name], value, f"config file {path}: {key}")
    return out


def _coerce(f: dataclasses.Field[Any], value: Any, source: str) -> Any:
    kind = str(f.type)
    optional = "None" in kind
    if optional and isinstance(value, str) and value.lower() in ("none", "null", ""):
        return None
    try:
        if kind.startswith("bool"):
            return _boolean(value)
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("str"):
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: expected {kind}, got {value!r}") from None
    return value


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)
