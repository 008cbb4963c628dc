"""API keys: creation, hashed storage, listing, revocation; user tokens signed with a key's secret.

A key is ``nv_live_<32 url-safe chars>`` (``nv_test_`` in test mode): 192 random bits from
``secrets.token_urlsafe(24)``. Only ``sha256(key)`` is stored. A plain hash (no salt, no slow KDF)
is enough because the key is random with 192 bits of entropy: there is no dictionary to try and
brute force over 2**192 is out of reach, while lookups stay one indexed equality per request.

Each key has a public ``key_id`` (``key_`` + 16 hex digits of the hash), derivable from the key
itself, so an app server can sign user tokens (``issue_user_token``) without a database.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import jwt

from gateway.channels import validate_channel_pattern
from gateway.errors import NuvemError
from gateway.plans import PLANS, Plan

LIVE_PREFIX = "nv_live_"
TEST_PREFIX = "nv_test_"
_TOKEN_LABEL = b"nuvem-realtime user-token v1"
_COLUMNS = ("key_id, prefix, owner_id, plan, kind, channel_patterns, test_mode, created_at, revoked_at")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What is stored about a key (never the key itself)."""

    key_id: str
    prefix: str                       # e.g. "nv_live_Ab3x", to recognise a key in a list
    owner_id: str
    plan: Plan
    kind: Literal["secret", "publishable"]
    channel_patterns: tuple[str, ...]
    test_mode: bool
    created_at: datetime
    revoked_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.key_id, "prefix": self.prefix, "ownerId": self.owner_id, "plan": self.plan.name,
            "kind": self.kind, "channels": list(self.channel_patterns), "testMode": self.test_mode,
            "createdAt": self.created_at.isoformat(),
            "revokedAt": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def is_api_key(credential: str) -> bool:
    return credential.startswith((LIVE_PREFIX, TEST_PREFIX))


def hash_key(plaintext: str) -> bytes:
    return hashlib.sha256(plaintext.encode()).digest()


def key_id_for(plaintext: str) -> str:
    """The public id of a key, computable from the key alone."""
    return "key_" + hashlib.sha256(plaintext.encode()).hexdigest()[:16]


def signing_secret_for(plaintext: str) -> bytes:
    """The HS256 secret for user tokens of this key (an HMAC of the key, not the key itself)."""
    return hmac.new(plaintext.encode(), _TOKEN_LABEL, hashlib.sha256).digest()


def issue_user_token(secret_key_plaintext: str, *, user_id: str, channels: list[str] | None,
                     expires_in: float) -> str:
    """A user token (HS256 JWT) that an app server hands to one of its users.

    Header ``kid`` = the key's id; claims ``sub`` = user_id, ``iat``, ``exp`` = now + expires_in,
    and ``channels`` (glob patterns) when given. The token grants at most what the key grants:
    the gateway checks a channel against both the token's and the key's patterns, and a token
    never reaches the admin REST API. Pure: no database needed.
    """
    if not is_api_key(secret_key_plaintext):
        raise ValueError("issue_user_token needs a secret API key (nv_live_... or nv_test_...)")
    if not user_id:
        raise ValueError("user_id must be a non-empty string")
    if expires_in <= 0:
        raise ValueError("expires_in must be positive (seconds)")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + max(1, round(expires_in))}
    if channels is not None:
        claims["channels"] = [str(c) for c in channels]
    return jwt.encode(claims, signing_secret_for(secret_key_plaintext), algorithm="HS256",
                      headers={"kid": key_id_for(secret_key_plaintext)})


def _parse_patterns(channels: list[str] | None) -> tuple[str, ...]:
    if channels is None:
        return ("*",)
    patterns = tuple(c.strip() for c in channels if c.strip())
    if not patterns:
        raise NuvemError("invalid_request", "channels must list at least one pattern, e.g. 'chat:*'",
                         field="channels")
    for p in patterns:
        validate_channel_pattern(p)
    return patterns


def _record(row: tuple) -> KeyRecord:
    key_id, prefix, owner_id, plan, kind, patterns, test_mode, created_at, revoked_at = row
    return KeyRecord(key_id, prefix, owner_id, PLANS[plan], kind, tuple(patterns), test_mode,
                     created_at, revoked_at)


class KeyStore:
    """API keys in ``nuvem_realtime.api_keys`` (psycopg_pool.AsyncConnectionPool)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def create(self, *, plan: str = "free", publishable: bool = False, channels: list[str] | None = None,
                     test_mode: bool = False, owner_id: str | None = None) -> tuple[str, KeyRecord]:
        """Create a key; return (plaintext key, record). The plaintext is not stored: show it once.

        ``owner_id`` defaults to the new key's own id; keys sharing an owner share its limits.
        Raises NuvemError("invalid_request") for an unknown plan or a bad channel pattern.
        """
        if plan not in PLANS:
            raise NuvemError("invalid_request", f"unknown plan {plan!r}; choose one of: {', '.join(PLANS)}",
                             field="plan")
        patterns = _parse_patterns(channels)
        plaintext = (TEST_PREFIX if test_mode else LIVE_PREFIX) + secrets.token_urlsafe(24)
        key_id = key_id_for(plaintext)
        kind = "publishable" if publishable else "secret"
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO nuvem_realtime.api_keys (key_id, key_hash, prefix, signing_secret, owner_id, plan,"
                " kind, channel_patterns, test_mode) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                f" RETURNING {_COLUMNS}",
                (key_id, hash_key(plaintext), plaintext[:12], signing_secret_for(plaintext),
                 owner_id or key_id, plan, kind, list(patterns), test_mode))
            row = await cur.fetchone()
        return plaintext, _record(row)

    async def list(self) -> list[KeyRecord]:
        """Every key, revoked ones included (``revoked_at`` set), oldest first."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM nuvem_realtime.api_keys ORDER BY created_at, key_id")
            return [_record(r) for r in await cur.fetchall()]

    async def get(self, key_id: str) -> KeyRecord | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM nuvem_realtime.api_keys WHERE key_id = %s", (key_id,))
            row = await cur.fetchone()
        return _record(row) if row else None

    async def revoke(self, key_id: str) -> None:
        """Revoke a key (idempotent); NuvemError("not_found") if no key has that id.

        Gateways stop accepting it within their Authenticator cache time (1 s by default).
        """
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE nuvem_realtime.api_keys SET revoked_at = coalesce(revoked_at, now())"
                " WHERE key_id = %s RETURNING key_id", (key_id,))
            if await cur.fetchone() is None:
                raise NuvemError("not_found", f"no API key with id {key_id!r}; see `nuvem-realtime keys list`",
                                 keyId=key_id)
