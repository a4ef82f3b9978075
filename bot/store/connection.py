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
import os
import sqlite3
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from .base import StoreBase
from .errors import StoreError, closed_error, damaged_error, translate_error
from .schema import SCHEMA_VERSION, migrate

log = logging.getLogger(__name__)

T = TypeVar("T")

#: ``PRAGMA quick_check`` reads the whole file (0.35 s for 90 MB measured): above this it is skipped, with a log line.
QUICK_CHECK_MAX_BYTES = 512 << 20


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
    connection = aiosqlite.connect(path, uri=uri, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        return await connection
    except sqlite3.Error as exc:
        # aiosqlite then stops its worker thread, which answers on this loop: wait for it, or a loop closed
        # right after this error (a one-shot command's asyncio.run) prints a "loop is closed" traceback.
        await asyncio.to_thread(getattr(connection, "_thread", connection).join, 5)
        raise translate_error(exc, path, "open the database") from exc


async def connect_read_only(path: str, busy_timeout_ms: int) -> aiosqlite.Connection:
    """Open ``path`` for reading only, creating nothing (for ``export``, say, on a read-only disk).

    ``mode=ro`` first. A WAL database on a read-only filesystem cannot even be opened that way (SQLite
    needs its -shm file), so then ``immutable=1``, which reads the file as it is.
    """
    if path == ":memory:" or path.startswith("file:"):
        return await connect(path, busy_timeout_ms)
    if not Path(path).is_file():
        raise StoreError(f"The database {path} does not exist: there is nothing to read", path=path,
                         reason="cantopen")
    uri = "file:" + urllib.parse.quote(str(Path(path).resolve()))
    try:
        return await _readable(f"{uri}?mode=ro", path, busy_timeout_ms)
    except StoreError as first:
        try:
            db = await _readable(f"{uri}?immutable=1", path, busy_timeout_ms)
        except StoreError:
            raise first from None
    wal = Path(f"{path}-wal")
    unseen = " Changes still in its -wal file are not seen." if wal.is_file() and wal.stat().st_size else ""
    log.warning("Opened %s as immutable: its folder is not writable, so SQLite cannot share it.%s", path, unseen)
    return db


async def _readable(uri: str, path: str, busy_timeout_ms: int) -> aiosqlite.Connection:
    """Connect to ``uri`` and read the schema once: SQLite opens lazily, so that is when opening fails."""
    db = await connect(uri, busy_timeout_ms)
    try:
        await db.execute_fetchall("SELECT count(*) FROM sqlite_schema")
    except sqlite3.Error as exc:
        await db.close()
        raise translate_error(exc, path, "open the database read-only") from exc
    return db


def _file_size(path: str) -> int | None:
    if path == ":memory:" or path.startswith("file:"):
        return None
    try:
        return os.path.getsize(path)
    except OSError:
        return None


class SQLiteConnection(StoreBase):
    """The SQLite backend of :class:`bot.store.base.StoreBase`: one aiosqlite connection."""

    dialect = "sqlite"

    def __init__(self, db: aiosqlite.Connection, path: str, *, read_only: bool = False) -> None:
        super().__init__(db, path, read_only=read_only)
        self._data_version: int | None = None  # PRAGMA data_version at the last cache load

    async def _setup(self, busy_timeout_ms: int) -> None:
        """Pragmas, the integrity check, migrations and caches: run once by ``open``."""
        db = self._conn()
        with self._guard("open the database"):
            await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await self._check_integrity()
        if self.read_only:
            await self._check_schema_readable()
            await self.refresh_caches()
            return
        with self._guard("open the database"):
            mode = (await db.execute_fetchall("PRAGMA journal_mode = WAL"))[0][0]
            if mode.lower() not in ("wal", "memory"):
                log.warning("Database %s is in %s journal mode, not WAL", self.path, mode)
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
        await migrate(self)
        await self.refresh_caches()

    async def _check_integrity(self) -> None:
        """``PRAGMA quick_check``: a damaged file is refused before anything is written to it.

        Read-only, it is only a warning: reading what is left is how to salvage it.
        """
        size = _file_size(self.path)
        if size is not None and size > QUICK_CHECK_MAX_BYTES:
            log.info("Database %s is %d MB: skipped the integrity check at open; check it yourself with "
                     "sqlite3 %s \"PRAGMA quick_check\"", self.path, size >> 20, self.path)
            return
        try:
            problems = [str(r[0]) for r in await self._conn().execute_fetchall("PRAGMA quick_check(5)")
                        if r[0] != "ok"]
        except sqlite3.Error as exc:  # too damaged even to check
            error = translate_error(exc, self.path, "check the database")
            if error.reason != "corrupt":
                raise error from exc
            problems = [str(exc)]
        if not problems:
            return
        if not self.read_only:
            raise damaged_error(self.path, problems)
        log.warning("%s Reading what is left, read-only.", damaged_error(self.path, problems))

    async def _check_schema_readable(self) -> None:
        """Read-only, nothing is migrated: the file must already have this build's schema."""
        with self._guard("read the schema version"):
            version = (await self._conn().execute_fetchall("PRAGMA user_version"))[0][0]
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"The database {self.path} has schema version {version}, not {SCHEMA_VERSION}, and it was opened "
                "read-only, so it cannot be migrated: open it once read-write (start the bot) first, or use the "
                "version of Emotion Machine that wrote it.", path=self.path, reason="newer" if version > SCHEMA_VERSION
                else "old")

    # ----------------------------------------------------------------- caches

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

    async def _close_handle(self) -> None:
        db = self._db
        with contextlib.suppress(Exception):
            # Refresh planner statistics cheaply (sampled, not a full ANALYZE).
            await db.execute("PRAGMA analysis_limit = 1000")
            await db.execute("PRAGMA optimize")
        try:
            await db.close()
        except sqlite3.Error as exc:
            log.warning("Error while closing %s: %s", self.path, exc)

    # ----------------------------------------------------------------- plumbing

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise closed_error(self.path)
        return self._db

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
        self._require_writable(action)
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

    async def _read(
        self, action: str, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[Any]:
        async with self._lock:
            db = self._conn()  # inside the lock: close() may have run while we waited
            with self._guard(action):
                return list(await db.execute_fetchall(sql, params))

    async def _read_locked(
        self, action: str, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[Any]:
        with self._guard(action):
            return list(await self._conn().execute_fetchall(sql, params))
