"""``nuvem-realtime keys``: create, list and revoke API keys; sign a user token.

    nuvem-realtime keys create --plan free|builder|scale [--publishable] [--channels 'chat:*,orders:*']
                               [--test] [--owner ID] [--database-url URL]
    nuvem-realtime keys list [--json]
    nuvem-realtime keys revoke KEY_ID
    nuvem-realtime keys token --user ID [--channels 'chat:*'] [--expires-in 3600]   (key in $NUVEM_API_KEY)

The database is --database-url, else $NUVEM_DATABASE_URL, else the embedded Postgres in
./.nuvem/pgdata (started and stopped around the command, or reused if ``serve`` is running it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

from gateway.errors import NuvemError
from gateway.keys import KeyStore, issue_user_token
from gateway.plans import PLANS

EMBEDDED_DATA_DIR = "./.nuvem/pgdata"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", default=None,
                        help="Postgres URL (default: $NUVEM_DATABASE_URL, else the embedded Postgres in ./.nuvem)")
    sub = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = sub.add_parser("create", parents=[common], help="create a key and print it (shown only once)")
    create.add_argument("--plan", choices=sorted(PLANS), default="free", help="plan whose limits apply (default free)")
    create.add_argument("--publishable", action="store_true",
                        help="a browser key: connect, join, publish and track only; no admin REST")
    create.add_argument("--channels", default=None, help="comma-separated channel patterns, e.g. 'chat:*,orders:*'"
                        " (default: all)")
    create.add_argument("--test", action="store_true", help="a test-mode key (nv_test_...)")
    create.add_argument("--owner", default=None,
                        help="owner id whose limits the key shares (default: the key's own id)")
    lst = sub.add_parser("list", parents=[common], help="list keys (never the keys themselves)")
    lst.add_argument("--json", action="store_true", help="one JSON object per line")
    revoke = sub.add_parser("revoke", parents=[common], help="revoke a key by its id")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id, as shown by `keys list` (key_...)")
    token = sub.add_parser("token", help="sign a user token with a secret key ($NUVEM_API_KEY or --key)")
    token.add_argument("--key", default=None, help="the secret key (default: $NUVEM_API_KEY)")
    token.add_argument("--user", required=True, help="the user id (the token's sub)")
    token.add_argument("--channels", default=None, help="comma-separated channel patterns (default: the key's)")
    token.add_argument("--expires-in", type=float, default=3600.0, help="seconds until it expires (default 3600)")


def run(args: argparse.Namespace) -> int:
    if args.keys_command == "token":
        return _token(args)
    try:
        return asyncio.run(_with_database(args))
    except NuvemError as e:
        print(f"nuvem-realtime keys {args.keys_command}: {e.message}", file=sys.stderr)
        return 1
    except psycopg.OperationalError as e:
        print(f"nuvem-realtime keys {args.keys_command}: cannot reach the database: {e}", file=sys.stderr)
        return 1


def _split(patterns: str | None) -> list[str] | None:
    return None if patterns is None else [p.strip() for p in patterns.split(",") if p.strip()]


def _token(args: argparse.Namespace) -> int:
    key = args.key or os.environ.get("NUVEM_API_KEY")
    if not key:
        print("nuvem-realtime keys token: no key; pass --key or set NUVEM_API_KEY", file=sys.stderr)
        return 2
    try:
        print(issue_user_token(key, user_id=args.user, channels=_split(args.channels), expires_in=args.expires_in))
    except ValueError as e:
        print(f"nuvem-realtime keys token: {e}", file=sys.stderr)
        return 2
    return 0


async def _with_database(args: argparse.Namespace) -> int:
    dsn = args.database_url or os.environ.get("NUVEM_DATABASE_URL")
    embedded = None
    if not dsn:
        dsn = _running_embedded_dsn()
    if not dsn:
        from cdc.local_postgres import LocalPostgres
        print(f"using the embedded Postgres in {EMBEDDED_DATA_DIR} (pass --database-url to use another)",
              file=sys.stderr)
        embedded = LocalPostgres(data_dir=EMBEDDED_DATA_DIR, keep=True)
        await asyncio.to_thread(embedded.start)
        dsn = embedded.dsn
    try:
        from gateway.migrate import migrate
        await migrate(dsn)
        async with AsyncConnectionPool(dsn, min_size=1, max_size=1, open=False) as pool:
            return await _ACTIONS[args.keys_command](KeyStore(pool), args)
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def _running_embedded_dsn() -> str | None:
    """The DSN of the embedded Postgres if ``serve`` is running it now (its postmaster.pid)."""
    pid_file = Path(EMBEDDED_DATA_DIR) / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        os.kill(int(lines[0]), 0)
        return f"postgresql://postgres@127.0.0.1:{int(lines[3])}/postgres"
    except (OSError, ValueError, IndexError):
        return None


async def _create(store: KeyStore, args: argparse.Namespace) -> int:
    key, rec = await store.create(plan=args.plan, publishable=args.publishable, channels=_split(args.channels),
                                  test_mode=args.test, owner_id=args.owner)
    print(key)
    print(f"id {rec.key_id}  plan {rec.plan.name}  {rec.kind}  owner {rec.owner_id}"
          f"  channels {','.join(rec.channel_patterns)}\nstore the key now: it is not shown again",
          file=sys.stderr)
    return 0


async def _list(store: KeyStore, args: argparse.Namespace) -> int:
    records = await store.list()
    if args.json:
        for r in records:
            print(json.dumps(r.to_json()))
        return 0
    print(f"{'ID':<21} {'PREFIX':<13} {'PLAN':<8} {'KIND':<12} {'OWNER':<21} {'CHANNELS':<20} STATUS")
    for r in records:
        status = f"revoked {r.revoked_at:%Y-%m-%d}" if r.revoked_at else "active"
        print(f"{r.key_id:<21} {r.prefix:<13} {r.plan.name:<8} {r.kind:<12} {r.owner_id:<21}"
              f" {','.join(r.channel_patterns):<20} {status}{' (test)' if r.test_mode else ''}")
    return 0


async def _revoke(store: KeyStore, args: argparse.Namespace) -> int:
    await store.revoke(args.key_id)
    print(f"revoked {args.key_id}")
    return 0


_ACTIONS = {"create": _create, "list": _list, "revoke": _revoke}
