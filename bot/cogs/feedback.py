"""``/correct`` and the "Correct emotion" message menu: store a member's correction, swap the reaction."""

from __future__ import annotations

import logging
import re
import time

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import UserError, message_for, send_ephemeral
from bot.store import Correction
from model.labels import emoji_for

log = logging.getLogger(__name__)

_LINK = re.compile(r"https?://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/channels/(\d+|@me)/(\d+)/(\d+)")
_PAIR = re.compile(r"^(\d{15,21})-(\d{15,21})$")  # what "Copy ID" gives with Shift held
_ID = re.compile(r"^\d{15,21}$")
PAGE = 25  # Discord's limit of options in one select menu


def parse_message_ref(text: str) -> tuple[int | None, int | None, int]:
    """(guild id, channel id, message id) from a message link, ``channel-message`` or a bare id."""
    text = text.strip().strip("<>")
    if m := _LINK.fullmatch(text):
        guild = None if m.group(1) == "@me" else int(m.group(1))
        if guild is None:
            raise UserError("That link points to a direct message; only server messages can be corrected.")
        return guild, int(m.group(2)), int(m.group(3))
    if m := _PAIR.fullmatch(text):
        return None, int(m.group(1)), int(m.group(2))
    if _ID.fullmatch(text):
        return None, None, int(text)
    raise UserError("That is not a message link or id. Right-click a message → **Copy Message Link**, "
                    "or use **Apps → Correct emotion** on the message.")


def resolve_label(text: str, labels: tuple[str, ...]) -> str:
    wanted = text.strip().lower()
    for label in labels:
        if label.lower() == wanted:
            return label
    raise UserError(f"`{text[:50]}` is not an emotion this model knows. Choose one of: "
                    + ", ".join(f"{emoji_for(lb)} {lb}" for lb in labels))


def label_line(label: str | None) -> str:
    return f"{emoji_for(label)} **{label}**" if label else "*(not tagged)*"


class Feedback(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Correct emotion", callback=self.correct_menu)
        self.menu.guild_only = True
        bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    # -- shared steps ----------------------------------------------------------------------------

    async def find_message(self, interaction: discord.Interaction, ref: str) -> discord.Message:
        guild_id, channel_id, message_id = parse_message_ref(ref)
        if guild_id is not None and guild_id != interaction.guild_id:
            raise UserError("That message is in another server; corrections only work in the server they belong to.")
        if channel_id is None:
            row = await self.bot.store.get_prediction(message_id)
            channel_id = row.channel_id if row is not None and row.guild_id == interaction.guild_id else interaction.channel_id
        guild = interaction.guild
        channel = guild.get_channel_or_thread(channel_id)
        if channel is None:
            try:
                channel = await guild.fetch_channel(channel_id)
            except (discord.NotFound, discord.Forbidden, discord.InvalidData):
                channel = None
        if channel is None or getattr(channel, "guild", None) != guild or not hasattr(channel, "fetch_message"):
            raise UserError("I can't find that channel in this server.")
        perms = channel.permissions_for(interaction.user)
        if not (perms.view_channel and perms.read_message_history):
            raise UserError("You can only correct messages in channels you can read.")
        try:
            return await channel.fetch_message(message_id)
        except discord.NotFound:
            raise UserError("That message was deleted or doesn't exist in that channel.") from None
        except discord.Forbidden:
            raise UserError("I can't read that channel, so I can't see the message.") from None

    def check_correctable(self, message: discord.Message) -> None:
        if message.author.id == self.bot.user.id:
            raise UserError("That is one of my own messages; only members' messages are tagged.")
        if message.author.bot or message.webhook_id is not None:
            raise UserError("Only messages written by members can be corrected.")
        if not (message.content and message.content.strip()):
            raise UserError("That message has no text to learn from.")

    async def apply(self, interaction: discord.Interaction, message: discord.Message, label: str) -> str:
        """Store the correction and swap the reaction; returns the confirmation text."""
        self.check_correctable(message)
        if await self.bot.store.is_opted_out(message.author.id):
            raise UserError("The author of that message has opted out, so I don't store their messages.")
        row = await self.bot.store.get_prediction(message.id)
        predicted = row.label if row is not None else None
        await self.bot.store.add_correction(Correction(
            guild_id=message.guild.id, channel_id=message.channel.id, message_id=message.id,
            author_id=message.author.id, corrector_id=interaction.user.id, predicted_label=predicted,
            label=label, text=message.content,
            model_version=row.model_version if row is not None else self.bot.classifier.version,
            source="discord", created_at=time.time()))
        if await self.bot.store.is_opted_out(message.author.id):  # opted out while we were writing
            await self.bot.store.forget_user(message.author.id)
            raise UserError("The author of that message has just opted out, so I don't store their messages.")
        await self.swap_reaction(message, predicted, label)
        if predicted == label:
            return f"Confirmed {label_line(label)} for that message. Thanks, this helps me learn."
        return f"Changed {label_line(predicted)} → {label_line(label)}. Thanks, this helps me learn."

    async def swap_reaction(self, message: discord.Message, old: str | None, new: str) -> None:
        """Remove whatever the bot shows now (an earlier correction's emoji too), then add the new one."""
        settings = await self.bot.store.get_guild_settings(message.guild.id)
        shown = {str(r.emoji) for r in message.reactions if r.me}
        if old is not None:
            shown.add(emoji_for(old))
        try:
            for emoji in shown - {emoji_for(new)}:
                await message.remove_reaction(emoji, self.bot.user)
            if settings.reactions:
                await message.add_reaction(emoji_for(new))
        except discord.HTTPException as exc:  # the correction is stored; the emoji is cosmetic
            log.info("could not swap the reaction on message %s (HTTP %s)", message.id, exc.status)

    # -- /correct --------------------------------------------------------------------------------

    @app_commands.command(name="correct", description="Correct the emotion I tagged a message with")
    @app_commands.describe(message="A message link (Copy Message Link) or message id",
                           emotion="The emotion the message really expresses")
    @app_commands.guild_only()
    async def correct(self, interaction: discord.Interaction, message: app_commands.Range[str, 1, 300],
                      emotion: app_commands.Range[str, 1, 100]) -> None:
        label = resolve_label(emotion, self.bot.classifier.labels)
        await interaction.response.defer(ephemeral=True, thinking=True)
        target = await self.find_message(interaction, message)
        await interaction.followup.send(await self.apply(interaction, target, label), ephemeral=True)

    @correct.autocomplete("emotion")
    async def emotion_autocomplete(self, interaction: discord.Interaction, current: str):
        return label_choices(self.bot.classifier.labels, current)

    # -- Apps ▸ Correct emotion ------------------------------------------------------------------

    async def correct_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        if interaction.guild is None:
            raise UserError("Corrections only work in servers.")
        self.check_correctable(message)
        row = await self.bot.store.get_prediction(message.id)
        current = row.label if row is not None else None
        view = CorrectionView(self, message, self.bot.classifier.labels, current, interaction.user.id)
        await interaction.response.send_message(view.header(), view=view, ephemeral=True)


def label_choices(labels: tuple[str, ...], current: str) -> list[app_commands.Choice[str]]:
    typed = current.strip().lower()
    hits = [lb for lb in labels if typed in lb.lower()] if typed else list(labels)
    hits.sort(key=lambda lb: (not lb.lower().startswith(typed), lb))
    return [app_commands.Choice(name=f"{emoji_for(lb)} {lb}", value=lb) for lb in hits[:PAGE]]


class CorrectionView(discord.ui.View):
    """A select menu of labels, paged by 25 (Discord's limit) with Previous/Next buttons."""

    def __init__(self, cog: Feedback, message: discord.Message, labels: tuple[str, ...],
                 current: str | None, user_id: int, page: int = 0) -> None:
        super().__init__(timeout=300)
        self.cog, self.message, self.labels, self.current, self.user_id = cog, message, labels, current, user_id
        self.pages = max(1, -(-len(labels) // PAGE))
        self.page = page
        self.build()

    def header(self) -> str:
        page = f" (page {self.page + 1}/{self.pages})" if self.pages > 1 else ""
        return f"I tagged this message {label_line(self.current)}. What emotion does it express?{page}"

    def build(self) -> None:
        self.clear_items()
        chunk = self.labels[self.page * PAGE:(self.page + 1) * PAGE]
        select = discord.ui.Select(placeholder="Choose the right emotion", custom_id="correct:label", options=[
            discord.SelectOption(label=lb, value=lb, emoji=emoji_for(lb), default=lb == self.current) for lb in chunk])
        select.callback = self.chosen
        self.add_item(select)
        if self.pages > 1:
            for label, step, cid in (("Previous", -1, "correct:prev"), ("Next", 1, "correct:next")):
                button = discord.ui.Button(label=label, custom_id=cid,
                                           disabled=not 0 <= self.page + step < self.pages)
                button.callback = self._turner(step)
                self.add_item(button)

    def _turner(self, step: int):
        async def turn(interaction: discord.Interaction) -> None:
            self.page += step
            self.build()
            await interaction.response.edit_message(content=self.header(), view=self)
        return turn

    async def chosen(self, interaction: discord.Interaction) -> None:
        label = interaction.data["values"][0]
        await interaction.response.defer()  # storing and swapping reactions can outlast Discord's 3 s
        try:
            text = await self.cog.apply(interaction, self.message, label)
        except UserError as exc:
            text = str(exc)
        self.stop()
        await interaction.edit_original_response(content=text, view=None)

    async def on_error(self, interaction: discord.Interaction, error: Exception, item) -> None:
        log.error("correction menu failed", exc_info=error)
        await send_ephemeral(interaction, message_for(error))


async def setup(bot) -> None:
    await bot.add_cog(Feedback(bot))
