"""Copying a store's data to another store (SQLite to PostgreSQL as a bot grows, or back): ``db migrate``.

Table by table, in key order and in chunks, each chunk one transaction of the destination; rows are
upserted by their key, so a rerun (after a failure, or to catch up) copies again without doubling
anything. Then the row counts of both sides are compared. Corrections keep their ids; on PostgreSQL the
identity then continues after the highest one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import upsert_rows, upsert_sql

# (table, key columns) in an order the foreign keys allow (guild_channels after guild_settings).
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("guild_settings", ("guild_id",)),
    ("guild_channels", ("guild_id", "mode", "channel_id")),
    ("opted_out_users", ("user_id",)),
    ("guild_departures", ("guild_id",)),
    ("corrections", ("id",)),
    ("review_queue", ("message_id",)),
    ("predictions", ("message_id",)),
)
CHUNK = 5_000


@dataclass(frozen=True)
class TableCopy:
    """One table's figures: rows at the source, rows written (inserted or refreshed), rows at the destination."""

    table: str
    source: int
    copied: int
    destination: int

    @property
    def matches(self) -> bool:
        return self.source == self.destination


async def _columns(store: Any, table: str) -> list[tuple[str, str]]:
    """``(name, type)`` of a table's columns, in the table's order."""
    if store.dialect == "sqlite":
        return [(r[1], r[2]) for r in await store._read("read the schema", f"PRAGMA table_info({table})")]
    return [tuple(r) for r in await store._read(
        "read the schema", "SELECT column_name, data_type FROM information_schema.columns "
                           "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
        (table,))]


async def _count(store: Any, table: str) -> int:
    return (await store._read(f"count {table}", f"SELECT count(*) FROM {table}"))[0][0]


async def copy_store(source: Any, destination: Any, *, chunk: int = CHUNK,
                     progress: Callable[[str, int], None] | None = None) -> list[TableCopy]:
    """Copy every table of ``source`` into ``destination`` (both open stores at the same schema version)."""
    destination._require_writable("copy data into the database")
    report = []
    for table, key in TABLES:
        names = [name for name, _ in await _columns(source, table)]
        types = dict(await _columns(destination, table))
        missing = [name for name in names if name not in types]
        if missing:
            raise ValueError(f"{table}: the destination has no column {', '.join(missing)}: are both databases "
                             "at this version's schema?")
        statement = upsert_sql(destination.dialect, table, names, key, types)
        order = ", ".join(key)
        after = " OR ".join(  # keyset pagination: (k1, k2, ...) > (?, ?, ...), spelt out for both backends
            "(" + " AND ".join([*(f"{k} = ?" for k in key[:i]), f"{key[i]} > ?"]) + ")" for i in range(len(key)))
        select = f"SELECT {', '.join(names)} FROM {table}"
        key_at = [names.index(k) for k in key]
        copied, last = 0, None
        while True:
            if last is None:
                rows = await source._read(f"read {table}", f"{select} ORDER BY {order} LIMIT ?", (chunk,))
            else:
                params = [v for i in range(len(key)) for v in (*last[:i], last[i])]
                rows = await source._read(f"read {table}", f"{select} WHERE {after} ORDER BY {order} LIMIT ?",
                                          (*params, chunk))
            if not rows:
                break

            async def write(db: Any, rows: list = rows, statement: str = statement) -> None:
                await upsert_rows(db, destination.dialect, statement, rows)

            await destination._write(f"copy {len(rows)} rows into {table}", write)
            copied += len(rows)
            last = tuple(rows[-1][i] for i in key_at)
            if progress is not None:
                progress(table, copied)
        report.append(TableCopy(table, await _count(source, table), copied, await _count(destination, table)))
    if destination.dialect == "postgresql":  # new corrections get ids after the copied ones
        await destination._write("continue the correction ids", lambda db: db.execute(
            "SELECT setval(pg_get_serial_sequence('corrections', 'id'), "
            "(SELECT coalesce(max(id), 0) + 1 FROM corrections), false)"))
    return report
