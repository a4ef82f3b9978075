"""Privacy: users who opted out of tagging, forgetting everything about a user or about deleted messages.

The opt-out list is read for every message, so it is kept in memory; the cache
changes only after the database committed, so it never claims more than is stored.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .corrections import delete_message_corrections
from .predictions import PredictionStore
from .review import ReviewStore

_SELECT_OPTED_OUT = "SELECT user_id FROM opted_out_users"
_INSERT_OPTED_OUT = "INSERT INTO opted_out_users (user_id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING"
_DELETE_OPTED_OUT = "DELETE FROM opted_out_users WHERE user_id = ?"
_DELETE_CORRECTIONS_OF_USER = "DELETE FROM corrections WHERE corrector_id = ? OR author_id = ?"


class PrivacyStore(PredictionStore, ReviewStore):
    """Opt-outs (cached), ``forget_user`` and ``forget_messages`` (corrections and predictions, buffered ones too,
    and the review queue's rows)."""

    def _init_privacy(self) -> None:
        self._opted_out: set[int] = set()

    async def _reload_opted_out(self, db: Any) -> None:
        """Under the lock: replace the cache with the database's list."""
        self._opted_out = {user_id for (user_id,) in await db.execute_fetchall(_SELECT_OPTED_OUT)}

    async def forget_user(self, user_id: int) -> dict[str, int]:
        """Delete everything about a user: their corrections (given or about their
        messages) and predictions about their messages. Returns counts deleted."""
        self._require_open()
        user_id = int(user_id)

        async def body(db: Any) -> dict[str, int]:
            predictions = await self._delete_author_locked(db, user_id)
            corrections = await db.execute(_DELETE_CORRECTIONS_OF_USER, (user_id, user_id))
            await self._forget_review_author_locked(db, user_id)
            return {"corrections": corrections.rowcount, "predictions": predictions}

        return await self._write("forget a user", body)

    async def forget_messages(self, message_ids: Sequence[int]) -> dict[str, int]:
        """Delete everything about these messages (deleted on Discord): their corrections,
        with the text, and their predictions, buffered ones too. Returns counts deleted."""
        self._require_open()
        ids = sorted({int(message_id) for message_id in message_ids})

        async def body(db: Any) -> dict[str, int]:
            predictions = await self._delete_messages_locked(db, ids)
            await self._forget_review_messages_locked(db, ids)
            return {"corrections": await delete_message_corrections(db, ids), "predictions": predictions}

        if not ids:
            return {"corrections": 0, "predictions": 0}
        return await self._write("forget deleted messages", body)

    async def set_opted_out(self, user_id: int, opted_out: bool) -> None:
        """Opt a user out of (or back into) being tagged; the cache follows the commit."""
        self._require_open()
        user_id = int(user_id)

        async def body(db: Any) -> None:
            if opted_out:
                await db.execute(_INSERT_OPTED_OUT, (user_id, time.time()))
            else:
                await db.execute(_DELETE_OPTED_OUT, (user_id,))

        def update_cache(_: None) -> None:
            if opted_out:
                self._opted_out.add(user_id)
            else:
                self._opted_out.discard(user_id)

        await self._write("save an opt-out", body, update_cache)

    async def is_opted_out(self, user_id: int) -> bool:
        """Called for every message, so answered from memory."""
        return user_id in self._opted_out

    async def opted_out_users(self) -> set[int]:
        return set(self._opted_out)
