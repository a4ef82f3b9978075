"""``/emotion …``: about, predict, privacy (optout, optin, forget-me); and the admin's ``/emotion-config``."""

from __future__ import annotations

import logging
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.permissions import actor_of, manager_only
from bot.services import Refusal
from bot.services.guild_config import ConfigChange
from model.labels import emoji_for

log = logging.getLogger(__name__)


def model_name(source: str) -> str:
    """A hub id as it is; a local folder by its last two parts, so members never see server paths."""
    if source.startswith(("/", ".", "~")) or "\\" in source:
        parts = source.replace("\\", "/").rstrip("/").split("/")
        return "/".join(parts[-2:])
    return source


def describe_settings(s) -> str:
    def names(ids):
        return ", ".join(f"<#{i}>" for i in sorted(ids)) or "none"
    return "\n".join([
        f"Tagging in this server: **{'on' if s.enabled else 'off'}**",
        f"Only in: {names(s.allowed_channels)}" if s.allowed_channels else "Channels: all, except those turned off",
        f"Turned off in: {names(s.denied_channels)}",
        f"Threshold: **{s.threshold:.2f}** · show neutral: **{'yes' if s.show_neutral else 'no'}** · "
        f"reactions: **{'on' if s.reactions else 'off (predictions still recorded)'}**",
        *(["Review: **on**: moderators label my least-sure tags with /review (their text kept at most 24 h)"]
          if s.review else []),
        "Sharing: **" + ("on**: this server's corrections also improve the shared model of every server"
                         if s.share else "off**: this server's corrections train only its own model") + "",
    ])


@app_commands.guild_only()
class Emotion(commands.GroupCog, group_name="emotion", group_description="Emotion tagging"):
    def __init__(self, bot) -> None:
        self.bot = bot
        self.services = bot.services
        super().__init__()

    @app_commands.command(name="about", description="Which model tags messages here, and what it has seen")
    async def about(self, interaction: discord.Interaction) -> None:
        info = self.bot.classifier.describe()
        own = self.services.serving.head_of(interaction.guild_id)
        corrections = await self.bot.store.count_corrections(guild_id=interaction.guild_id)
        counts = await self.bot.store.label_counts(interaction.guild_id)
        top = ", ".join(f"{emoji_for(lb)} {lb} {n}" for lb, n in sorted(counts.items(), key=lambda kv: -kv[1])[:8])
        embed = discord.Embed(title="Emotion Machine", colour=discord.Colour.blurple())
        embed.add_field(name="Model", value=f"`{model_name(info['source'])}`", inline=False)
        embed.add_field(name="Version", value=f"{own.name}, this server's own, on base {info['version']}"
                        if own is not None else info["version"])
        embed.add_field(name="Device", value=info["device"] + (" (int8)" if info["quantized"] else ""))
        embed.add_field(name=f"Labels ({len(info['labels'])})",
                        value=" ".join(f"{emoji_for(lb)} {lb}" for lb in info["labels"])[:1024], inline=False)
        embed.add_field(name="Tagged here", value=top or "nothing yet", inline=False)
        embed.add_field(name="Stored for this server", value=f"{sum(counts.values())} predictions · "
                                                            f"{corrections} corrections")
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="predict", description="Try the classifier on any text (only you see it)")
    @app_commands.describe(text="The text to classify")
    async def predict(self, interaction: discord.Interaction, text: app_commands.Range[str, 1, 4000]) -> None:
        if not text.strip():
            raise Refusal("Give me some text to classify.")
        await interaction.response.defer(ephemeral=True, thinking=True)  # the worker may be busy
        prediction = await self.bot.worker.classify(text, interaction.guild_id)
        await interaction.followup.send("\n".join(render.top_lines(prediction, render.DISCORD)), ephemeral=True)

    # -- privacy ------------------------------------------------------------------------------------

    @app_commands.command(name="optout", description="Stop tagging your messages and delete what I stored about them")
    async def optout(self, interaction: discord.Interaction) -> None:
        forgotten = await self.services.privacy.opt_out(interaction.user.id)
        await interaction.response.send_message(
            "Done: I will ignore your messages from now on, and I deleted "
            f"{forgotten.total} stored records about you. `/emotion optin` undoes the first part.", ephemeral=True)

    @app_commands.command(name="optin", description="Let me tag your messages again")
    async def optin(self, interaction: discord.Interaction) -> None:
        await self.services.privacy.opt_in(interaction.user.id)
        await interaction.response.send_message("Welcome back: I will tag your messages again.", ephemeral=True)

    @app_commands.command(name="forget-me", description="Delete everything I stored about you and your messages")
    async def forget_me(self, interaction: discord.Interaction) -> None:
        forgotten = await self.services.privacy.forget(interaction.user.id)
        await interaction.response.send_message(
            f"Deleted {forgotten.total} stored records about you and your messages "
            "(predictions and corrections). New messages will be tagged unless you `/emotion optout`.",
            ephemeral=True)



class EmotionConfig(commands.Cog):
    """``/emotion-config``: a command of its own, because Discord hides commands per top-level command
    (``default_permissions``); a subcommand of ``/emotion`` would be listed to every member."""

    def __init__(self, bot) -> None:
        self.bot = bot
        self.services = bot.services

    @app_commands.command(name="emotion-config", description="Server settings for tagging (Manage Server)")
    @app_commands.describe(
        channel="The channel (or thread/forum) that `tagging` applies to; default: this one",
        tagging="on/off for the channel; 'only' tags only such channels; 'all' ends 'only' mode",
        server="Turn tagging on or off for the whole server",
        threshold="Minimum probability before I react (0-1)",
        show_neutral="React with 😐 for neutral messages",
        reactions="Add reactions (off: predictions are still recorded for /mood)",
        review="Queue my least-sure tags, text kept at most 24 h, for moderators to label with /review",
        share="Let this server's corrections also improve the shared model of every server (off by default)")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    @manager_only()
    async def config(self, interaction: discord.Interaction,
                     channel: discord.TextChannel | discord.Thread | discord.ForumChannel | None = None,
                     tagging: Literal["on", "off", "only", "all"] | None = None, server: bool | None = None,
                     threshold: app_commands.Range[float, 0.0, 1.0] | None = None,
                     show_neutral: bool | None = None, reactions: bool | None = None,
                     review: bool | None = None, share: bool | None = None) -> None:
        change = ConfigChange(channel_id=channel.id if channel is not None else interaction.channel_id,
                              tagging=tagging, channel_named=channel is not None,
                              settings=dict(enabled=server, threshold=threshold, show_neutral=show_neutral,
                                            reactions=reactions, review=review, share=share))
        settings, changed = await self.services.guild_config.configure(actor_of(interaction), interaction.guild_id,
                                                                       change)
        heading = "Settings updated." if changed else "Current settings:"
        await interaction.response.send_message(f"{heading}\n{describe_settings(settings)}", ephemeral=True)


async def setup(bot) -> None:
    await bot.add_cog(Emotion(bot))
    await bot.add_cog(EmotionConfig(bot))
