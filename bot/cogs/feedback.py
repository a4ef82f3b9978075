"""``/correct`` and the "Correct emotion" message menu: find the message, let the service store the correction,
swap the reaction."""

from __future__ import annotations

import logging
import re

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.errors import message_for, send_ephemeral
from bot.permissions import actor_of
from bot.services import Refusal
from bot.services.correcting import CANNOT_READ, Corrected, Target, check_correctable, resolve_label
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
            raise Refusal("That link points to a direct message; only server messages can be corrected.")
        return guild, int(m.group(2)), int(m.group(3))
    if m := _PAIR.fullmatch(text):
        return None, int(m.group(1)), int(m.group(2))
    if _ID.fullmatch(text):
        return None, None, int(text)
    raise Refusal("That is not a message link or id. Right-click a message → **Copy Message Link**, "
                  "or use **Apps → Correct emotion** on the message.")


def label_choices(labels: tuple[str, ...], current: str) -> list[app_commands.Choice[str]]:
    typed = current.strip().lower()
    hits = [lb for lb in labels if typed in lb.lower()] if typed else list(labels)
    hits.sort(key=lambda lb: (not lb.lower().startswith(typed), lb))
    return [app_commands.Choice(name=f"{emoji_for(lb)} {lb}", value=lb) for lb in hits[:PAGE]]


async def can_read(interaction: discord.Interaction, channel) -> bool:
    """Whether the member may read ``channel``'s history, as Discord decides it (server-side data only).

    View Channel and Read Message History: as Discord resolved them for the interaction's own channel,
    from the guild's roles and overwrites elsewhere. A private thread also needs membership or Manage
    Threads in its parent, which ``permissions_for`` knows nothing of, so membership is asked of Discord.
    """
    member = interaction.user
    if not isinstance(member, discord.Member):
        return False
    perms = interaction.permissions if channel.id == interaction.channel_id else channel.permissions_for(member)
    if not (perms.view_channel and perms.read_message_history):
        return False
    if isinstance(channel, discord.Thread) and channel.is_private() and not perms.manage_threads:
        return await is_thread_member(channel, member.id)
    return True


async def is_thread_member(thread: discord.Thread, user_id: int) -> bool:
    """Asked of Discord: the cache only learns other members' joins with the members intent."""
    try:
        await thread.fetch_member(user_id)
    except discord.HTTPException:  # NotFound: not a member; anything else: not shown to be one
        return False
    return True


def target_of(message: discord.Message, bot_user_id: int, readable: bool) -> Target:
    """What the service needs to know about ``message``; ``readable``: the actor may read where it is."""
    return Target(guild_id=message.guild.id, channel_id=message.channel.id, message_id=message.id,
                  author_id=message.author.id, text=message.content or "",
                  by_bot=message.author.bot or message.webhook_id is not None, own=message.author.id == bot_user_id,
                  actor_can_read=readable)


class Feedback(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot
        self.service = bot.services.correcting
        self.menu = app_commands.ContextMenu(name="Correct emotion", callback=self.correct_menu)
        self.menu.guild_only = True
        bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    async def find_message(self, interaction: discord.Interaction, ref: str) -> discord.Message:
        guild_id, channel_id, message_id = parse_message_ref(ref)
        if guild_id is not None and guild_id != interaction.guild_id:
            raise Refusal("That message is in another server; corrections only work in the server they belong to.")
        if channel_id is None:
            channel_id = await self.service.channel_of(message_id, interaction.guild_id) or interaction.channel_id
        guild = interaction.guild
        channel = guild.get_channel_or_thread(channel_id)
        if channel is None:
            try:
                channel = await guild.fetch_channel(channel_id)
            except (discord.NotFound, discord.Forbidden, discord.InvalidData):
                channel = None
        if channel is None or getattr(channel, "guild", None) != guild or not hasattr(channel, "fetch_message"):
            raise Refusal("I can't find that channel in this server.")
        if not await can_read(interaction, channel):  # before fetching: not even whether the message exists
            raise Refusal(CANNOT_READ)
        try:
            return await channel.fetch_message(message_id)
        except discord.NotFound:
            raise Refusal("That message was deleted or doesn't exist in that channel.") from None
        except discord.Forbidden:
            raise Refusal("I can't read that channel, so I can't see the message.") from None

    async def apply(self, interaction: discord.Interaction, message: discord.Message, emotion: str, *,
                    readable: bool | None = None) -> str:
        """Store the correction and swap the reaction; returns the confirmation text.

        ``readable``: what :func:`can_read` said just now; None asks again (the menu's choice can come
        minutes after it opened, and access may have changed since).
        """
        if readable is None:
            readable = await can_read(interaction, message.channel)
        outcome = await self.service.correct(actor_of(interaction), target_of(message, self.bot.user.id, readable),
                                             emotion)
        await self.swap_reaction(message, outcome)
        return render.correction(outcome, render.DISCORD)

    async def swap_reaction(self, message: discord.Message, outcome: Corrected) -> None:
        """Remove whatever the bot shows now (an earlier correction's emoji too), then add the new one.

        A tagging reaction still waiting in the pacer is taken over instead: the corrected emoji goes out
        in its turn (paced), so the old one can never land after the swap.
        """
        new = emoji_for(outcome.label)
        add = (lambda: message.add_reaction(new)) if outcome.reactions else None
        queued = await self.bot.pacer.take_over(message.id, add)  # True: the old emoji was never sent
        shown = {str(r.emoji) for r in message.reactions if r.me}
        if outcome.previous is not None and not queued:
            shown.add(emoji_for(outcome.previous))
        try:
            for emoji in shown - {new}:
                await message.remove_reaction(emoji, self.bot.user)
            if add is not None and not queued:
                await add()
        except discord.HTTPException as exc:  # the correction is stored; the emoji is cosmetic
            log.info("could not swap the reaction on message %s (HTTP %s)", message.id, exc.status)

    # -- /correct --------------------------------------------------------------------------------

    @app_commands.command(name="correct", description="Correct the emotion I tagged a message with")
    @app_commands.describe(message="A message link (Copy Message Link) or message id",
                           emotion="The emotion the message really expresses")
    @app_commands.guild_only()
    async def correct(self, interaction: discord.Interaction, message: app_commands.Range[str, 1, 300],
                      emotion: app_commands.Range[str, 1, 100]) -> None:
        resolve_label(emotion, self.service.labels)  # a typo is answered at once, before the defer
        await interaction.response.defer(ephemeral=True, thinking=True)
        target = await self.find_message(interaction, message)  # refuses a channel the member cannot read
        await interaction.followup.send(await self.apply(interaction, target, emotion, readable=True), ephemeral=True)

    @correct.autocomplete("emotion")
    async def emotion_autocomplete(self, interaction: discord.Interaction, current: str):
        return label_choices(self.service.labels, current)

    # -- Apps ▸ Correct emotion ------------------------------------------------------------------

    async def correct_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        if interaction.guild is None:
            raise Refusal("Corrections only work in servers.")
        check_correctable(target_of(message, self.bot.user.id, await can_read(interaction, message.channel)))
        current = await self.service.current_label(message.id, interaction.guild_id)
        view = CorrectionView(self, message, self.service.labels, current, interaction.user.id)
        await interaction.response.send_message(view.header(), view=view, ephemeral=True)


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
        return (f"I tagged this message {render.label(self.current, render.DISCORD)}. "
                f"What emotion does it express?{page}")

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
        except Refusal as exc:
            text = str(exc)
        await self.finish(interaction, text)

    async def finish(self, interaction: discord.Interaction, text: str) -> None:
        """After the choice: this menu is done (``/review``'s shows its next message instead)."""
        self.stop()
        await interaction.edit_original_response(content=text, view=None)

    async def on_error(self, interaction: discord.Interaction, error: Exception, item) -> None:
        log.error("correction menu failed", exc_info=error)
        await send_ephemeral(interaction, message_for(error))


async def setup(bot) -> None:
    await bot.add_cog(Feedback(bot))
