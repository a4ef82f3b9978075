"""The /review queue: per server, the messages the model was least sure of, with their text, for a moderator.

"Least sure" is the lowest top probability (``confidence``): the number the threshold is held to and the one a
moderator is shown; the margin to the second label would need the whole distribution, which nothing else keeps.
Only the ``keep`` least sure wait per server (the surest is evicted), and no row outlives ``max_age``: reads
ignore older rows and :meth:`ReviewStore.delete_expired_reviews` deletes them.

Most messages never enter a full queue, so a cached bound per server (how many wait, the surest of them, the
oldest) answers "would it enter?" from memory: only a message that enters costs a write.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .base import NO_LIMIT, StoreBase
from .records import storable

DAY = 86_400.0
KEEP = 50
"""Messages waiting per server by default."""


@dataclass(frozen=True, slots=True)
class ReviewRow:
    """A message waiting for review; field names are the ``review_queue`` columns."""

    guild_id: int
    channel_id: int
    message_id: int
    author_id: int
    label: str
    #: The model's top probability for ``label``: how sure it was.
    confidence: float
    model_version: str | None
    created_at: float
    #: The message as it was written: kept only while it waits, at most 24 hours.
    text: str


_COLUMNS = tuple(f.name for f in dataclasses.fields(ReviewRow))
_params = operator.attrgetter(*_COLUMNS)
_UPSERT = (f"INSERT INTO review_queue ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
           f"ON CONFLICT (message_id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _COLUMNS[1:])}")
_ORDER = "ORDER BY confidence, created_at, message_id"  # least sure first; on a tie the older
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM review_queue WHERE guild_id = ? AND created_at >= ? {_ORDER} LIMIT ?"
_EVICT = (f"DELETE FROM review_queue WHERE message_id IN "
          f"(SELECT message_id FROM review_queue WHERE guild_id = ? {_ORDER} LIMIT {NO_LIMIT} OFFSET ?)")
_BOUND = "SELECT count(*), max(confidence), min(created_at) FROM review_queue WHERE guild_id = ?"
_IS_WAITING = "SELECT 1 FROM review_queue WHERE message_id = ?"
_DELETE_ONE = "DELETE FROM review_queue WHERE guild_id = ? AND message_id = ?"
_DELETE_GUILD = "DELETE FROM review_queue WHERE guild_id = ?"
_DELETE_GUILD_EXPIRED = "DELETE FROM review_queue WHERE guild_id = ? AND created_at < ?"
_DELETE_EXPIRED = "DELETE FROM review_queue WHERE created_at < ?"
_DELETE_MESSAGE = "DELETE FROM review_queue WHERE message_id = ?"
_DELETE_AUTHOR = "DELETE FROM review_queue WHERE author_id = ?"


@dataclass(frozen=True, slots=True)
class _Bound:
    """What waits in one server's queue, expired rows included: enough to refuse a message without I/O."""

    count: int
    surest: float | None
    oldest: float | None

    def refuses(self, confidence: float, keep: int, cutoff: float) -> bool:
        """Full of rows at most as sure, none expired: ``confidence`` would be evicted at once."""
        return (self.count >= keep and self.surest is not None and confidence >= self.surest
                and self.oldest is not None and self.oldest >= cutoff)


def check_review(row: ReviewRow) -> ReviewRow:
    """A copy with coerced fields; ValueError for a row that must not wait (no text, no server, no label)."""
    if row.guild_id is None:
        raise ValueError("a review row needs its guild (DMs are never queued)")
    if not isinstance(row.text, str) or not row.text.strip():
        raise ValueError("review text is empty")
    if not isinstance(row.label, str) or not row.label:
        raise ValueError(f"review label must be a non-empty string, got {row.label!r}")
    confidence, created_at = float(row.confidence), float(row.created_at)
    if not (0.0 <= confidence <= 1.0 and math.isfinite(created_at)):
        raise ValueError(f"review confidence must be between 0 and 1, got {row.confidence!r}")
    return ReviewRow(guild_id=int(row.guild_id), channel_id=int(row.channel_id), message_id=int(row.message_id),
                     author_id=int(row.author_id), label=row.label, confidence=confidence,
                     model_version=None if row.model_version is None else str(row.model_version),
                     created_at=created_at, text=storable(row.text))


def _cutoff(max_age: float, now: float | None) -> float:
    max_age = float(max_age)
    if not max_age > 0:
        raise ValueError(f"max_age must be > 0 seconds, got {max_age!r}")
    return (time.time() if now is None else float(now)) - max_age


class ReviewStore(StoreBase):
    """The review queue and the cached bound per server; deletes drop the bound, so it never claims too much."""

    def _init_review(self) -> None:
        self._review_bounds: dict[int, _Bound] = {}

    def _forget_review_bounds(self, guild_id: int | None = None) -> None:
        """Drop the cached bound of one server (or all): rows left, so it would refuse too much."""
        if guild_id is None:
            self._review_bounds.clear()
        else:
            self._review_bounds.pop(guild_id, None)

    async def offer_review(self, row: ReviewRow, *, keep: int = KEEP, max_age: float = DAY) -> bool:
        """Queue ``row`` if it is among its server's ``keep`` least sure; True if it waits now.

        The server's expired rows go in the same transaction; the surest beyond ``keep`` is evicted.
        """
        self._require_open()
        row = check_review(row)
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep!r}")
        cutoff = _cutoff(max_age, None)
        if row.created_at < cutoff or (await self._review_bound(row.guild_id)).refuses(row.confidence, keep, cutoff):
            return False

        async def body(db: Any) -> tuple[bool, _Bound]:
            await db.execute(_DELETE_GUILD_EXPIRED, (row.guild_id, cutoff))
            await db.execute(_UPSERT, _params(row))
            await db.execute(_EVICT, (row.guild_id, keep))
            waits = bool(await db.execute_fetchall(_IS_WAITING, (row.message_id,)))
            return waits, _Bound(*(await db.execute_fetchall(_BOUND, (row.guild_id,)))[0])

        def update_bound(result: tuple[bool, _Bound]) -> None:
            self._review_bounds[row.guild_id] = result[1]

        waits, _ = await self._write("queue a message for review", body, update_bound)
        return waits

    async def _review_bound(self, guild_id: int) -> _Bound:
        """The cached bound, read once per server (under the lock, so no write slips between read and cache)."""
        bound = self._review_bounds.get(guild_id)
        if bound is not None:
            return bound
        async with self._lock:
            if guild_id not in self._review_bounds:
                rows = await self._read_locked("read the review queue", _BOUND, (guild_id,))
                self._review_bounds[guild_id] = _Bound(*rows[0])
            return self._review_bounds[guild_id]

    async def review_items(self, guild_id: int, *, limit: int = KEEP, max_age: float = DAY,
                           now: float | None = None) -> list[ReviewRow]:
        """The server's waiting messages younger than ``max_age``, least sure first."""
        rows = await self._read("read the review queue", _SELECT, (int(guild_id), _cutoff(max_age, now), int(limit)))
        return [ReviewRow(*values) for values in rows]

    async def remove_review(self, guild_id: int, message_id: int) -> bool:
        """Take a message of this server out of the queue (labelled, skipped, deleted); True if it waited."""
        self._require_open()
        guild_id = int(guild_id)

        async def body(db: Any) -> bool:
            self._forget_review_bounds(guild_id)
            return (await db.execute(_DELETE_ONE, (guild_id, int(message_id)))).rowcount > 0

        return await self._write("remove a message from the review queue", body)

    async def delete_expired_reviews(self, max_age: float = DAY, now: float | None = None) -> int:
        """Delete every row older than ``max_age`` (their text with them); returns how many."""
        self._require_open()
        cutoff = _cutoff(max_age, now)

        async def body(db: Any) -> int:
            self._forget_review_bounds()
            return (await db.execute(_DELETE_EXPIRED, (cutoff,))).rowcount

        return await self._write("delete expired review rows", body)

    # ----------------------------------------------------------------- inside other parts' transactions

    async def _clear_review_locked(self, db: Any, guild_id: int) -> int:
        """Review turned off: the server's queue goes."""
        self._forget_review_bounds(guild_id)
        return (await db.execute(_DELETE_GUILD, (guild_id,))).rowcount

    async def _forget_review_messages_locked(self, db: Any, message_ids: Sequence[int]) -> int:
        """Deleted messages leave the queue."""
        self._forget_review_bounds()
        return (await db.executemany(_DELETE_MESSAGE, [(m,) for m in message_ids])).rowcount

    async def _forget_review_author_locked(self, db: Any, user_id: int) -> int:
        """A forgotten (or opted-out) member's messages leave the queue."""
        self._forget_review_bounds()
        return (await db.execute(_DELETE_AUTHOR, (user_id,))).rowcount
