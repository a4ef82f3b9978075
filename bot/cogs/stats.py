"""``/mood`` and ``/mood-me``: the emotion mix per day, as a chart, from the predictions table.

Built from stored predictions, not from reactions, so it works with reactions turned off.

Why ``/mood-me`` and not ``/mood me``: Discord does not let a name be both a command and a
group, so ``/mood`` (with options) and a ``/mood me`` subcommand cannot coexist. Turning
``/mood`` into a group would force ``/mood server`` for the common case; a sibling command
keeps ``/mood`` short.

Days are UTC days (the store groups by UTC date): ``days=14`` covers today and the 13 days
before it. The chart is rendered in a worker thread (``asyncio.to_thread``) after deferring,
so the event loop never waits on matplotlib.
"""

from __future__ import annotations

import asyncio
import io
import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.services import Refusal
from bot.services.mood import DEFAULT_DAYS, MAX_DAYS, MoodReport, MoodScope

log = logging.getLogger(__name__)

FILENAME = "mood.png"

MoodChannel = discord.TextChannel | discord.Thread


def hidden_from_everyone(channel: MoodChannel) -> bool:
    """Whether @everyone can't read the channel (a private channel or a private thread)."""
    if isinstance(channel, discord.Thread):
        if channel.is_private():
            return True
        parent = channel.parent
        if parent is None:
            return True
        channel = parent
    return not channel.permissions_for(channel.guild.default_role).view_channel


def can_view(interaction: discord.Interaction, channel: MoodChannel) -> bool:
    """Whether the invoking member can see ``channel``.

    Discord sends the member's permissions in each channel option it resolves; those are
    authoritative (they include overwrites and thread access). Fall back to computing them
    from the cache when they are missing.
    """
    raw = getattr(interaction.namespace, "channel", None)
    permissions = getattr(raw, "permissions", None)
    if getattr(raw, "id", None) != channel.id or permissions is None:
        permissions = channel.permissions_for(interaction.user)
    return permissions.view_channel


QUERY_BEFORE_DEFER = 2.0  # seconds; Discord wants a first response within 3


async def query_then_defer(interaction: discord.Interaction, query, *, ephemeral: bool):
    """Run ``query``, deferring (with this visibility) once it's done or after 2 s.

    A public defer makes every later message public too, errors included. Querying
    first lets a database error reach the member privately (the shared handler
    answers ephemerally while nothing was sent yet); only a slow query defers early.
    """
    task = asyncio.ensure_future(query)
    try:
        rows = await asyncio.wait_for(asyncio.shield(task), timeout=QUERY_BEFORE_DEFER)
    except asyncio.TimeoutError:
        await interaction.response.defer(thinking=True, ephemeral=ephemeral)
        return await task
    except BaseException:
        task.cancel()
        raise
    await interaction.response.defer(thinking=True, ephemeral=ephemeral)  # rendering follows
    return rows


class Stats(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot
        self.service = bot.services.mood

    async def _answer(self, interaction: discord.Interaction, report: MoodReport, *, title: str, heading: str,
                      nothing: str, ephemeral: bool) -> None:
        """The chart, and the summary (or ``nothing``) under ``heading``."""
        png = await self.service.chart(report, title)
        heading = f"{heading}, {report.period} ({render.span_text(report.days)})"
        content = f"{heading}\n{render.mood_summary(report) if report.rows else nothing}"
        await interaction.followup.send(content, file=discord.File(io.BytesIO(png), filename=FILENAME),
                                        ephemeral=ephemeral)

    @app_commands.command(name="mood", description="Chart of the emotions in this server or a channel")
    @app_commands.describe(channel="Only this channel or thread (default: the whole server)",
                           days=f"How many days back, today included (1-{MAX_DAYS}, default {DEFAULT_DAYS})")
    @app_commands.guild_only()
    async def mood(self, interaction: discord.Interaction, channel: MoodChannel | None = None,
                   days: app_commands.Range[int, 1, MAX_DAYS] = DEFAULT_DAYS) -> None:
        """Public: the numbers are aggregates. A private channel's mood is only shown to the
        invoker, unless asked inside that same channel (where everyone can read it anyway)."""
        if channel is not None and not can_view(interaction, channel):
            raise Refusal("You can't see that channel, so I can't show its mood to you.")
        ephemeral = (channel is not None and channel.id != interaction.channel_id
                     and hidden_from_everyone(channel))
        scope = MoodScope(interaction.guild_id, channel_id=None if channel is None else channel.id)
        report = await query_then_defer(interaction, self.service.report(scope, days), ephemeral=ephemeral)
        if channel is None:
            where = interaction.guild.name if interaction.guild is not None else "this server"
            where_md = f"**{discord.utils.escape_markdown(where)}**"
        else:
            where, where_md = f"#{channel.name}", channel.mention
        await self._answer(interaction, report, title=f"Mood in {where}, {report.period}",
                           heading=f"Mood in {where_md}",
                           nothing=f"No tagged messages in {where_md} in {report.period}.", ephemeral=ephemeral)

    @app_commands.command(name="mood-me",
                          description="Chart of the emotions in your own messages (only you see it)")
    @app_commands.describe(days=f"How many days back, today included (1-{MAX_DAYS}, default {DEFAULT_DAYS})")
    @app_commands.guild_only()
    async def mood_me(self, interaction: discord.Interaction,
                      days: app_commands.Range[int, 1, MAX_DAYS] = DEFAULT_DAYS) -> None:
        """Ephemeral: only the invoker's messages (``author_id``), in this server."""
        await interaction.response.defer(thinking=True, ephemeral=True)
        report = await self.service.report(MoodScope(interaction.guild_id, author_id=interaction.user.id), days)
        await self._answer(interaction, report, title=f"Your mood, {report.period}", heading="Your mood in this server",
                           nothing=f"None of your messages in this server were tagged in {report.period}.",
                           ephemeral=True)


async def setup(bot) -> None:
    await bot.add_cog(Stats(bot))
