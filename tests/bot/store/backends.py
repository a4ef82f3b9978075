"""Looking behind a store's back, and breaking its database, the same way on both backends."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator

TABLES = ("predictions", "corrections", "guild_settings", "guild_channels", "opted_out_users", "review_queue",
          "guild_departures")
# PostgreSQL: what a failing write raises, by the reason the store should report.
_PG_ERRCODES = {"full": "53100", "readonly": "25006"}


async def peek(store, sql: str, params=()) -> list[tuple]:
    """Rows of ``sql`` read through the store's own connection (committed data only, not the buffer)."""
    return [tuple(r) for r in await store._read("peek", sql, params)]


async def count(store, table: str) -> int:
    return (await peek(store, f"SELECT count(*) FROM {table}"))[0][0]


async def execute(store, sql: str, rows=None) -> None:
    """Run ``sql`` (once, or once per row of ``rows``) in one transaction of the store's own connection."""

    async def body(db) -> None:
        if rows is None:
            await db.execute(sql)
        else:
            await db.executemany(sql, rows)

    await store._write("test setup", body)


async def columns(store) -> dict[str, set[str]]:
    """Every table of the schema and its columns."""
    if store.dialect == "sqlite":
        names = [n for (n,) in await peek(store, "SELECT name FROM sqlite_master WHERE type = 'table' "
                                                 "AND name NOT LIKE 'sqlite_%'")]
        return {n: {r[1] for r in await peek(store, f"PRAGMA table_info({n})")} for n in names}
    found: dict[str, set[str]] = {}
    for table, column in await peek(store, "SELECT table_name, column_name FROM information_schema.columns "
                                           "WHERE table_schema = 'public'"):
        found.setdefault(table, set()).add(column)
    return found


@contextlib.asynccontextmanager
async def writes_fail(store, reason: str = "readonly") -> AsyncIterator[None]:
    """Every write fails inside the block as it would for ``reason`` ("readonly" or "full"); reads still work.

    SQLite: ``PRAGMA query_only`` or ``max_page_count`` on the store's connection. PostgreSQL: a trigger on every
    table raising the server's own error code for it.
    """
    if store.dialect == "sqlite":
        db = store._db
        if reason == "full":
            pages = (await db.execute_fetchall("PRAGMA page_count"))[0][0]
            await db.execute(f"PRAGMA max_page_count = {pages}")
        else:
            await db.execute("PRAGMA query_only = ON")
        try:
            yield
        finally:
            await db.execute("PRAGMA max_page_count = 1073741823" if reason == "full" else "PRAGMA query_only = OFF")
        return
    code = _PG_ERRCODES[reason]
    await execute(store, f"""CREATE FUNCTION test_fail() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'test: writes fail ({reason})' USING ERRCODE = '{code}'; END $$""")
    for table in TABLES:
        await execute(store, f"CREATE TRIGGER test_fail BEFORE INSERT OR UPDATE OR DELETE ON {table} "
                             "FOR EACH STATEMENT EXECUTE FUNCTION test_fail()")
    try:
        yield
    finally:
        await execute(store, "DROP FUNCTION test_fail() CASCADE")


@contextlib.asynccontextmanager
async def locked_by_another(store, target: str) -> AsyncIterator[None]:
    """Another connection holds the write lock of the store's tables for the block."""
    if store.dialect == "sqlite":
        other = sqlite3.connect(target, isolation_level=None, timeout=5)
        other.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
        return
    import asyncpg

    other = await asyncpg.connect(target)
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.execute(f"LOCK TABLE {', '.join(TABLES)} IN EXCLUSIVE MODE")  # plain reads still run
        try:
            yield
        finally:
            await transaction.rollback()
    finally:
        await other.close()


async def refreshed(store, timeout: float = 5.0) -> bool:
    """refresh_if_changed, polled until it reloads (PostgreSQL's NOTIFY arrives a moment after the commit)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await store.refresh_if_changed():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True
