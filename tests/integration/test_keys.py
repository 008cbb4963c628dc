"""KeyStore, Authenticator and ChannelRegistry against the throwaway Postgres."""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
import time

import jwt
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from gateway.auth import Authenticator
from gateway.channels import ChannelRegistry, RateLimit
from gateway.errors import NuvemError
from gateway.keys import KeyStore, issue_user_token, key_id_for, signing_secret_for

SQL_DIR = pathlib.Path(__file__).resolve().parents[2] / "sql"


async def apply_migrations(dsn: str) -> None:
    """Core's gateway.migrate when it exists, else every sql/*.sql in order."""
    try:
        from gateway.migrate import migrate
    except ImportError:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            for f in sorted(SQL_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql")):
                await conn.execute(f.read_text())
        return
    await migrate(dsn)


@pytest.fixture
async def pool(pg_dsn):
    await apply_migrations(pg_dsn)
    async with AsyncConnectionPool(pg_dsn, min_size=1, max_size=4, open=False) as p:
        yield p


async def test_created_key_is_stored_hashed_and_listed(pool, pg_dsn):
    store = KeyStore(pool)
    key, rec = await store.create(plan="builder", channels=["chat:*", "orders:*"])
    assert key.startswith("nv_live_") and len(key) == len("nv_live_") + 32
    assert rec.key_id == key_id_for(key) and rec.owner_id == rec.key_id
    assert rec.plan.name == "builder" and rec.kind == "secret" and rec.channel_patterns == ("chat:*", "orders:*")
    test_key, test_rec = await store.create(publishable=True, test_mode=True, owner_id=rec.owner_id)
    assert test_key.startswith("nv_test_") and test_rec.test_mode and test_rec.owner_id == rec.key_id
    assert [r.key_id for r in await store.list()] == [rec.key_id, test_rec.key_id]
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        dump = str(await (await conn.execute("SELECT * FROM nuvem_realtime.api_keys")).fetchall())
        stored_hash = (await (await conn.execute("SELECT key_hash FROM nuvem_realtime.api_keys WHERE key_id = %s",
                                                 (rec.key_id,))).fetchone())[0]
    assert key not in dump and key[8:] not in dump
    assert bytes(stored_hash) == hashlib.sha256(key.encode()).digest()


async def test_create_rejects_unknown_plan_and_bad_patterns(pool):
    store = KeyStore(pool)
    with pytest.raises(NuvemError) as e:
        await store.create(plan="gold")
    assert e.value.code == "invalid_request" and "free, builder, scale" in e.value.message
    with pytest.raises(NuvemError) as e:
        await store.create(channels=["chat room"])
    assert e.value.code == "invalid_request"
    assert await store.list() == []


async def test_authenticate_keys(pool):
    store, auth = KeyStore(pool), Authenticator(pool, cache_seconds=0)
    key, rec = await store.create(plan="scale")
    pub, pub_rec = await store.create(publishable=True, channels=["chat:*"], owner_id="acme")
    p = await auth.authenticate(key)
    assert (p.key_id, p.owner_id, p.plan.name, p.kind) == (rec.key_id, rec.key_id, "scale", "secret")
    assert p.can_admin() and p.can_access("orders:1")
    q = await auth.authenticate(pub)
    assert q.kind == "publishable" and q.owner_id == "acme" and not q.can_admin()
    assert q.can_access("chat:1") and not q.can_access("orders:1")
    for bad, words in [(None, "no API key"), ("", "no API key"), ("nv_live_" + "x" * 32, "unknown"),
                       ("Basic abc", "malformed"), (key[:-1], "unknown")]:
        with pytest.raises(NuvemError) as e:
            await auth.authenticate(bad)
        assert e.value.code == "unauthorized" and words in e.value.message


async def test_revoked_key_refused(pool):
    store, auth = KeyStore(pool), Authenticator(pool, cache_seconds=0.2)
    key, rec = await store.create()
    await auth.authenticate(key)
    await store.revoke(rec.key_id)
    await store.revoke(rec.key_id)  # idempotent
    await asyncio.sleep(0.25)        # the cache time
    with pytest.raises(NuvemError) as e:
        await auth.authenticate(key)
    assert e.value.code == "unauthorized" and "revoked" in e.value.message
    assert (await store.list())[0].revoked_at is not None
    with pytest.raises(NuvemError) as e:
        await store.revoke("key_nope")
    assert e.value.code == "not_found"


async def test_user_tokens(pool):
    store, auth = KeyStore(pool), Authenticator(pool, cache_seconds=0)
    key, rec = await store.create(channels=["chat:*", "lobby"])
    token = issue_user_token(key, user_id="usr_abc", channels=["chat:*"], expires_in=60)
    p = await auth.authenticate(token)
    assert p.kind == "token" and p.user_id == "usr_abc" and p.owner_id == rec.owner_id
    assert p.can_access("chat:1") and not p.can_access("orders:x") and not p.can_access("lobby")
    assert not p.can_admin()
    # a token cannot widen its key's channels
    wide = await auth.authenticate(issue_user_token(key, user_id="u", channels=["*"], expires_in=60))
    assert wide.can_access("lobby") and not wide.can_access("orders:x")
    # no channels claim: the key's patterns
    plain = await auth.authenticate(issue_user_token(key, user_id="u", channels=None, expires_in=60))
    assert plain.can_access("lobby") and not plain.can_access("orders:x")


async def test_bad_user_tokens_refused(pool):
    store, auth = KeyStore(pool), Authenticator(pool, cache_seconds=0)
    key, rec = await store.create()
    pub, _ = await store.create(publishable=True)
    expired = jwt.encode({"sub": "u", "exp": int(time.time()) - 1}, signing_secret_for(key), algorithm="HS256",
                         headers={"kid": rec.key_id})
    from_publishable = issue_user_token(pub, user_id="u", channels=None, expires_in=60)
    forged = jwt.encode({"sub": "u", "exp": int(time.time()) + 60}, b"guess" * 8, algorithm="HS256",
                        headers={"kid": rec.key_id})
    no_kid = jwt.encode({"sub": "u", "exp": int(time.time()) + 60}, signing_secret_for(key), algorithm="HS256")
    for token, words in [(expired, "expired"), (from_publishable, "secret key"), (forged, "signature"),
                         (no_kid, "kid"), ("a.b.c", "invalid user token")]:
        with pytest.raises(NuvemError) as e:
            await auth.authenticate(token)
        assert e.value.code == "unauthorized" and words in e.value.message, e.value.message
    good = issue_user_token(key, user_id="u", channels=None, expires_in=60)
    await store.revoke(rec.key_id)
    with pytest.raises(NuvemError, match="revoked"):
        await auth.authenticate(good)


async def test_revalidate_catches_revoked_keys_and_expired_tokens_of_live_principals(pool):
    import dataclasses
    store, auth = KeyStore(pool), Authenticator(pool, cache_seconds=0.2)
    key, rec = await store.create()
    by_key = await auth.authenticate(key)
    by_token = await auth.authenticate(issue_user_token(key, user_id="u", channels=None, expires_in=60))
    assert by_key.expires_at is None and time.time() + 55 < by_token.expires_at <= time.time() + 61
    await auth.revalidate(by_key)
    await auth.revalidate(by_token)
    with pytest.raises(NuvemError) as e:
        await auth.revalidate(dataclasses.replace(by_token, expires_at=time.time() - 1))
    assert e.value.code == "unauthorized" and "expired" in e.value.message
    await store.revoke(rec.key_id)
    await asyncio.sleep(0.25)  # the cache time
    for principal in (by_key, by_token):
        with pytest.raises(NuvemError) as e:
            await auth.revalidate(principal)
        assert e.value.code == "unauthorized" and "revoked" in e.value.message


async def test_channel_registry(pool):
    reg = ChannelRegistry(pool)
    assert await reg.get("notifications:usuarios") is None
    ch = await reg.create("notifications:usuarios", max_connections=1000, rate_limit=RateLimit(100, 60))
    assert ch.id.startswith("ch_")
    assert ch.to_json()["rateLimit"] == {"messages": 100, "windowSeconds": 60}
    assert await reg.get(ch.id) == ch and await reg.get("notifications:usuarios") == ch
    assert await ChannelRegistry(pool).get(ch.id) == ch  # from the database, not this cache
    with pytest.raises(NuvemError) as e:
        await reg.create("notifications:usuarios")
    assert e.value.code == "conflict"
    up = await reg.update(ch.id, rate_limit=None, history_max_count=10)
    assert up.rate_limit is None and up.max_connections == 1000 and up.history_max_count == 10
    assert (await reg.get("notifications:usuarios")).history_max_count == 10
    assert [c.name for c in await reg.list()] == ["notifications:usuarios"]
    await reg.delete("notifications:usuarios")
    assert await reg.get(ch.id) is None and await reg.list() == []
    for op in (reg.delete("notifications:usuarios"), reg.update("nope", max_connections=1)):
        with pytest.raises(NuvemError) as e:
            await op
        assert e.value.code == "channel_not_found"
    for kwargs, field in [({"max_connections": 0}, "maxConnections"),
                          ({"rate_limit": RateLimit(0, 1)}, "rateLimit.messages"),
                          ({"rate_limit": RateLimit(1, 0)}, "rateLimit.windowSeconds")]:
        with pytest.raises(NuvemError) as e:
            await reg.create("x", **kwargs)
        assert e.value.details["field"] == field


def _cli(*args: str, env: dict | None = None):
    import os
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "gateway.cli", "keys", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


async def test_keys_cli_create_list_revoke(pool, pg_dsn):
    created = await asyncio.to_thread(_cli, "create", "--plan", "builder", "--publishable", "--channels",
                                      "chat:*, orders:*", "--owner", "acme", "--database-url", pg_dsn)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("nv_live_") and "\n" not in key and "not shown again" in created.stderr
    p = await Authenticator(pool).authenticate(key)
    assert (p.plan.name, p.kind, p.owner_id, p.channel_patterns) == ("builder", "publishable", "acme",
                                                                      ("chat:*", "orders:*"))
    listed = await asyncio.to_thread(_cli, "list", "--json", env={"NUVEM_DATABASE_URL": pg_dsn})
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout and p.key_id in listed.stdout
    revoked = await asyncio.to_thread(_cli, "revoke", p.key_id, "--database-url", pg_dsn)
    assert revoked.returncode == 0 and (await KeyStore(pool).list())[0].revoked_at is not None
    missing = await asyncio.to_thread(_cli, "revoke", "key_nope", "--database-url", pg_dsn)
    assert missing.returncode == 1 and "no API key with id 'key_nope'" in missing.stderr
    bad = await asyncio.to_thread(_cli, "create", "--channels", "chat room", "--database-url", pg_dsn)
    assert bad.returncode == 1 and "invalid channel pattern" in bad.stderr


async def test_keys_cli_token(pool):
    key, _ = await KeyStore(pool).create()
    out = await asyncio.to_thread(_cli, "token", "--user", "usr_1", "--channels", "chat:*", "--expires-in", "60",
                                  env={"NUVEM_API_KEY": key})
    assert out.returncode == 0, out.stderr
    p = await Authenticator(pool).authenticate(out.stdout.strip())
    assert p.user_id == "usr_1" and p.can_access("chat:x") and not p.can_access("orders:x")


@pytest.mark.slow
async def test_keys_cli_without_a_database_url_uses_the_embedded_postgres():
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    # as root Postgres runs as an unprivileged user, who must reach the data directory
    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="nuvem-keys-cli-"))
    tmp_path.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "NUVEM_DATABASE_URL"}
    env["PYTHONPATH"] = str(pathlib.Path(__file__).resolve().parents[2])

    def cli(*args: str):
        return subprocess.run([sys.executable, "-m", "gateway.cli", "keys", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=120)

    try:
        created = await asyncio.to_thread(cli, "create", "--plan", "scale", "--test")
        assert created.returncode == 0, created.stderr
        assert "embedded Postgres in ./.nuvem/pgdata" in created.stderr
        key = created.stdout.strip()
        assert key.startswith("nv_test_")
        listed = await asyncio.to_thread(cli, "list")  # a second start of the same data directory
        assert listed.returncode == 0, listed.stderr
        assert key_id_for(key) in listed.stdout and "scale" in listed.stdout and "(test)" in listed.stdout
        assert (tmp_path / ".nuvem" / "pgdata" / "PG_VERSION").exists()
        assert not (tmp_path / ".nuvem" / "pgdata" / "postmaster.pid").exists()  # stopped after the command
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


async def test_database_down_is_unavailable_not_unauthorized():
    from cdc.local_postgres import free_port
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?connect_timeout=1"
    async with AsyncConnectionPool(dead, min_size=0, max_size=1, open=False, timeout=0.5) as dead_pool:
        with pytest.raises(NuvemError) as e:
            await Authenticator(dead_pool).authenticate("nv_live_" + "x" * 32)
    assert e.value.code == "unavailable" and e.value.http_status == 503
