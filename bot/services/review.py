"""``/review``: the messages the model was least sure of, offered to a server's moderators to label.

Off by default (``/emotion-config review``, Manage Server). With it on, tagging offers each tagged message
(:func:`offer`); the store keeps only the :data:`KEEP` least sure per server, by top probability. The queue is
the one place a message's text is kept without a correction, so it is kept only while it waits and never past
:data:`MAX_AGE`: the purge runs every :data:`PURGE_EVERY` and deletes what would pass 24 h before the next run.
A label goes through :class:`~bot.services.correcting.CorrectingService` like any correction, which takes the
message out of the queue; a forget, an opt-out, a deleted message and turning review off empty it too.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.services.common import Actor, Refusal
from bot.store.review import ReviewRow

if TYPE_CHECKING:
    from bot.services.tagging import IncomingMessage

KEEP = 50
"""Messages waiting per server: the least sure; a less sure newcomer evicts the surest."""
MAX_AGE = 24 * 3600.0
"""No text waits longer (the README's data statement says so)."""
PURGE_EVERY = 600.0
"""Seconds between purges of expired rows."""
BATCH = 5
"""Messages one ``/review`` shows, one after another."""

OFF = "Review is off in this server; an admin can turn it on with /emotion-config review:True."
EMPTY = ("Nothing waits for review right now. I queue the messages I'm least sure of as members write; "
         "come back later.")
UNREADABLE = "Nothing waits for review in channels you can read."


async def offer(store, message: IncomingMessage, prediction) -> bool:
    """Queue a tagged message of a server with review on; True if it is among the least sure and waits.

    The probability is clamped: float rounding (fp16 on CUDA) can put it a hair above 1, which the store refuses.
    """
    if not message.text.strip():
        return False
    return await store.offer_review(ReviewRow(
        guild_id=message.guild_id, channel_id=message.channel_id, message_id=message.message_id,
        author_id=message.author_id, label=prediction.label, confidence=min(1.0, max(0.0, float(prediction.score))),
        model_version=prediction.version, created_at=time.time(), text=message.text), keep=KEEP, max_age=MAX_AGE)


class ReviewService:
    def __init__(self, store) -> None:
        self.store = store

    async def batch(self, actor: Actor, readable: Callable[[int], Awaitable[bool]],
                    size: int = BATCH) -> list[ReviewRow]:
        """The least-sure waiting messages of the actor's server in channels ``readable`` says they may read.

        ``readable(channel_id)`` is the front end's answer from server-side permissions, asked once per channel.
        """
        actor.require_moderator("review the bot's tags")
        if actor.guild_id is None:
            raise Refusal("Review only works in a server.")
        if not (await self.store.get_guild_settings(actor.guild_id)).review:
            raise Refusal(OFF)
        rows = await self.store.review_items(actor.guild_id, limit=KEEP, max_age=MAX_AGE)
        if not rows:
            raise Refusal(EMPTY)
        shown = await _readable_rows(rows, readable, size)
        if not shown:
            raise Refusal(UNREADABLE)
        return shown

    async def skip(self, actor: Actor, message_id: int) -> None:
        """The moderator passes on a message: it leaves the queue, with no label."""
        actor.require_moderator("skip messages waiting for review")
        if actor.guild_id is not None:
            await self.store.remove_review(actor.guild_id, message_id)

    async def gone(self, guild_id: int, message_id: int) -> None:
        """The message was deleted (or can no longer be reached): its text leaves the queue."""
        await self.store.remove_review(guild_id, message_id)

    async def expire(self) -> int:
        """Delete what would be older than :data:`MAX_AGE` before the next purge; returns how many."""
        return await self.store.delete_expired_reviews(MAX_AGE - PURGE_EVERY)


async def _readable_rows(rows: list[ReviewRow], readable: Callable[[int], Awaitable[bool]],
                         size: int) -> list[ReviewRow]:
    """The first ``size`` rows in readable channels, asking about each channel once."""
    answers: dict[int, bool] = {}
    shown: list[ReviewRow] = []
    for row in rows:
        if row.channel_id not in answers:
            answers[row.channel_id] = await readable(row.channel_id)
        if answers[row.channel_id]:
            shown.append(row)
            if len(shown) == size:
                break
    return shown
