"""The PostgreSQL backend's own machinery: parameters, the pool, broken connections, errors, read-only, URLs."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from bot.store import Correction, StoreError, display_url, is_postgres_url, open_store
from bot.store.postgres import bind, numbered
from tests.bot.store.backends import count, peek


def corr(text: str, message: int) -> Correction:
    return Correction(text=text, label="joy", guild_id=1, channel_id=10, message_id=message, author_id=2,
                      corrector_id=3, created_at=1_700_000_000.0)


def test_parameters_are_numbered_outside_strings_comments_and_casts():
    assert numbered("SELECT a FROM t WHERE x = ? AND y = ?") == ("SELECT a FROM t WHERE x = $1 AND y = $2", None)
    sql, names = numbered("SELECT ':no', x::text -- :nor ?\nFROM t WHERE (CAST(:g AS BIGINT) IS NULL OR g = :g) "
                          "AND l = :label")
    assert sql == "SELECT ':no', x::text -- :nor ?\nFROM t WHERE (CAST($1 AS BIGINT) IS NULL OR g = $1) AND l = $2"
    assert names == ("g", "label")
    assert bind("SELECT :b, :a, :b", {"a": 1, "b": 2}) == ("SELECT $1, $2, $1", [2, 1])
    assert numbered("SELECT 'it''s ?'") == ("SELECT 'it''s ?'", None)
    with pytest.raises(ValueError, match="mixes"):
        numbered("SELECT ?, :x")


def test_urls_choose_the_backend_and_never_show_the_password():
    assert is_postgres_url("postgresql://u:secret@db.example:5433/bot")
    assert is_postgres_url("postgres://db/bot")
    assert not is_postgres_url("data/emotion.db") and not is_postgres_url("postgresql.db")
    shown = display_url("postgresql://u:s3cret@db.example:5433/bot?sslmode=require")
    assert shown == "postgresql://u@db.example:5433/bot" and "s3cret" not in shown


async def test_a_missing_database_and_an_unreachable_server_are_said_clearly(pg_server):
    with pytest.raises(StoreError) as info:
        await open_store(pg_server.url("no_such_database").replace("emotion@", "emotion:hunter2@"))
    assert info.value.reason == "cantopen" and "does not exist" in str(info.value)
    assert "hunter2" not in str(info.value) and "no_such_database" in str(info.value)
    dead = f"postgresql://emotion:hunter2@127.0.0.1:{_closed_port()}/bot"
    with pytest.raises(StoreError) as info:
        await open_store(dead)
    assert info.value.reason == "unavailable" and "cannot be reached" in str(info.value)
    assert "hunter2" not in str(info.value) and "hunter2" not in str(info.value.path)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: nothing listens there


async def _kill_connections(url: str, database: str | None = None) -> int:
    """Terminate every other session on the database, as a server restart or a network cut would."""
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE datname = coalesce($1, current_database()) AND pid <> pg_backend_pid()",
                                   database)
    finally:
        await conn.close()


async def test_broken_connections_are_replaced_and_the_work_retried(pg_url: str):
    store = await open_store(pg_url, labels=["joy"])
    try:
        await store.add_correction(corr("before", 1))
        assert await _kill_connections(pg_url) >= 1
        await store.add_correction(corr("after the cut", 2))  # a dead pooled connection: retried on a new one
        assert await _kill_connections(pg_url) >= 1
        assert await store.count_corrections() == 2  # a read, retried the same way
        await asyncio.sleep(0.2)
        # the listener came back too: another process's opt-out still reaches this one
        other = await open_store(pg_url)
        await other.set_opted_out(77, True)
        await other.close()
        for _ in range(100):
            if await store.refresh_if_changed() and await store.is_opted_out(77):
                break
            await asyncio.sleep(0.05)
        assert await store.is_opted_out(77)
    finally:
        await store.close()


async def test_the_pool_is_bounded_and_concurrent_reads_share_it(pg_url: str):
    store = await open_store(pg_url, pool_size=2)
    try:
        results = await asyncio.gather(*(store.count_corrections() for _ in range(20)))
        assert results == [0] * 20
        sessions = await peek(store, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND application_name = 'emotion-machine'")
        assert sessions[0][0] <= 3  # the pool's two, plus the change listener
    finally:
        await store.close()


async def test_read_only_store_refuses_writes_and_an_unmigrated_database(pg_url: str):
    with pytest.raises(StoreError) as info:
        await open_store(pg_url, read_only=True)  # empty database: nothing to read, and nothing is created
    assert info.value.reason == "old"
    store = await open_store(pg_url, labels=["joy"])
    await store.add_correction(corr("kept", 1))
    await store.close()
    ro = await open_store(pg_url, read_only=True)
    try:
        assert await ro.corrections_for_training() == [("kept", "joy")]
        with pytest.raises(StoreError) as info:
            await ro.add_correction(corr("no", 2))
        assert info.value.reason == "readonly"
    finally:
        await ro.close()


async def test_a_server_that_refuses_connections_gives_a_clear_error_and_no_hang(pg_server, pg_url: str):
    store = await open_store(pg_url, labels=["joy"])
    name = pg_url.rsplit("/", 1)[1]
    try:
        await store.add_correction(corr("a", 1))
        conn = await asyncpg.connect(pg_server.url())
        try:
            # every later connection is refused (as while the server restarts), and the current ones are cut
            await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await _kill_connections(pg_url.rsplit("/", 1)[0] + "/postgres", name)
            with pytest.raises(StoreError) as info:
                await asyncio.wait_for(store.add_correction(corr("b", 2)), 30)
            assert info.value.reason in {"unavailable", "cantopen"}, info.value
            assert store.path in str(info.value)
        finally:
            await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await conn.close()
        await store.add_correction(corr("b", 2))  # back: the store works again, nothing to restart
        assert await count(store, "corrections") == 2
    finally:
        await store.close()


async def test_identify_turns_are_taken_in_order_across_processes_per_bucket(pg_url: str):
    """Discord's IDENTIFY window: one process at a time per bucket, for ``hold_for`` seconds; other buckets go on."""
    a, b = await open_store(pg_url), await open_store(pg_url)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        await a.take_turn("identify.0", 0.6)
        await b.take_turn("identify.1", 0.6)  # another bucket: no wait
        assert loop.time() - started < 0.5
        await b.take_turn("identify.0", 0.6)  # waits for a's window to end
        assert loop.time() - started >= 0.55
        await a.take_turn("identify.2", 60)
        await a.close()  # closing (or dying) ends its turns at once
        began = loop.time()
        await b.take_turn("identify.2", 0.1)
        assert loop.time() - began < 5
    finally:
        await a.close()
        await b.close()
