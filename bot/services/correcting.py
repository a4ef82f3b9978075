"""Correcting a tag: which messages may be corrected, by whom, and storing the correction durably.

Used by ``/correct``, the "Correct emotion" menu and the shell's ``/correct``. The front end
finds the message and says what it knows about it (:class:`Target`); swapping the emoji on
Discord stays in the front end, which gets back what was shown and what is right.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from bot.services.common import Actor, Refusal
from bot.services.privacy import InFlight
from bot.store import Correction
from model.labels import emoji_for


@dataclass(frozen=True, slots=True)
class Target:
    """The message being corrected, as the front end found it."""

    guild_id: int
    channel_id: int
    message_id: int
    author_id: int
    text: str
    #: Written by a bot or a webhook (or by this bot itself: ``own``).
    by_bot: bool = False
    own: bool = False
    #: The actor can read the channel the message is in (view + history), per server-side permissions.
    actor_can_read: bool = True


@dataclass(frozen=True, slots=True)
class Corrected:
    label: str
    #: What the bot had tagged the message with (None: not tagged).
    previous: str | None
    #: Whether the server shows reactions at all (the front end swaps the emoji only then).
    reactions: bool
    #: Corrections stored in all, after this one (only when asked for: it is a count over the table).
    total: int | None = None

    @property
    def confirmed(self) -> bool:
        return self.previous == self.label


def resolve_label(text: str, labels: Sequence[str]) -> str:
    """The model's label that ``text`` names (any case), or a Refusal listing them."""
    wanted = text.strip().lower()
    for label in labels:
        if label.lower() == wanted:
            return label
    raise Refusal(f"'{text[:50]}' is not an emotion this model knows. Choose one of: "
                  + ", ".join(f"{emoji_for(lb)} {lb}" for lb in labels))


CANNOT_READ = "You can only correct messages in channels you can read."


def check_correctable(target: Target) -> None:
    """Only members' messages with text, in channels the actor can read (checked first: a refusal
    must not tell someone who cannot read the message anything about it)."""
    if not target.actor_can_read:
        raise Refusal(CANNOT_READ)
    if target.own:
        raise Refusal("That is one of my own messages; only members' messages are tagged.")
    if target.by_bot:
        raise Refusal("Only messages written by members can be corrected.")
    if not (target.text and target.text.strip()):
        raise Refusal("That message has no text to learn from.")


class CorrectingService:
    def __init__(self, store, serving, inflight: InFlight | None = None) -> None:
        self.store = store
        self.serving = serving
        #: Corrections being stored: a forget of the message's author or its deletion meanwhile undoes them.
        self.inflight = inflight if inflight is not None else InFlight()

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.serving.classifier.labels)

    async def _prediction(self, message_id: int, guild_id: int):
        """The bot's prediction for a message of this server; another server's is none of its business."""
        row = await self.store.get_prediction(message_id)
        return row if row is not None and row.guild_id == guild_id else None

    async def current_label(self, message_id: int, guild_id: int) -> str | None:
        """The label the bot tagged a message of this server with, if any."""
        row = await self._prediction(message_id, guild_id)
        return row.label if row is not None else None

    async def channel_of(self, message_id: int, guild_id: int) -> int | None:
        """Where a tagged message of this server is (a bare message id names no channel)."""
        row = await self._prediction(message_id, guild_id)
        return row.channel_id if row is not None else None

    async def correct(self, actor: Actor, target: Target, emotion: str, *, source: str = "discord",
                      count: bool = False) -> Corrected:
        """Store ``actor``'s correction of ``target`` to ``emotion``; durable when this returns."""
        label = resolve_label(emotion, self.labels)
        check_correctable(target)
        if actor.guild_id is not None and actor.guild_id != target.guild_id:
            raise Refusal("That message is in another server; corrections only work in the server they belong to.")
        if await self.store.is_opted_out(target.author_id):
            raise Refusal("The author of that message has opted out, so I don't store their messages.")
        with self.inflight.track(target.message_id, target.author_id) as work:
            previous = await self._store(actor, target, label, source)
            if work.dropped:  # the author asked to be forgotten, or the message was deleted, meanwhile
                await self.store.forget_messages([target.message_id])
                raise Refusal("That message was just deleted, or its author asked me to forget them, "
                              "so I stored nothing.")
        if await self.store.is_opted_out(target.author_id):  # opted out while we were writing
            await self.store.forget_user(target.author_id)
            raise Refusal("The author of that message has just opted out, so I don't store their messages.")
        settings = await self.store.get_guild_settings(target.guild_id)
        if settings.review:  # labelled: it waits for /review no more
            await self.store.remove_review(target.guild_id, target.message_id)
        return Corrected(label, previous, settings.reactions, await self.store.count_corrections() if count else None)

    async def _store(self, actor: Actor, target: Target, label: str, source: str) -> str | None:
        """Write the correction durably; returns what the bot had tagged the message with."""
        row = await self._prediction(target.message_id, target.guild_id)
        previous = row.label if row is not None else None
        await self.store.add_correction(Correction(
            guild_id=target.guild_id, channel_id=target.channel_id, message_id=target.message_id,
            author_id=target.author_id, corrector_id=actor.user_id, predicted_label=previous, label=label,
            text=target.text, model_version=row.model_version if row is not None else self.serving.classifier.version,
            source=source, created_at=time.time()))
        return previous
