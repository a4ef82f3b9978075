"""Tag members' messages: classify through the worker, record the prediction, react via the pacer."""

from __future__ import annotations

import asyncio
import logging
import time

import discord
from discord.ext import commands, tasks

from bot.store import GuildSettings, PredictionRow, StoreError
from model.labels import emoji_for
from model.worker import WorkerClosed

log = logging.getLogger(__name__)

TAGGED_TYPES = (discord.MessageType.default, discord.MessageType.reply)


def channel_ids(channel) -> tuple[int, int | None]:
    """The channel id and, for threads and forum posts, the parent's id (settings apply to both)."""
    return channel.id, getattr(channel, "parent_id", None)


def is_taggable(message: discord.Message) -> bool:
    """Human text in a guild text channel, thread or forum post; not bots, webhooks or system messages."""
    return (
        message.guild is not None
        and not message.author.bot
        and message.webhook_id is None
        and message.type in TAGGED_TYPES
        and isinstance(message.channel, (discord.TextChannel, discord.Thread))
        and bool(message.content and message.content.strip())
    )


class Tagging(commands.Cog):
    SHED_LOG_INTERVAL = 60.0  # seconds between "overloaded" warnings

    def __init__(self, bot) -> None:
        self.bot = bot
        self._store_warned = False
        self._no_permission: set[int] = set()
        # Load shedding: past this many messages waiting for the model, new ones are not
        # tagged, so a flood beyond the worker's capacity can't grow memory without bound.
        self.max_backlog = 2 * bot.worker.max_pending
        self.backlog = 0
        self.shed = 0  # messages skipped since start because of the backlog
        self._shed_logged_at = -self.SHED_LOG_INTERVAL
        self._shed_since_log = 0

    async def cog_load(self) -> None:
        self.retention.start()
        self.sync_caches.start()

    async def cog_unload(self) -> None:
        self.retention.cancel()
        self.sync_caches.cancel()

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if not self.bot.accepting or not is_taggable(message):
            return
        task = asyncio.current_task()
        if task is not None:
            self.bot.track(task)
        received = self.bot.pacer.clock()
        store = self.bot.store
        try:
            guild_settings = await store.get_guild_settings(message.guild.id)
        except StoreError as exc:  # keep tagging on the defaults through an outage
            self._warn_store(exc)
            guild_settings = GuildSettings(threshold=self.bot.settings.threshold)
        if not guild_settings.enabled or not guild_settings.channel_enabled(*channel_ids(message.channel)):
            return
        if await store.is_opted_out(message.author.id):
            return
        if self.backlog >= self.max_backlog:
            self._shed_one()
            return
        self.backlog += 1
        try:
            prediction = await self.bot.worker.classify(message.content)
        except WorkerClosed:
            return
        except Exception:  # noqa: BLE001 - the worker has logged the failed batch
            return
        finally:
            self.backlog -= 1
        if await store.is_opted_out(message.author.id):  # opted out while the model was busy
            return
        try:
            await store.record_prediction(PredictionRow(
                guild_id=message.guild.id, channel_id=message.channel.id, message_id=message.id,
                author_id=message.author.id, label=prediction.label, probability=prediction.score,
                model_version=prediction.version, created_at=time.time()))
        except StoreError as exc:
            self._warn_store(exc)
        if not guild_settings.reactions or prediction.score < guild_settings.threshold:
            return
        if prediction.label == "neutral" and not guild_settings.show_neutral:
            return
        perms = message.channel.permissions_for(message.guild.me)
        if not (perms.add_reactions and perms.read_message_history):
            self._warn_no_permission(message.channel.id)
            return  # no request Discord would refuse: 403s count towards its invalid-request limit
        emoji = emoji_for(prediction.label)
        self.bot.pacer.submit(message.channel.id, lambda: message.add_reaction(emoji), received=received)

    def _shed_one(self) -> None:
        self.shed += 1
        self._shed_since_log += 1
        now = time.monotonic()
        if now - self._shed_logged_at >= self.SHED_LOG_INTERVAL:
            log.warning("overloaded: %d messages waiting for the model; skipped %d new messages without "
                        "tagging them", self.backlog, self._shed_since_log)
            self._shed_logged_at = now
            self._shed_since_log = 0

    def _warn_store(self, exc: StoreError) -> None:
        if not self._store_warned:
            log.error("the database is failing; tagging goes on without it: %s", exc)
            self._store_warned = True

    def _warn_no_permission(self, channel_id: int) -> None:
        if channel_id not in self._no_permission:
            self._no_permission.add(channel_id)
            log.warning("missing Add Reactions or Read Message History in channel %s; predictions are "
                        "recorded but not shown", channel_id)

    @tasks.loop(hours=6)
    async def retention(self) -> None:
        """Delete predictions older than EMOTION_RETENTION_DAYS (corrections are kept for training)."""
        try:
            removed = await self.bot.store.delete_predictions_older_than(self.bot.settings.retention_days)
            if removed:
                log.info("retention: removed %d predictions older than %s days", removed, self.bot.settings.retention_days)
        except StoreError as exc:
            log.error("retention failed: %s", exc)
        except Exception:  # noqa: BLE001 - an exception would stop the loop for good
            log.exception("retention failed")


    @tasks.loop(seconds=30)
    async def sync_caches(self) -> None:
        """Pick up opt-outs and settings that another process sharing the database wrote."""
        if not self.bot.accepting:  # shutting down: the store may already be closed
            return
        try:
            if await self.bot.store.refresh_if_changed():
                log.info("the database was changed by another process; reloaded opt-outs and settings")
        except StoreError as exc:
            self._warn_store(exc)
        except Exception:  # noqa: BLE001 - an exception would stop the loop for good
            log.exception("reloading the caches failed")


async def setup(bot) -> None:
    await bot.add_cog(Tagging(bot))
