"""The SQLite :class:`Store`: the parts over one aiosqlite connection (the embedded default)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

import aiosqlite

from .connection import SQLiteConnection, connect, connect_read_only
from .parts import StoreParts, check_options
from .records import GuildSettings


class Store(StoreParts, SQLiteConnection):
    """SQLite-backed store; create with :meth:`Store.open`, release with :meth:`close`.

    Implements :class:`bot.store.StoreProtocol`.
    """

    def __init__(
        self,
        db: aiosqlite.Connection,
        path: str,
        *,
        labels: Sequence[str] | None,
        flush_interval: float,
        batch_size: int,
        max_buffer: int,
        defaults: GuildSettings | None = None,
        read_only: bool = False,
    ) -> None:
        """Private: use :meth:`open`, which also migrates and starts the caches."""
        super().__init__(db, path, read_only=read_only)
        self._init_parts(labels=labels, flush_interval=flush_interval, batch_size=batch_size,
                         max_buffer=max_buffer, defaults=defaults)

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        labels: Sequence[str] | None = None,
        flush_interval: float = 0.5,
        batch_size: int = 500,
        busy_timeout_ms: int = 5_000,
        max_buffer: int = 100_000,
        defaults: GuildSettings | None = None,
        read_only: bool = False,
    ) -> Store:
        """Open (creating and migrating if needed) the database at ``path``.

        ``path`` may be a ``file:...`` URI (e.g. ``?mode=ro``) or ``:memory:``.
        ``labels`` restricts correction labels (None accepts any non-empty label).
        ``defaults`` are the settings of a guild that never changed any (the bot's EMOTION_THRESHOLD).
        A damaged file (``PRAGMA quick_check``) is refused with the recovery command. ``read_only``
        creates and migrates nothing, refuses every write, and opens even on a read-only
        filesystem (what ``export`` needs); there a damaged file is only a warning.
        """
        check_options(labels, flush_interval, batch_size, max_buffer)
        path_str = os.fspath(path)
        db = await (connect_read_only if read_only else connect)(path_str, busy_timeout_ms)
        store = cls(
            db,
            path_str,
            labels=labels,
            flush_interval=flush_interval,
            batch_size=batch_size,
            max_buffer=max_buffer,
            defaults=defaults,
            read_only=read_only,
        )
        try:
            await store._setup(busy_timeout_ms)
        except BaseException:
            with contextlib.suppress(Exception):
                await db.close()
            raise
        return store
