"""Joining and leaving servers: the guild-data service's flows on Discord's events, and the purge loop.

Leaving (``on_guild_remove``) keeps the server's data and model for the grace period; rejoining
keeps everything; at start the servers the bot was removed from while offline are marked too.
Every hour, servers left longer ago than the grace period are forgotten.
"""

from __future__ import annotations

import logging

import discord
from discord.ext import commands, tasks

from bot.store import StoreError

log = logging.getLogger(__name__)


class Guilds(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot
        self.service = bot.services.guild_data
        self._seen = False

    async def cog_load(self) -> None:
        self.purge.start()

    async def cog_unload(self) -> None:
        self.purge.cancel()

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        await self._logged(f"note that the bot left server {guild.id}", self.service.left(guild.id))

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.mark_present([guild.id])

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        if self._seen:  # READY comes again with each new gateway session
            return
        self._seen = True
        present = [g.id for g in self.bot.guilds]
        await self.mark_present(present)
        gone = await self._logged("check which servers the bot left while offline", self.service.absent(present))
        if gone:
            log.info("removed from %d server(s) while offline; their data is kept for the grace period", len(gone))

    async def mark_present(self, guild_ids) -> None:
        back = await self._logged("note the servers the bot is in", self.service.present(guild_ids))
        if back:
            log.info("back in %d server(s) it had left: nothing of theirs will be deleted", len(back))

    @staticmethod
    async def _logged(what: str, call):
        """Await ``call``; a database failure is logged (an event has nobody to answer) and gives None."""
        try:
            return await call
        except StoreError as exc:
            log.error("could not %s: %s", what, exc)
            return None

    @tasks.loop(hours=1)
    async def purge(self) -> None:
        try:
            await self.service.purge()
        except StoreError as exc:
            log.error("could not delete the data of servers the bot left: %s", exc)
        except Exception:  # noqa: BLE001 - the loop must live on
            log.exception("purging the data of servers the bot left failed")


async def setup(bot) -> None:
    await bot.add_cog(Guilds(bot))
