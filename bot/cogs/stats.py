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
import time
from datetime import date, datetime, timedelta, timezone

import discord
from discord import app_commands
from discord.ext import commands

from bot.charts import label_totals, mood_chart
from bot.errors import UserError
from model.labels import emoji_for

log = logging.getLogger(__name__)

DEFAULT_DAYS = 14
MAX_DAYS = 90
TOP_IN_TEXT = 5
"""How many emotions the message text lists (the chart shows more)."""
FILENAME = "mood.png"

MoodChannel = discord.TextChannel | discord.Thread


def day_range(days: int, now: float | None = None) -> tuple[float, list[str]]:
    """``(since, days)``: the unix time at which the first of the last ``days`` UTC days starts,
    and those days as ``'YYYY-MM-DD'``, oldest first (today last)."""
    today = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc).date()
    first = today - timedelta(days=days - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=timezone.utc).timestamp()
    return since, [(first + timedelta(days=i)).isoformat() for i in range(days)]


def summary(rows, days: list[str], *, top: int = TOP_IN_TEXT) -> str:
    """``"12 tagged messages: 😄 happiness 7 (58%) · 😢 sadness 5 (42%)"`` (top emotions only)."""
    totals = label_totals(rows, days)
    total = sum(n for _, n in totals)
    parts = [f"{emoji_for(label)} {label} {n} ({n / total:.0%})" for label, n in totals[:top]]
    if len(totals) > top:
        parts.append(f"+{len(totals) - top} more")
    noun = "message" if total == 1 else "messages"
    return f"{total} tagged {noun}: " + " · ".join(parts)


def span_text(days: list[str]) -> str:
    first, last = (date.fromisoformat(d) for d in (days[0], days[-1]))
    if first == last:
        return f"{last:%b %d}, UTC"
    return f"{first:%b %d} – {last:%b %d}, UTC"


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

    async def _render(self, rows, *, title: str, days: list[str]) -> discord.File:
        png = await asyncio.to_thread(mood_chart, rows, title=title, days=days)
        return discord.File(io.BytesIO(png), filename=FILENAME)

    @app_commands.command(name="mood", description="Chart of the emotions in this server or a channel")
    @app_commands.describe(channel="Only this channel or thread (default: the whole server)",
                           days=f"How many days back, today included (1-{MAX_DAYS}, default {DEFAULT_DAYS})")
    @app_commands.guild_only()
    async def mood(self, interaction: discord.Interaction, channel: MoodChannel | None = None,
                   days: app_commands.Range[int, 1, MAX_DAYS] = DEFAULT_DAYS) -> None:
        """Public: the numbers are aggregates. A private channel's mood is only shown to the
        invoker, unless asked inside that same channel (where everyone can read it anyway)."""
        if channel is not None and not can_view(interaction, channel):
            raise UserError("You can't see that channel, so I can't show its mood to you.")
        ephemeral = (channel is not None and channel.id != interaction.channel_id
                     and hidden_from_everyone(channel))
        since, day_list = day_range(days)
        rows = await query_then_defer(interaction, self.bot.store.emotion_counts(
            guild_id=interaction.guild_id, channel_id=None if channel is None else channel.id, since=since),
            ephemeral=ephemeral)
        if channel is None:
            where = interaction.guild.name if interaction.guild is not None else "this server"
            where_md = f"**{discord.utils.escape_markdown(where)}**"
        else:
            where, where_md = f"#{channel.name}", channel.mention
        period = "today" if days == 1 else f"the last {days} days"
        file = await self._render(rows, title=f"Mood in {where}, {period}", days=day_list)
        heading = f"Mood in {where_md}, {period} ({span_text(day_list)})"
        if rows:
            content = f"{heading}\n{summary(rows, day_list)}"
        else:
            content = f"{heading}\nNo tagged messages in {where_md} in {period}."
        await interaction.followup.send(content, file=file, ephemeral=ephemeral)

    @app_commands.command(name="mood-me",
                          description="Chart of the emotions in your own messages (only you see it)")
    @app_commands.describe(days=f"How many days back, today included (1-{MAX_DAYS}, default {DEFAULT_DAYS})")
    @app_commands.guild_only()
    async def mood_me(self, interaction: discord.Interaction,
                      days: app_commands.Range[int, 1, MAX_DAYS] = DEFAULT_DAYS) -> None:
        """Ephemeral: only the invoker's messages (``author_id``), in this server."""
        await interaction.response.defer(thinking=True, ephemeral=True)
        since, day_list = day_range(days)
        rows = await self.bot.store.emotion_counts(
            guild_id=interaction.guild_id, author_id=interaction.user.id, since=since)
        period = "today" if days == 1 else f"the last {days} days"
        file = await self._render(rows, title=f"Your mood, {period}", days=day_list)
        heading = f"Your mood in this server, {period} ({span_text(day_list)})"
        if rows:
            content = f"{heading}\n{summary(rows, day_list)}"
        else:
            content = f"{heading}\nNone of your messages in this server were tagged in {period}."
        await interaction.followup.send(content, file=file, ephemeral=True)


async def setup(bot) -> None:
    await bot.add_cog(Stats(bot))
