"""Who is calling: API keys and user tokens become a ``Principal``.

Credentials: a secret or publishable API key (``nv_live_...``/``nv_test_...``), or a user token
(HS256 JWT signed with a secret key's signing secret, see ``gateway.keys.issue_user_token``).

- secret key: the whole REST API and every channel its patterns allow;
- publishable key (browsers): connect, join, publish and track on the channels its patterns allow;
- user token: the same as a publishable key, for one user, on channels allowed by both the
  token's patterns and its signing key's patterns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Literal

import jwt
import psycopg
import psycopg_pool

from gateway.errors import NuvemError
from gateway.keys import hash_key, is_api_key
from gateway.plans import PLANS, Plan

if TYPE_CHECKING:
    from aiohttp import web


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    owner_id: str
    plan: Plan
    kind: Literal["secret", "publishable", "token"]
    channel_patterns: tuple[str, ...]     # glob patterns like "chat:*"; ("*",) = all
    user_id: str | None = None
    test_mode: bool = False
    within: tuple[str, ...] = ("*",)      # a token is also bound by its signing key's patterns
    expires_at: float | None = None       # a token's exp (seconds since the epoch); None for keys

    def can_admin(self) -> bool:
        """Secret keys only: the whole REST API."""
        return self.kind == "secret"

    def can_access(self, channel: str) -> bool:
        """May this principal join, publish and track on ``channel``?"""
        return _matches_any(channel, self.channel_patterns) and _matches_any(channel, self.within)

    def require_admin(self) -> None:
        """Raise NuvemError("forbidden") unless this is a secret key."""
        if not self.can_admin():
            raise NuvemError("forbidden", f"a {_KIND_NAMES[self.kind]} cannot use the admin REST API;"
                             " use a secret key from your server", keyId=self.key_id)

    def require_access(self, channel: str) -> None:
        """Raise NuvemError("forbidden") unless ``can_access(channel)``."""
        if not self.can_access(channel):
            allowed = self.channel_patterns if self.within == ("*",) else self.channel_patterns + self.within
            raise NuvemError("forbidden", f"this {_KIND_NAMES[self.kind]} may not use channel {channel!r};"
                             f" it allows {', '.join(allowed)}", channel=channel)


_KIND_NAMES = {"secret": "secret key", "publishable": "publishable key", "token": "user token"}


def _matches_any(channel: str, patterns: tuple[str, ...]) -> bool:
    return any(p == "*" or fnmatchcase(channel, p) for p in patterns)


def credential_from_request(request: "web.Request") -> str | None:
    """The credential of a request: ``Authorization: Bearer X``, else ``?apiKey=`` or ``?token=``."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return header.strip()  # malformed: authenticate() names the problem
    return request.query.get("apiKey") or request.query.get("token") or None


def verify_user_token(token: str, signing_secret: bytes, *, leeway: float = 0.0) -> dict[str, Any]:
    """Check an HS256 user token's signature and claims; return the claims.

    Pure. Raises NuvemError("unauthorized") saying what is wrong (expired, bad signature, ...).
    Only HS256 is accepted, whatever the token's header says (no "none", no other algorithm).
    """
    alg = _token_header(token).get("alg")
    if alg != "HS256":
        raise NuvemError("unauthorized", f"the user token must be signed with the HS256 algorithm, not {alg!r}")
    try:
        claims = jwt.decode(token, signing_secret, algorithms=["HS256"], leeway=leeway,
                            options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise NuvemError("unauthorized", "the user token has expired; ask your app server for a new one") from None
    except jwt.MissingRequiredClaimError as e:
        raise NuvemError("unauthorized", f"the user token lacks the {e.claim!r} claim") from None
    except jwt.InvalidSignatureError:
        raise NuvemError("unauthorized", "the user token's signature does not match its key") from None
    except jwt.PyJWTError as e:
        raise NuvemError("unauthorized", f"invalid user token: {e}") from None
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise NuvemError("unauthorized", "the user token's 'sub' claim must be a non-empty user id")
    channels = claims.get("channels")
    if channels is not None and (not isinstance(channels, list) or not channels
                                 or not all(isinstance(c, str) and c for c in channels)):
        raise NuvemError("unauthorized", "the user token's 'channels' claim must be a non-empty list of patterns")
    return claims


def _token_header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        raise NuvemError("unauthorized", f"invalid user token: {e}") from None


@dataclass(frozen=True, slots=True)
class _KeyRow:
    key_id: str
    owner_id: str
    plan: str
    kind: str
    patterns: tuple[str, ...]
    test_mode: bool
    revoked: bool
    signing_secret: bytes


class Authenticator:
    """Turns a credential into a Principal, or raises NuvemError("unauthorized").

    Key lookups are cached for ``cache_seconds`` (default 1 s): a revoked key stops working
    on every node within that time.
    """

    def __init__(self, pool: Any, *, cache_seconds: float = 1.0) -> None:
        self._pool = pool
        self._cache_seconds = cache_seconds
        self._cache: dict[tuple[str, Any], tuple[float, _KeyRow | None]] = {}

    async def authenticate(self, credential: str | None) -> Principal:
        if not credential:
            raise NuvemError("unauthorized", "no API key: send 'Authorization: Bearer <api_key>'"
                             " (or ?apiKey= on the WebSocket URL)")
        if is_api_key(credential):
            row = await self._lookup("hash", hash_key(credential))
            if row is None:
                raise NuvemError("unauthorized", "unknown API key")
            if row.revoked:
                raise NuvemError("unauthorized", f"API key {row.key_id} has been revoked", keyId=row.key_id)
            return Principal(row.key_id, row.owner_id, PLANS[row.plan], row.kind,  # type: ignore[arg-type]
                             row.patterns, test_mode=row.test_mode)
        if credential.count(".") == 2:
            return await self._authenticate_token(credential)
        raise NuvemError("unauthorized", "malformed credential: expected an API key (nv_live_..., nv_test_...)"
                         " or a user token (JWT) after 'Bearer '")

    async def _authenticate_token(self, token: str) -> Principal:
        kid = _token_header(token).get("kid")
        if not isinstance(kid, str):
            raise NuvemError("unauthorized", "the user token has no 'kid' header naming its signing key")
        row = await self._lookup("id", kid)
        if row is None:
            raise NuvemError("unauthorized", f"the user token's signing key {kid!r} does not exist")
        if row.revoked:
            raise NuvemError("unauthorized", f"the user token's signing key {kid} has been revoked", keyId=kid)
        if row.kind != "secret":
            raise NuvemError("unauthorized", "user tokens must be signed by a secret key, not a publishable one")
        claims = verify_user_token(token, row.signing_secret)
        patterns = tuple(claims.get("channels") or row.patterns)
        return Principal(row.key_id, row.owner_id, PLANS[row.plan], "token", patterns,
                         user_id=claims["sub"], test_mode=row.test_mode, within=row.patterns,
                         expires_at=float(claims["exp"]))

    async def revalidate(self, principal: Principal) -> None:
        """Raise NuvemError("unauthorized") if ``principal`` is no longer valid: its key (for a
        token, its signing key) revoked, within ``cache_seconds``, or its token expired.

        ``authenticate`` checks a credential once; a long-lived connection should call this
        periodically (e.g. on every heartbeat) and close when it raises.
        """
        if principal.expires_at is not None and time.time() >= principal.expires_at:
            raise NuvemError("unauthorized", "the user token has expired; ask your app server for a new one")
        row = await self._lookup("id", principal.key_id)
        if row is None or row.revoked:
            raise NuvemError("unauthorized", f"API key {principal.key_id} has been revoked", keyId=principal.key_id)

    async def _lookup(self, by: str, value: Any) -> _KeyRow | None:
        now = time.monotonic()
        hit = self._cache.get((by, value))
        if hit is not None and now - hit[0] < self._cache_seconds:
            return hit[1]
        column = "key_hash" if by == "hash" else "key_id"
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT key_id, owner_id, plan, kind, channel_patterns, test_mode, revoked_at IS NOT NULL,"
                    f" signing_secret FROM nuvem_realtime.api_keys WHERE {column} = %s", (value,))
                r = await cur.fetchone()
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as e:  # the server's fault, not the caller's
            raise NuvemError("unavailable", f"cannot check the API key: {type(e).__name__}") from e
        row = _KeyRow(r[0], r[1], r[2], r[3], tuple(r[4]), r[5], r[6], bytes(r[7])) if r else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[(by, value)] = (now, row)
        return row
