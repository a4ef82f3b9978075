"""Privacy: opting out, opting back in, forgetting a member or deleted messages, and the predictions' retention.

Opting out is written first and forgetting second, so a failure in between still stops the
tagging; the member is told what did and did not happen. Work already under way on a member's
message (a classification, a correction) is tracked in :class:`InFlight`: a forget or a delete
meanwhile drops its result, so nothing about them is stored after they asked.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from bot.services.common import Refusal
from bot.store import StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Forgotten:
    """How many stored records about a member were deleted, by kind."""

    removed: dict

    @property
    def total(self) -> int:
        return sum(self.removed.values())


@dataclass(eq=False, slots=True)
class Work:
    """One piece of work on a member's message that will store something about it when it ends."""

    message_id: int
    author_id: int
    #: A forget of the author or a delete of the message came meanwhile: store nothing.
    dropped: bool = False


class InFlight:
    """The work under way on members' messages, so a forget or a delete reaches what is not stored yet."""

    def __init__(self) -> None:
        self._work: set[Work] = set()

    @contextlib.contextmanager
    def track(self, message_id: int, author_id: int) -> Iterator[Work]:
        """Hold ``work`` for as long as it may still store something; check ``work.dropped`` before and after."""
        work = Work(message_id, author_id)
        self._work.add(work)
        try:
            yield work
        finally:
            self._work.discard(work)

    def drop(self, *, author_id: int | None = None, message_ids: Iterable[int] = ()) -> int:
        """Mark the work on ``author_id``'s messages or on ``message_ids`` as dropped; returns how many."""
        ids = set(message_ids)
        hits = [w for w in self._work if w.author_id == author_id or w.message_id in ids]
        for work in hits:
            work.dropped = True
        return len(hits)


class PrivacyService:
    def __init__(self, settings, store, inflight: InFlight | None = None) -> None:
        self.settings = settings
        self.store = store
        self.inflight = inflight if inflight is not None else InFlight()

    async def opt_out(self, user_id: int) -> Forgotten:
        await self.store.set_opted_out(user_id, True)
        try:
            return await self.forget(user_id)
        except StoreError:
            raise Refusal("You are opted out: I will ignore your messages from now on. Deleting what I "
                          "stored about you failed (database unavailable); run /emotion forget-me later.") from None

    async def opt_in(self, user_id: int) -> None:
        await self.store.set_opted_out(user_id, False)

    async def forget(self, user_id: int) -> Forgotten:
        """Delete what is stored about a member; work on their messages under way now stores nothing."""
        self.inflight.drop(author_id=user_id)
        return Forgotten(await self.store.forget_user(user_id))

    async def messages_deleted(self, message_ids: Iterable[int]) -> Forgotten:
        """Messages deleted on Discord: their predictions and corrections (with the text) go too."""
        ids = list(message_ids)
        self.inflight.drop(message_ids=ids)
        return Forgotten(await self.store.forget_messages(ids))

    async def apply_retention(self) -> int:
        """Delete predictions older than EMOTION_RETENTION_DAYS (corrections are kept for training)."""
        removed = await self.store.delete_predictions_older_than(self.settings.retention_days)
        if removed:
            log.info("retention: removed %d predictions older than %s days", removed, self.settings.retention_days)
        return removed
