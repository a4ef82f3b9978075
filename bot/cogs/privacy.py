"""Deleted messages: what the bot stored about a message (its prediction, its corrections with the text)
goes when the message goes on Discord, as the README's data statement says.

Raw events, so a message the bot never cached (older than its cache, or from before a restart) is
forgotten too. They need the guild messages intent, which the bot has.
"""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.store import StoreError

log = logging.getLogger(__name__)


class Privacy(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot
        self.service = bot.services.privacy

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        if payload.guild_id is not None:
            await self.forget([payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        if payload.guild_id is not None:
            await self.forget(payload.message_ids)

    async def forget(self, message_ids) -> None:
        """Delete what is stored about these messages; a database failure is logged (nobody to answer)."""
        try:
            forgotten = await self.service.messages_deleted(message_ids)
        except StoreError as exc:
            log.error("could not delete what is stored about %d deleted messages: %s", len(message_ids), exc)
            return
        if forgotten.total:
            log.debug("deleted messages: removed %s", forgotten.removed)


async def setup(bot) -> None:
    await bot.add_cog(Privacy(bot))
