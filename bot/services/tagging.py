"""Tagging one message: should it be tagged, classify it, record it, and which emoji (if any) to show.

The rules live here once: server and channel switches, opt-outs (checked again after the model,
so an opt-out during classification wins, as do a forget-me and a delete of the message), load
shedding, the threshold and neutral policy.
The front end only says where the message is and sends the reaction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from bot.services.privacy import InFlight, Work
from bot.services.review import offer as offer_for_review
from bot.store import GuildSettings, PredictionRow, StoreError
from model.chat_text import has_own_words
from model.labels import emoji_for
from model.worker import WorkerClosed

log = logging.getLogger(__name__)

SHED_LOG_INTERVAL = 60.0  # seconds between "overloaded" warnings


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A message to tag, as plain ids and text."""

    guild_id: int
    channel_id: int
    message_id: int
    author_id: int
    text: str
    #: The parent channel of a thread or forum post (channel settings apply to both).
    parent_id: int | None = None


@dataclass(frozen=True, slots=True)
class Tagged:
    """A message that was classified and recorded; ``emoji`` is None when nothing is to be shown."""

    prediction: object
    emoji: str | None
    #: Why no emoji: ``"reactions"`` (off in this server), ``"threshold"`` or ``"neutral"``; None when shown.
    withheld: str | None = None
    #: The server's threshold the prediction was held to.
    threshold: float = 0.0


class TaggingService:
    def __init__(self, settings, store, serving, inflight: InFlight | None = None) -> None:
        self.settings = settings
        self.store = store
        self.serving = serving
        #: Messages being classified: a forget of their author or their deletion meanwhile drops the result.
        self.inflight = inflight if inflight is not None else InFlight()
        # Load shedding: past this many messages waiting for the model, new ones are not
        # tagged, so a flood beyond the worker's capacity can't grow memory without bound.
        self.max_backlog = 2 * serving.worker.max_pending
        self.backlog = 0
        self.shed = 0  # messages skipped since start because of the backlog
        self._shed_logged_at = -SHED_LOG_INTERVAL
        self._shed_since_log = 0
        self._store_warned = False

    async def guild_settings(self, guild_id: int) -> GuildSettings:
        """The server's settings; the defaults through a database outage, so tagging goes on."""
        try:
            return await self.store.get_guild_settings(guild_id)
        except StoreError as exc:
            self.warn_store(exc)
            return GuildSettings(threshold=self.settings.threshold)

    async def tag(self, message: IncomingMessage, *, always_classify: bool = False) -> Tagged | None:
        """Classify and record ``message``; None when it is not to be tagged (or the model is gone).

        ``always_classify`` (the shell) skips the server and channel switches, never the opt-outs.
        """
        settings = await self.guild_settings(message.guild_id)
        switched_on = settings.channel_enabled(message.channel_id, message.parent_id)
        if not (switched_on or always_classify):
            return None
        if not has_own_words(message.text):
            return None  # only quoted lines: someone else's words, not this writer's emotion
        if await self.store.is_opted_out(message.author_id):
            return None
        if self.backlog >= self.max_backlog:
            self._shed_one()
            return None
        with self.inflight.track(message.message_id, message.author_id) as work:
            prediction = await self._classify(message.text, message.guild_id)
            if prediction is None or work.dropped or await self.store.is_opted_out(message.author_id):
                return None  # the model failed, or forgotten, deleted or opted out while the model was busy
            if not await self._record(message, prediction, work, review=settings.review and switched_on):
                return None
        withheld = self.withheld(prediction, settings)
        return Tagged(prediction, None if withheld else emoji_for(prediction.label), withheld, settings.threshold)

    async def _classify(self, text: str, guild_id: int | None = None):
        """The model's prediction (with the server's own head, if it has one), or None when it failed or is gone."""
        self.backlog += 1
        try:
            return await self.serving.worker.classify(text, guild_id)
        except WorkerClosed:
            return None
        except Exception:  # noqa: BLE001 - the worker has logged the failed batch
            return None
        finally:
            self.backlog -= 1

    async def _record(self, message: IncomingMessage, prediction, work: Work, *, review: bool = False) -> bool:
        """Store the prediction (and, with ``review``, offer it to the server's /review queue); False when a forget
        or a delete came while it was being stored (undone)."""
        try:
            await self.store.record_prediction(PredictionRow(
                guild_id=message.guild_id, channel_id=message.channel_id, message_id=message.message_id,
                author_id=message.author_id, label=prediction.label, probability=prediction.score,
                model_version=prediction.version, created_at=time.time()))
            if review and not work.dropped:
                await offer_for_review(self.store, message, prediction)
            if work.dropped:  # the forget may have run before the row was buffered: delete it now
                await self.store.forget_messages([message.message_id])
        except StoreError as exc:
            self.warn_store(exc)
        return not work.dropped

    @staticmethod
    def withheld(prediction, settings: GuildSettings) -> str | None:
        """Why the server's settings keep the reaction for ``prediction`` back (see :class:`Tagged`); None: react."""
        if not settings.reactions:
            return "reactions"
        if prediction.score < settings.threshold:
            return "threshold"
        if prediction.label == "neutral" and not settings.show_neutral:
            return "neutral"
        return None

    def _shed_one(self) -> None:
        self.shed += 1
        self._shed_since_log += 1
        now = time.monotonic()
        if now - self._shed_logged_at >= SHED_LOG_INTERVAL:
            log.warning("overloaded: %d messages waiting for the model; skipped %d new messages without "
                        "tagging them", self.backlog, self._shed_since_log)
            self._shed_logged_at = now
            self._shed_since_log = 0

    def warn_store(self, exc: StoreError) -> None:
        """Say once that the database fails; tagging carries on without it."""
        if not self._store_warned:
            log.error("the database is failing; tagging goes on without it: %s", exc)
            self._store_warned = True

    async def sync_caches(self) -> bool:
        """Pick up opt-outs and settings another process sharing the database wrote; True if any."""
        try:
            changed = await self.store.refresh_if_changed()
        except StoreError as exc:
            self.warn_store(exc)
            return False
        if changed:
            log.info("the database was changed by another process; reloaded opt-outs and settings")
        return changed
