"""Predictions: one row per tagged message, high volume and low value.

So they are buffered in memory and written in batches (one transaction per batch,
not per message); reads see the buffer too. A flush task runs only while rows wait,
so a quiet bot does no periodic wake-ups. Retention deletes in small chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import operator
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .base import StoreBase, shielded, upsert_rows, upsert_sql
from .errors import StoreError
from .records import PredictionRow, check_prediction

if TYPE_CHECKING:
    from .interface import StoreProtocol

log = logging.getLogger(__name__)

DAY = 86_400.0

_COLUMNS = tuple(f.name for f in dataclasses.fields(PredictionRow))  # the table's column names
_params = operator.attrgetter(*_COLUMNS)  # row -> tuple in _COLUMNS order
_PG_TYPES = {"message_id": "bigint", "guild_id": "bigint", "channel_id": "bigint", "author_id": "bigint",
             "label": "text", "probability": "float8", "model_version": "text", "created_at": "float8"}
_UPSERT = {dialect: upsert_sql(dialect, "predictions", _COLUMNS, ("message_id",), _PG_TYPES)
           for dialect in ("sqlite", "postgresql")}
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM predictions WHERE message_id = ?"
_DELETE = "DELETE FROM predictions WHERE message_id = ?"
_DELETE_BY_AUTHOR = "DELETE FROM predictions WHERE author_id = ?"
_DELETE_OLD = (
    "DELETE FROM predictions WHERE message_id IN "
    "(SELECT message_id FROM predictions WHERE created_at < ? LIMIT ?)"
)
_RETENTION_CHUNK = 1_000  # ~tens of ms per transaction even with all indexes


def _from_sql(values: tuple) -> PredictionRow:
    return PredictionRow(**dict(zip(_COLUMNS, values)))


class PredictionStore(StoreBase):
    """Buffered prediction writes, reads that see the buffer, deletes and retention."""

    def _init_predictions(self, flush_interval: float, batch_size: int, max_buffer: int) -> None:
        self._flush_interval = flush_interval
        self._batch_size = batch_size
        self._max_buffer = max_buffer
        # message_id -> checked row; dict keeps insertion order (oldest first)
        # and gives INSERT OR REPLACE semantics within a batch.
        self._buffer: dict[int, PredictionRow] = {}
        # The batch being written: still what reads must see until it committed (or came back into the buffer).
        # PostgreSQL's reads do not wait for the write lock, so without it a row would be in neither place.
        self._inflight: dict[int, PredictionRow] = {}
        self._eager: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._flush_failing = False
        self._drop_warned = False
        self.dropped_predictions = 0
        """Predictions discarded because the buffer overflowed while the database failed."""

    async def record_prediction(self, row: PredictionRow) -> None:
        """Buffer a prediction; it is written with the next batch (or on close)."""
        self._require_open()
        row = check_prediction(row)
        buffer = self._buffer
        buffer[row.message_id] = row
        if len(buffer) > self._max_buffer:
            self._drop_oldest()
        if len(buffer) >= self._batch_size and (self._eager is None or self._eager.done()):
            # A full batch is written now rather than at the next tick.
            self._eager = asyncio.create_task(self._flush_quietly(), name=f"store-batch:{self.path}")
        self._ensure_flusher()

    def _drop_oldest(self) -> None:
        """Bound memory while the database is failing: forget the oldest predictions."""
        excess = len(self._buffer) - self._max_buffer
        if excess <= 0:
            return
        # Drop a chunk at a time: deleting dict heads one by one degrades to O(n).
        excess = max(excess, self._max_buffer // 10)
        for key in list(itertools.islice(self._buffer, excess)):
            del self._buffer[key]
        self.dropped_predictions += excess
        if not self._drop_warned:
            self._drop_warned = True
            log.warning(
                "Prediction buffer for %s is full (%d rows): the database has been failing, "
                "dropping the oldest predictions",
                self.path,
                self._max_buffer,
            )

    @property
    def buffered(self) -> int:
        """Number of predictions waiting to be written."""
        return len(self._buffer)

    # ----------------------------------------------------------------- flushing

    async def flush(self) -> int:
        """Write all buffered predictions in one transaction; returns how many.

        On failure the rows stay buffered (a later flush retries) and StoreError is raised.
        """
        self._require_open()
        return await self._flush_now()

    async def _flush_now(self) -> int:
        if not (self._buffer or self._inflight) or self._db is None:
            return 0  # (with a batch in flight, taking the lock waits for it: a read after this sees it)
        return await shielded(self._flush_locked())

    async def _flush_locked(self) -> int:
        async with self._lock:
            if not self._buffer:
                return 0
            batch, self._buffer = self._buffer, {}
            self._inflight = batch

            async def insert(db: Any) -> None:
                await upsert_rows(db, self.dialect, _UPSERT[self.dialect], [_params(row) for row in batch.values()])

            try:
                await self._transaction_locked(f"save {len(batch)} predictions", insert)
            except BaseException as exc:
                self._inflight = {}
                if isinstance(exc, StoreError) and exc.reason == "constraint":
                    log.error("Dropping %d predictions that the database refused: %s", len(batch), exc)
                    self.dropped_predictions += len(batch)
                    raise
                # Keep the rows for a retry; rows recorded meanwhile are newer and win.
                batch.update(self._buffer)
                self._buffer = batch
                self._drop_oldest()
                raise
            self._inflight = {}
        if self._flush_failing:
            log.info("Saving predictions to %s works again", self.path)
        self._flush_failing = False
        self._drop_warned = False
        return len(batch)

    def _ensure_flusher(self) -> None:
        """Start the flush task when rows are waiting; it ends once the buffer is empty."""
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name=f"store-flush:{self.path}")

    async def _flush_loop(self) -> None:
        """Flush every ``flush_interval`` or when a batch is full, until nothing is buffered.

        Failures are logged once per outage (with traceback) and retried with
        backoff; the task itself never dies from a database error.
        """
        backoff = self._flush_interval
        while self._buffer:
            if len(self._buffer) < self._batch_size:
                await asyncio.sleep(self._flush_interval)
            try:
                await self._flush_now()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._flush_failing:
                    self._flush_failing = True
                    log.exception(
                        "Could not save predictions; keeping %d buffered and retrying: %s",
                        len(self._buffer),
                        exc,
                    )
                else:
                    log.debug("Prediction flush still failing: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            else:
                backoff = self._flush_interval

    async def _flush_quietly(self) -> None:
        """Flush before a read so it sees recent rows; a failing flush must not block reads."""
        try:
            await self._flush_now()
        except StoreError as exc:
            log.debug("Flush before read failed: %s", exc)

    async def _stop_flushing(self) -> None:
        """On close: stop the flush task, then save what is left (logged if that fails)."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        try:
            await self._flush_now()
        except Exception:
            log.exception(
                "Could not save %d buffered predictions to %s while closing; they are lost",
                len(self._buffer),
                self.path,
            )

    # ----------------------------------------------------------------- reads and deletes

    async def get_prediction(self, message_id: int) -> PredictionRow | None:
        """The prediction for a message, including ones still in the buffer."""
        message_id = int(message_id)
        row = self._buffer.get(message_id) or self._inflight.get(message_id)
        if row is None:
            rows = await self._read("read a prediction", _SELECT, (message_id,))
            # A failed flush may have put the row back into the buffer meanwhile.
            row = _from_sql(rows[0]) if rows else self._buffer.get(message_id)
        return row

    async def delete_prediction(self, message_id: int) -> bool:
        """Delete one message's prediction (e.g. the message was deleted)."""
        message_id = int(message_id)

        async def body(db: Any) -> bool:
            buffered = self._buffer.pop(message_id, None) is not None
            cursor = await db.execute(_DELETE, (message_id,))
            return buffered or cursor.rowcount > 0

        self._require_open()
        return await self._write("delete a prediction", body)

    def _discard_buffered(self, keep: Callable[[PredictionRow], bool]) -> int:
        """Drop buffered rows that ``keep`` rejects; returns how many."""
        before = len(self._buffer)
        self._buffer = {k: row for k, row in self._buffer.items() if keep(row)}
        return before - len(self._buffer)

    async def _delete_messages_locked(self, db: Any, message_ids: Sequence[int]) -> int:
        """Inside a write transaction: delete (buffered and stored) predictions of these messages."""
        buffered = sum(self._buffer.pop(message_id, None) is not None for message_id in message_ids)
        cursor = await db.executemany(_DELETE, [(message_id,) for message_id in message_ids])
        return buffered + cursor.rowcount

    async def _delete_author_locked(self, db: Any, user_id: int) -> int:
        """Inside a write transaction: delete (buffered and stored) predictions about a user."""
        buffered = self._discard_buffered(lambda row: row.author_id != user_id)
        cursor = await db.execute(_DELETE_BY_AUTHOR, (user_id,))
        return buffered + cursor.rowcount

    async def delete_predictions_for_author(self, user_id: int) -> int:
        """Delete predictions about a user's messages; returns how many."""
        user_id = int(user_id)
        self._require_open()
        return await self._write(
            "delete a user's predictions", lambda db: self._delete_author_locked(db, user_id)
        )

    async def delete_predictions_older_than(self, days: float, now: float | None = None) -> int:
        """Retention: delete predictions older than ``days``; returns how many.

        Deletes in chunks of separate transactions so that a large purge never
        holds the write lock long enough to stall the bot's other writes.
        """
        self._require_open()
        days = float(days)
        if not days >= 0:
            raise ValueError(f"days must be >= 0, got {days!r}")
        cutoff = (time.time() if now is None else float(now)) - days * DAY
        total = 0

        async def chunk(db: Any) -> int:
            n = self._discard_buffered(lambda row: row.created_at >= cutoff)
            cursor = await db.execute(_DELETE_OLD, (cutoff, _RETENTION_CHUNK))
            return n + cursor.rowcount

        while True:
            deleted = await self._write("delete old predictions", chunk)
            total += deleted
            if deleted < _RETENTION_CHUNK:
                return total


async def run_retention(store: StoreProtocol, days: float) -> int:
    """One retention pass for a periodic task; never raises StoreError (logs instead),
    because an exception would stop a ``discord.ext.tasks`` loop for good."""
    try:
        deleted = await store.delete_predictions_older_than(days)
    except StoreError as exc:
        log.warning("Retention pass failed, will retry next time: %s", exc)
        return 0
    if deleted:
        log.info("Retention: deleted %d predictions older than %g days", deleted, days)
    return deleted
