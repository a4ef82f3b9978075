"""The schema: the migrations shipped in ``bot/migrations``, one numbering for both backends.

``V{n}__{name}.sql`` takes a database from version n-1 to n; migrations only go forward. SQLite keeps
its version in ``PRAGMA user_version`` and applies each step in its own transaction (:func:`migrate`);
PostgreSQL starts from a baseline and keeps it in ``schema_version`` (:func:`postgres_migrations`,
run by :mod:`bot.store.postgres`).
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
from importlib import resources
from typing import TYPE_CHECKING

from .errors import StoreError

if TYPE_CHECKING:
    import aiosqlite

    from .connection import SQLiteConnection

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"V(\d+)__(\w+)\.sql")


@functools.cache
def migrations() -> tuple[tuple[int, str, str], ...]:
    """All ``(version, name, sql)`` migrations shipped in ``bot/migrations``, in order."""
    found: list[tuple[int, str, str]] = []
    for entry in resources.files("bot.migrations").iterdir():
        match = _MIGRATION_NAME.fullmatch(entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return tuple(found)


SCHEMA_VERSION = len(migrations())
"""The schema version this build creates and understands."""


@functools.cache
def postgres_migrations() -> tuple[tuple[int, str, str], ...]:
    """The ``(version, name, sql)`` steps PostgreSQL takes to :data:`SCHEMA_VERSION`.

    ``bot/migrations/postgresql/V{n}__baseline.sql`` creates version n in one step (a new database starts
    there); after it, each version is that folder's own ``V{n}`` where the SQL differs, else the shared one.
    """
    own = {}
    for entry in resources.files("bot.migrations").joinpath("postgresql").iterdir():
        match = _MIGRATION_NAME.fullmatch(entry.name)
        if match:
            own[int(match[1])] = (int(match[1]), match[2], entry.read_text(encoding="utf-8"))
    baselines = [v for v, (_, name, _) in own.items() if name == "baseline"]
    if len(baselines) != 1:
        raise RuntimeError(f"bot/migrations/postgresql needs exactly one V{{n}}__baseline.sql, found {baselines}")
    baseline = baselines[0]
    return (own[baseline], *(own.get(v, (v, name, sql)) for v, name, sql in migrations() if v > baseline))


def split_sql(script: str) -> list[str]:
    """Split a SQL script into single statements (sqlite3 executes one at a time)."""
    statements: list[str] = []
    buf = ""
    parts = script.split(";")
    for part in parts[:-1]:
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    rest = buf + parts[-1]
    leftover = "\n".join(
        line for line in rest.splitlines() if line.strip() and not line.strip().startswith("--")
    )
    if leftover.strip():
        raise ValueError(f"incomplete SQL statement at end of script: {leftover[:80]!r}")
    return statements


async def _user_version(db: aiosqlite.Connection) -> int:
    return (await db.execute_fetchall("PRAGMA user_version"))[0][0]


async def migrate(conn: SQLiteConnection) -> None:
    """Apply the pending migrations; StoreError if the database is newer than this build."""
    with conn._guard("read the schema version"):
        current = await _user_version(conn._conn())
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"The database {conn.path} has schema version {current}, newer than this "
            f"version of Emotion Machine understands ({SCHEMA_VERSION}). Upgrade the bot; "
            "migrations only go forward.",
            path=conn.path,
            reason="newer",
        )
    for version, name, sql in migrations():
        if version <= current:
            continue

        async def apply(db: aiosqlite.Connection, version: int = version, sql: str = sql) -> bool:
            # Re-check inside the write lock: another process may have migrated.
            if await _user_version(db) >= version:
                return False
            for statement in split_sql(sql):
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {version}")
            return True

        if await conn._write(f"apply migration V{version}__{name}", apply):
            log.info("Applied migration V%d__%s to %s", version, name, conn.path)
