"""The SQLite connection every part of the store shares, and the rules for using it.

* One aiosqlite connection: each statement runs on its worker thread, so the event
  loop only pays for queueing a call and waking up with its result.
* An :class:`asyncio.Lock` serialises the connection, so the statements of one
  transaction never interleave with another coroutine's.
* Writes run in a shielded task: cancelling the caller never leaves a
  transaction half-done.
* sqlite3 errors leave as :class:`StoreError` naming the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from .errors import StoreError, closed_error, translate_error
from .schema import migrate

log = logging.getLogger(__name__)

T = TypeVar("T")


def _consume_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # mark as retrieved: the caller may have gone away


async def shielded(coro: Awaitable[T]) -> T:
    """Run coro to completion even if the awaiting caller is cancelled."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(_consume_result)
    return await asyncio.shield(task)


async def connect(path: str, busy_timeout_ms: int) -> aiosqlite.Connection:
    """Open ``path`` (a file, a ``file:`` URI or ``:memory:``), creating its directory."""
    uri = path.startswith("file:")
    if not uri and path != ":memory:":
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Could not create the directory for the database {path}: "
                f"{exc.strerror} ({exc.filename})",
                path=path,
                reason="cantopen",
            ) from exc
    try:
        return await aiosqlite.connect(
            path, uri=uri, isolation_level=None, timeout=busy_timeout_ms / 1000
        )
    except sqlite3.Error as exc:
        raise translate_error(exc, path, "open the database") from exc


class SQLiteConnection:
    """Connection plumbing shared by the store's parts (each part is a subclass).

    Subclasses fill two hooks: :meth:`_reload_caches` (after another process
    wrote) and :meth:`_before_close` (e.g. the last flush).
    """

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self._db: aiosqlite.Connection | None = db
        self.path = path
        self._lock = asyncio.Lock()
        self._closed = False
        self._data_version: int | None = None  # PRAGMA data_version at the last cache load

    async def _setup(self, busy_timeout_ms: int) -> None:
        """Pragmas, migrations and caches: run once by ``open``."""
        db = self._conn()
        with self._guard("open the database"):
            await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = (await db.execute_fetchall("PRAGMA journal_mode = WAL"))[0][0]
            if mode.lower() not in ("wal", "memory"):
                log.warning("Database %s is in %s journal mode, not WAL", self.path, mode)
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
        await migrate(self)
        await self.refresh_caches()

    # ----------------------------------------------------------------- caches

    async def _reload_caches(self, db: aiosqlite.Connection) -> None:
        """Hook: re-read the in-memory caches; runs under the lock."""

    async def refresh_caches(self) -> None:
        """Reload the in-memory caches (opt-outs, guild settings) from the database."""
        async with self._lock:  # read and swap in one step: a write here can't slip between
            db = self._conn()
            with self._guard("load the caches"):
                # Read first: a commit landing after it only makes the next check reload again.
                version = (await db.execute_fetchall("PRAGMA data_version"))[0][0]
                await self._reload_caches(db)
            self._data_version = version

    async def refresh_if_changed(self) -> bool:
        """Reload the caches if another connection committed since the last load.

        ``PRAGMA data_version`` changes only for other connections' commits, so this
        costs one tiny read when nothing changed. Lets a second bot process sharing
        the database (or an operator's edit) see opt-outs and guild settings.
        """
        rows = await self._read("check the database for changes", "PRAGMA data_version")
        if rows[0][0] == self._data_version:
            return False
        await self.refresh_caches()
        return True

    # ----------------------------------------------------------------- closing

    async def _before_close(self) -> None:
        """Hook: last work while the connection is still open; must not raise."""

    async def close(self) -> None:
        """Finish pending work and close the connection; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._before_close()
        db, self._db = self._db, None
        if db is None:
            return
        async with self._lock:
            with contextlib.suppress(Exception):
                # Refresh planner statistics cheaply (sampled, not a full ANALYZE).
                await db.execute("PRAGMA analysis_limit = 1000")
                await db.execute("PRAGMA optimize")
            try:
                await db.close()
            except sqlite3.Error as exc:
                log.warning("Error while closing %s: %s", self.path, exc)

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- plumbing

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise closed_error(self.path)
        return self._db

    def _require_open(self) -> None:
        if self._closed:
            raise closed_error(self.path)

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Translate sqlite3 errors raised inside the block into StoreError."""
        try:
            yield
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path, action) from exc

    @staticmethod
    async def _rollback(db: aiosqlite.Connection) -> None:
        try:
            await db.execute("ROLLBACK")
        except (sqlite3.Error, ValueError):
            pass  # no transaction left (SQLite already rolled back) or connection gone

    async def _transaction_locked(
        self, action: str, body: Callable[[aiosqlite.Connection], Awaitable[T]]
    ) -> T:
        """BEGIN IMMEDIATE; body; COMMIT - the caller must hold ``self._lock``."""
        db = self._conn()
        with self._guard(action):
            await db.execute("BEGIN IMMEDIATE")
            try:
                result = await body(db)
                await db.execute("COMMIT")
            except BaseException:
                await self._rollback(db)
                raise
        return result

    async def _write(
        self,
        action: str,
        body: Callable[[aiosqlite.Connection], Awaitable[T]],
        on_commit: Callable[[T], None] | None = None,
    ) -> T:
        """Run body in one write transaction; ``on_commit`` runs under the lock after COMMIT.

        Durable when this returns (WAL with synchronous=NORMAL survives a process kill).
        """

        async def run() -> T:
            async with self._lock:
                result = await self._transaction_locked(action, body)
                if on_commit is not None:
                    on_commit(result)
                return result

        return await shielded(run())

    async def _read(
        self, action: str, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[Any]:
        async with self._lock:
            db = self._conn()  # inside the lock: close() may have run while we waited
            with self._guard(action):
                return list(await db.execute_fetchall(sql, params))
