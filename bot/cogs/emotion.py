"""``/emotion …``: about, predict, privacy (optout, optin, forget-me) and the admin's config."""

from __future__ import annotations

import logging
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import UserError, manager_only
from bot.store import StoreError
from model.labels import emoji_for

log = logging.getLogger(__name__)


def bar(p: float, width: int = 12) -> str:
    filled = round(p * width)
    return "█" * filled + "░" * (width - filled)


def model_name(source: str) -> str:
    """A hub id as it is; a local folder by its last two parts, so members never see server paths."""
    if source.startswith(("/", ".", "~")) or "\\" in source:
        parts = source.replace("\\", "/").rstrip("/").split("/")
        return "/".join(parts[-2:])
    return source


def describe_settings(s, guild: discord.Guild) -> str:
    def names(ids):
        return ", ".join(f"<#{i}>" for i in sorted(ids)) or "none"
    return "\n".join([
        f"Tagging in this server: **{'on' if s.enabled else 'off'}**",
        f"Only in: {names(s.allowed_channels)}" if s.allowed_channels else "Channels: all, except those turned off",
        f"Turned off in: {names(s.denied_channels)}",
        f"Threshold: **{s.threshold:.2f}** · show neutral: **{'yes' if s.show_neutral else 'no'}** · "
        f"reactions: **{'on' if s.reactions else 'off (predictions still recorded)'}**",
    ])


@app_commands.guild_only()
class Emotion(commands.GroupCog, group_name="emotion", group_description="Emotion tagging"):
    def __init__(self, bot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="about", description="Which model tags messages here, and what it has seen")
    async def about(self, interaction: discord.Interaction) -> None:
        info = self.bot.classifier.describe()
        stats = await self.bot.store.stats()
        counts = await self.bot.store.label_counts(interaction.guild_id)
        top = ", ".join(f"{emoji_for(lb)} {lb} {n}" for lb, n in sorted(counts.items(), key=lambda kv: -kv[1])[:8])
        embed = discord.Embed(title="Emotion Machine", colour=discord.Colour.blurple())
        embed.add_field(name="Model", value=f"`{model_name(info['source'])}`", inline=False)
        embed.add_field(name="Version", value=info["version"])
        embed.add_field(name="Device", value=info["device"] + (" (int8)" if info["quantized"] else ""))
        embed.add_field(name=f"Labels ({len(info['labels'])})",
                        value=" ".join(f"{emoji_for(lb)} {lb}" for lb in info["labels"])[:1024], inline=False)
        embed.add_field(name="Tagged here", value=top or "nothing yet", inline=False)
        embed.add_field(name="Stored (all servers)", value=f"{stats.get('predictions', 0)} predictions · "
                                                          f"{stats.get('corrections', 0)} corrections")
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="predict", description="Try the classifier on any text (only you see it)")
    @app_commands.describe(text="The text to classify")
    async def predict(self, interaction: discord.Interaction, text: app_commands.Range[str, 1, 4000]) -> None:
        if not text.strip():
            raise UserError("Give me some text to classify.")
        await interaction.response.defer(ephemeral=True, thinking=True)  # the worker may be busy
        prediction = await self.bot.worker.classify(text)
        lines = [f"{emoji_for(lb)} `{bar(p)}` {p:6.1%} {lb}" for lb, p in prediction.top(3)]
        await interaction.followup.send("\n".join(lines), ephemeral=True)

    # -- privacy ------------------------------------------------------------------------------------

    @app_commands.command(name="optout", description="Stop tagging your messages and delete what I stored about them")
    async def optout(self, interaction: discord.Interaction) -> None:
        await self.bot.store.set_opted_out(interaction.user.id, True)
        try:
            removed = await self.bot.store.forget_user(interaction.user.id)
        except StoreError:
            raise UserError("You are opted out: I will ignore your messages from now on. Deleting what I "
                            "stored about you failed (database unavailable); run `/emotion forget-me` later.") from None
        await interaction.response.send_message(
            "Done: I will ignore your messages from now on, and I deleted "
            f"{sum(removed.values())} stored records about you. `/emotion optin` undoes the first part.",
            ephemeral=True)

    @app_commands.command(name="optin", description="Let me tag your messages again")
    async def optin(self, interaction: discord.Interaction) -> None:
        await self.bot.store.set_opted_out(interaction.user.id, False)
        await interaction.response.send_message("Welcome back: I will tag your messages again.", ephemeral=True)

    @app_commands.command(name="forget-me", description="Delete everything I stored about you and your messages")
    async def forget_me(self, interaction: discord.Interaction) -> None:
        removed = await self.bot.store.forget_user(interaction.user.id)
        await interaction.response.send_message(
            f"Deleted {sum(removed.values())} stored records about you and your messages "
            "(predictions and corrections). New messages will be tagged unless you `/emotion optout`.",
            ephemeral=True)

    # -- admin --------------------------------------------------------------------------------------

    @app_commands.command(name="config", description="Server settings for tagging (Manage Server)")
    @app_commands.describe(
        channel="The channel (or thread/forum) that `tagging` applies to; default: this one",
        tagging="on/off for the channel; 'only' tags only such channels; 'all' ends 'only' mode",
        server="Turn tagging on or off for the whole server",
        threshold="Minimum probability before I react (0-1)",
        show_neutral="React with 😐 for neutral messages",
        reactions="Add reactions (off: predictions are still recorded for /mood)")
    @manager_only()
    async def config(self, interaction: discord.Interaction,
                     channel: discord.TextChannel | discord.Thread | discord.ForumChannel | None = None,
                     tagging: Literal["on", "off", "only", "all"] | None = None, server: bool | None = None,
                     threshold: app_commands.Range[float, 0.0, 1.0] | None = None,
                     show_neutral: bool | None = None, reactions: bool | None = None) -> None:
        store = self.bot.store
        current = await store.get_guild_settings(interaction.guild_id)
        changes: dict = {}
        if tagging == "all":
            changes["allowed_channels"] = frozenset()
        elif tagging is not None:
            target = channel.id if channel is not None else interaction.channel_id
            allowed, denied = set(current.allowed_channels), set(current.denied_channels)
            denied.discard(target)
            allowed.discard(target)
            if tagging == "off":
                denied.add(target)
            elif tagging == "only" or allowed:  # with an 'only' list, 'on' means: add to it
                allowed.add(target)
            changes.update(allowed_channels=frozenset(allowed), denied_channels=frozenset(denied))
        elif channel is not None:
            raise UserError("Say what to do with that channel: set `tagging` to on, off or only.")
        for key, value in (("enabled", server), ("threshold", threshold), ("show_neutral", show_neutral),
                           ("reactions", reactions)):
            if value is not None:
                changes[key] = value
        if changes:
            try:
                current = await store.update_guild_settings(interaction.guild_id, **changes)
            except ValueError as exc:
                raise UserError(str(exc)) from None
        heading = "Settings updated." if changes else "Current settings:"
        await interaction.response.send_message(f"{heading}\n{describe_settings(current, interaction.guild)}",
                                                ephemeral=True)


async def setup(bot) -> None:
    await bot.add_cog(Emotion(bot))
