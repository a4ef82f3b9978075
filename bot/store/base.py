"""What every backend's connection gives the store's parts: transactions, reads, caches, closing.

The parts (``predictions``, ``corrections``, ...) are written once against this class: inside a
transaction they get a ``db`` with ``execute`` (its result has ``rowcount``), ``executemany`` and
``execute_fetchall``, and they write SQL both backends run (``?`` or ``:name`` parameters, casts on
parameters that may be NULL). ``dialect`` ("sqlite" or "postgresql") picks the few statements that
differ. :class:`bot.store.connection.SQLiteConnection` and
:class:`bot.store.postgres.PostgresConnection` fill the abstract methods.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from .errors import StoreError, closed_error

T = TypeVar("T")

#: What a subscriber of a NOTIFY channel hears when announcements may have been missed (a lost connection).
RESYNC = ""

#: ``LIMIT`` for "no limit" that both backends accept (SQLite refuses NULL, PostgreSQL -1).
NO_LIMIT = 1 << 62


def upsert_sql(dialect: str, table: str, columns: Sequence[str], key: Sequence[str],
               types: Mapping[str, str]) -> str:
    """INSERT of rows into ``table``, a row whose ``key`` is taken updating it (or left alone if all is key).

    SQLite: one row per execution (``executemany``). PostgreSQL: a whole batch in one statement, one array per
    column (``types``: the columns' PostgreSQL types), as :func:`upsert_rows` passes it: a round trip per row
    would cost 20x.
    """
    others = [c for c in columns if c not in key]
    conflict = (f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in others)
                if others else f"ON CONFLICT ({', '.join(key)}) DO NOTHING")
    if dialect == "postgresql":
        arrays = ", ".join(f"CAST(${i} AS {types[c]}[])" for i, c in enumerate(columns, 1))
        return f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) {conflict}"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) {conflict}"


async def upsert_rows(db: Any, dialect: str, statement: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run :func:`upsert_sql`'s ``statement`` for ``rows`` inside a transaction body."""
    if dialect == "postgresql":
        await db.execute(statement, [list(column) for column in zip(*rows)])
    else:
        await db.executemany(statement, rows)


def _consume_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # mark as retrieved: the caller may have gone away


async def shielded(coro: Awaitable[T]) -> T:
    """Run coro to completion even if the awaiting caller is cancelled."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(_consume_result)
    return await asyncio.shield(task)


class StoreBase:
    """State and rules shared by the backends; subclasses fill the I/O.

    ``self._lock`` serialises this process's writes (and the cache updates that follow them), so
    the in-memory caches change in commit order.
    """

    dialect = ""

    def __init__(self, db: Any, path: str, *, read_only: bool = False) -> None:
        self._db: Any = db  # the backend's connection (or pool); None once closed
        self.path = path
        self.read_only = read_only
        self._lock = asyncio.Lock()
        self._closed = False

    # ----------------------------------------------------------------- the backend's part

    async def _transaction_locked(self, action: str, body: Callable[[Any], Awaitable[T]]) -> T:
        """One write transaction around ``body(db)``; the caller holds ``self._lock``."""
        raise NotImplementedError

    async def _read(self, action: str, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        """Rows of one query, as tuples."""
        raise NotImplementedError

    async def _read_locked(self, action: str, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        """:meth:`_read` for a caller that holds ``self._lock``."""
        raise NotImplementedError

    async def refresh_caches(self) -> None:
        """Reload the in-memory caches (opt-outs, guild settings) from the database."""
        raise NotImplementedError

    async def refresh_if_changed(self) -> bool:
        """Reload the caches if another process changed what they hold; True if it did."""
        raise NotImplementedError

    async def _close_handle(self) -> None:
        """Close the backend's connection (``self._db``, already taken out); must not raise."""
        raise NotImplementedError

    # ----------------------------------------------------------------- hooks for the parts

    async def _reload_caches(self, db: Any) -> None:
        """Hook: re-read the in-memory caches; runs under the lock."""

    async def _before_close(self) -> None:
        """Hook: last work while the connection is still open; must not raise."""

    # ----------------------------------------------------------------- shared rules

    def _require_open(self) -> None:
        if self._closed:
            raise closed_error(self.path)

    def _require_writable(self, action: str) -> None:
        if self.read_only:
            raise StoreError(f"Could not {action} ({self.path}): the database was opened read-only",
                             path=self.path, reason="readonly")

    async def _write(
        self,
        action: str,
        body: Callable[[Any], Awaitable[T]],
        on_commit: Callable[[T], None] | None = None,
    ) -> T:
        """Run body in one write transaction; ``on_commit`` runs under the lock after COMMIT.

        Durable when this returns; shielded, so a cancelled caller never leaves half a transaction.
        """

        async def run() -> T:
            async with self._lock:
                result = await self._transaction_locked(action, body)
                if on_commit is not None:
                    on_commit(result)
                return result

        return await shielded(run())

    async def close(self) -> None:
        """Finish pending work and close the connection; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._before_close()
        if self._db is None:
            return
        async with self._lock:
            await self._close_handle()
            self._db = None

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
