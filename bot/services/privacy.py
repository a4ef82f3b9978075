"""Privacy: opting out, opting back in, forgetting a member, and the predictions' retention.

Opting out is written first and forgetting second, so a failure in between still stops the
tagging; the member is told what did and did not happen.
"""

from __future__ import annotations

import logging
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


class PrivacyService:
    def __init__(self, settings, store) -> None:
        self.settings = settings
        self.store = store

    async def opt_out(self, user_id: int) -> Forgotten:
        await self.store.set_opted_out(user_id, True)
        try:
            return Forgotten(await self.store.forget_user(user_id))
        except StoreError:
            raise Refusal("You are opted out: I will ignore your messages from now on. Deleting what I "
                          "stored about you failed (database unavailable); run /emotion forget-me later.") from None

    async def opt_in(self, user_id: int) -> None:
        await self.store.set_opted_out(user_id, False)

    async def forget(self, user_id: int) -> Forgotten:
        return Forgotten(await self.store.forget_user(user_id))

    async def apply_retention(self) -> int:
        """Delete predictions older than EMOTION_RETENTION_DAYS (corrections are kept for training)."""
        removed = await self.store.delete_predictions_older_than(self.settings.retention_days)
        if removed:
            log.info("retention: removed %d predictions older than %s days", removed, self.settings.retention_days)
        return removed
