"""``/review``: the messages the bot was least sure of, one after another, with the "Correct emotion" menu and Skip.

The rules (who may review, which messages, what leaves the queue and when) are in :mod:`bot.services.review`;
this cog answers which channels the moderator can read, finds each message on Discord, shows it with
:class:`~bot.cogs.feedback.CorrectionView`'s select (a label is stored as that menu stores it), and purges
expired rows on a loop.
"""

from __future__ import annotations

import functools
import logging

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot import render
from bot.cogs.feedback import CorrectionView, Feedback, can_read
from bot.permissions import actor_of
from bot.services import Refusal
from bot.services import review as review_rules
from bot.store import StoreError

log = logging.getLogger(__name__)

DELETED = "That message was deleted meanwhile; I dropped it from the queue."
UNREACHABLE = "I can no longer see the channel of that message; I dropped it from the queue."


async def readable(interaction: discord.Interaction, channel_id: int) -> bool:
    """Whether the moderator may read this channel of the server (a channel gone or unseen: no)."""
    channel = interaction.guild.get_channel_or_thread(channel_id)
    return channel is not None and await can_read(interaction, channel)


class ReviewView(CorrectionView):
    """The correction menu for one waiting message after another, plus Skip; "2 of 5" says where it is."""

    def __init__(self, feedback: Feedback, service, interaction: discord.Interaction, rows) -> None:
        self.service, self.guild, self.rows = service, interaction.guild, rows
        self.position = 0  # 1-based: the message shown; 0 before the first
        self.notes: list[str] = []
        super().__init__(feedback, None, feedback.service.labels, None, interaction.user.id)

    def header(self) -> str:
        page = f" (page {self.page + 1}/{self.pages})" if self.pages > 1 else ""
        return render.review_item(self.rows[self.position - 1], self.message.content, self.position, len(self.rows),
                                  self.message.jump_url, render.DISCORD) + page

    def build(self) -> None:
        super().build()
        skip = discord.ui.Button(label="Skip", custom_id="review:skip")
        skip.callback = self.skip
        self.add_item(skip)

    async def show_next(self) -> str:
        """The next waiting message that is still there, or the closing line (the view is then done)."""
        while self.position < len(self.rows):
            self.position += 1
            row = self.rows[self.position - 1]
            message = await self.fetch(row)
            if message is not None:
                self.message, self.current, self.page = message, row.label, 0
                self.build()
                return self.content(self.header())
        self.stop()
        return self.content(render.review_done())

    def content(self, shown: str) -> str:
        notes, self.notes = self.notes, []
        return "\n\n".join([*notes, shown])

    async def fetch(self, row) -> discord.Message | None:
        """The message on Discord; one deleted meanwhile (or out of reach) leaves the queue, with a note."""
        channel = self.guild.get_channel_or_thread(row.channel_id)
        try:
            if channel is not None:
                return await channel.fetch_message(row.message_id)
            note = UNREACHABLE
        except discord.NotFound:
            note = DELETED
        except discord.Forbidden:
            note = UNREACHABLE
        await self.service.gone(self.guild.id, row.message_id)
        self.notes.append(note)
        return None

    async def finish(self, interaction: discord.Interaction, text: str) -> None:
        """After a label (stored, and out of the queue: CorrectingService): on to the next message."""
        content = f"{text}\n\n{await self.show_next()}"
        await interaction.edit_original_response(content=content, view=None if self.is_finished() else self)

    async def skip(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await self.service.skip(actor_of(interaction), self.message.id)
        await self.finish(interaction, "Skipped: no label stored, and it waits no more.")


class Review(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot
        self.service = bot.services.review

    async def cog_load(self) -> None:
        self.purge.start()

    async def cog_unload(self) -> None:
        self.purge.cancel()

    @app_commands.command(name="review", description="Label the messages I was least sure of (Manage Messages)")
    @app_commands.default_permissions(manage_messages=True)
    @app_commands.guild_only()
    async def review(self, interaction: discord.Interaction) -> None:
        feedback = self.bot.get_cog("Feedback")
        if feedback is None:
            raise Refusal("Corrections are unavailable right now, so review is too; the bot's log says why.")
        await interaction.response.defer(ephemeral=True, thinking=True)  # fetching the messages takes requests
        rows = await self.service.batch(actor_of(interaction), functools.partial(readable, interaction))
        view = ReviewView(feedback, self.service, interaction, rows)
        content = await view.show_next()
        if view.is_finished():
            await interaction.followup.send(content, ephemeral=True)
        else:
            await interaction.followup.send(content, view=view, ephemeral=True)

    @tasks.loop(seconds=review_rules.PURGE_EVERY)
    async def purge(self) -> None:
        """Delete the queue's text before it is 24 h old; an exception would stop the loop for good."""
        if not self.bot.accepting:  # shutting down: the store may already be closed
            return
        try:
            await self.service.expire()
        except StoreError as exc:
            log.error("purging the review queue failed: %s", exc)
        except Exception:  # noqa: BLE001
            log.exception("purging the review queue failed")


async def setup(bot) -> None:
    await bot.add_cog(Review(bot))
