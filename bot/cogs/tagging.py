"""Tagging: hand each member's message to the tagging service, send the reaction it picks via the pacer."""

from __future__ import annotations

import asyncio
import logging

import discord
from discord.ext import commands, tasks

from bot.services.tagging import IncomingMessage
from bot.store import StoreError

log = logging.getLogger(__name__)

TAGGED_TYPES = (discord.MessageType.default, discord.MessageType.reply)


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
    def __init__(self, bot) -> None:
        self.bot = bot
        self.service = bot.services.tagging
        self._no_permission: set[int] = set()

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
        tagged = await self.service.tag(IncomingMessage(
            guild_id=message.guild.id, channel_id=message.channel.id, message_id=message.id,
            author_id=message.author.id, text=message.content, parent_id=getattr(message.channel, "parent_id", None)))
        if tagged is None or tagged.emoji is None:
            return
        perms = message.channel.permissions_for(message.guild.me)
        if not (perms.add_reactions and perms.read_message_history):
            self._warn_no_permission(message.channel.id)
            return  # no request Discord would refuse: 403s count towards its invalid-request limit
        emoji = tagged.emoji
        # keyed by message: a correction made while it waits replaces it (bot.cogs.feedback.swap_reaction)
        self.bot.pacer.submit(message.channel.id, lambda: message.add_reaction(emoji), received=received,
                              key=message.id, priority=tagged.prediction.score)

    # A 403 stops the pacer reacting in that channel; these events are when the bot's permissions there may
    # have changed. Its own role assignments (GUILD_MEMBER_UPDATE) need the members intent: the pacer's
    # block also expires by itself (ReactionPacer.block_for).

    @commands.Cog.listener()
    async def on_guild_channel_update(self, _before, after: discord.abc.GuildChannel) -> None:
        self._permissions_may_have_changed(after.guild)

    @commands.Cog.listener()
    async def on_thread_update(self, _before, after: discord.Thread) -> None:
        self._permissions_may_have_changed(after.guild)

    @commands.Cog.listener()
    async def on_guild_role_update(self, _before, after: discord.Role) -> None:
        self._permissions_may_have_changed(after.guild)

    @commands.Cog.listener()
    async def on_guild_role_create(self, role: discord.Role) -> None:
        self._permissions_may_have_changed(role.guild)

    @commands.Cog.listener()
    async def on_guild_role_delete(self, role: discord.Role) -> None:
        self._permissions_may_have_changed(role.guild)

    def _permissions_may_have_changed(self, guild: discord.Guild) -> None:
        self.bot.pacer.unblock([*(c.id for c in guild.channels), *(t.id for t in guild.threads)])

    def _warn_no_permission(self, channel_id: int) -> None:
        if channel_id not in self._no_permission:
            self._no_permission.add(channel_id)
            log.warning("missing Add Reactions or Read Message History in channel %s; predictions are "
                        "recorded but not shown", channel_id)

    @tasks.loop(hours=6)
    async def retention(self) -> None:
        """Delete old predictions (EMOTION_RETENTION_DAYS); an exception would stop the loop for good."""
        try:
            await self.bot.services.privacy.apply_retention()
        except StoreError as exc:
            log.error("retention failed: %s", exc)
        except Exception:  # noqa: BLE001
            log.exception("retention failed")

    @tasks.loop(seconds=30)
    async def sync_caches(self) -> None:
        """Pick up opt-outs and settings that another process sharing the database wrote."""
        if not self.bot.accepting:  # shutting down: the store may already be closed
            return
        try:
            await self.service.sync_caches()
        except Exception:  # noqa: BLE001 - an exception would stop the loop for good
            log.exception("reloading the caches failed")


async def setup(bot) -> None:
    await bot.add_cog(Tagging(bot))
