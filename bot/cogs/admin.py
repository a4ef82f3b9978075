"""``/retrain`` and ``/model`` (this server's own model), ``/base`` (the shared base, the bot's owner only).

The rules (who, how many corrections, one run at a time, the gate, the deploy, whose line) are in
:mod:`bot.services.retraining`; this cog answers within Discord's 3 s, edits one message as
the run progresses, and posts the outcome.
"""

from __future__ import annotations

import logging
import time

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.permissions import actor_of, is_manager, manager_only, owner_actor_of
from bot.services import Refusal
from bot.services.retraining import RetrainRun

log = logging.getLogger(__name__)

EDIT_EVERY = 2.0  # seconds between progress edits: Discord rate-limits message edits
TOKEN_LIFETIME = 14 * 60  # an interaction token can edit its response for 15 minutes


class CancelView(discord.ui.View):
    """A Cancel button on the progress message (Manage Server, checked again on click)."""

    def __init__(self, run: RetrainRun) -> None:
        super().__init__(timeout=None)
        self.run = run

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.danger, custom_id="retrain:cancel")
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        try:  # the service's rule: Manage Server in the run's server, the owner for the base's
            self.run.service.cancel(await owner_actor_of(interaction), self.run)
        except Refusal as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        await interaction.response.send_message("Cancelling the retrain…", ephemeral=True)


class Admin(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot
        self.service = bot.services.retraining

    async def cog_unload(self) -> None:
        if self.service.running is not None and self.service.running.running:
            self.service.running.cancel()

    # -- /retrain -----------------------------------------------------------------------------------

    @app_commands.command(name="retrain",
                          description="Teach this server's model the corrections its members made (Manage Server)")
    @app_commands.describe(force="Deploy even if the new model is not better on the held-out corrections")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    @manager_only()
    async def retrain(self, interaction: discord.Interaction, force: bool = False) -> None:
        await self.start(interaction, await self.service.prepare(actor_of(interaction), guild_id=interaction.guild_id,
                                                                 force=force))

    async def start(self, interaction: discord.Interaction, run: RetrainRun) -> None:
        view = CancelView(run)
        await interaction.response.send_message(render.progress(None, run.examples, render.DISCORD), view=view)
        try:
            run.start()
        except Refusal as exc:
            view.stop()
            await self.edit(interaction, str(exc), None)
            return
        try:
            await self.follow(interaction, run, view)
        finally:
            view.stop()

    async def follow(self, interaction: discord.Interaction, run: RetrainRun, view: discord.ui.View) -> None:
        started = time.monotonic()
        last = 0.0
        async for event in run.events():
            now = time.monotonic()
            if now - last >= EDIT_EVERY and now - started < TOKEN_LIFETIME:
                last = now
                await self.edit(interaction, render.progress(event, run.examples, render.DISCORD), view)
        text = render.retrain_outcome(await run.finish(), render.DISCORD)
        if time.monotonic() - started < TOKEN_LIFETIME:
            await self.edit(interaction, text, None)
        else:  # the interaction token has expired: post the result as a new message
            await interaction.channel.send(text)

    async def edit(self, interaction: discord.Interaction, text: str, view) -> None:
        try:
            await interaction.edit_original_response(content=text, view=view)
        except discord.HTTPException as exc:
            log.info("could not update the retrain message (HTTP %s)", exc.status)

    # -- /model ------------------------------------------------------------------------------------

    model = app_commands.Group(name="model", description="This server's model and its versions (Manage Server)",
                               default_permissions=discord.Permissions(manage_guild=True), guild_only=True)

    @model.command(name="info", description="This server's version, its metrics and the corrections since")
    @manager_only()
    async def info(self, interaction: discord.Interaction) -> None:
        info = await self.service.info(actor_of(interaction), guild_id=interaction.guild_id)
        await interaction.response.send_message(render.model_info(info, render.DISCORD), ephemeral=True)

    @model.command(name="rollback", description="Go back to an earlier version of this server's model")
    @app_commands.describe(version="A version such as v2, or base for the shared model; empty: the previous one")
    @manager_only()
    async def rollback(self, interaction: discord.Interaction, version: str | None = None) -> None:
        await self.roll_back(interaction, actor_of(interaction), version, interaction.guild_id)

    async def roll_back(self, interaction: discord.Interaction, actor, version: str | None,
                        guild_id: int | None) -> None:
        run = self.service.running
        if run is not None and run.running and run.guild_id == guild_id:  # said before the defer
            raise Refusal("A retrain is running; wait for it (or cancel it) before rolling back.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        target = await self.service.rollback(actor, version, guild_id=guild_id)
        text = (f"Rolled back: now tagging with **{target.name}**." if target is not None
                else "Rolled back: this server is tagged by the shared base model again.")
        await interaction.followup.send(text, ephemeral=True)

    @rollback.autocomplete("version")
    async def version_autocomplete(self, interaction: discord.Interaction, current: str):
        if not can_manage_here(interaction):  # autocomplete skips checks: it must not list another's versions
            return []
        names = [*reversed(await self.service.versions(interaction.guild_id)), "base"]
        return [app_commands.Choice(name=n, value=n) for n in names if current in n][:25]

    # -- /base: the shared base model, the bot's owner only ------------------------------------------

    base = app_commands.Group(name="base", description="The shared base model every server starts from (bot owner)",
                              default_permissions=discord.Permissions(administrator=True), guild_only=True)

    @base.command(name="retrain", description="Retrain the shared base on the corrections servers chose to share")
    @app_commands.describe(force="Deploy even if the new model does not pass the quality gate")
    async def base_retrain(self, interaction: discord.Interaction, force: bool = False) -> None:
        await self.start(interaction, await self.service.prepare(await owner_actor_of(interaction), force=force))

    @base.command(name="info", description="The shared base's version, its metrics and the shared corrections")
    async def base_info(self, interaction: discord.Interaction) -> None:
        info = await self.service.info(await owner_actor_of(interaction))
        await interaction.response.send_message(render.model_info(info, render.DISCORD), ephemeral=True)

    @base.command(name="rollback", description="Go back to an earlier version of the shared base")
    @app_commands.describe(version="A version such as v2; leave empty for the previous deployed one")
    async def base_rollback(self, interaction: discord.Interaction, version: str | None = None) -> None:
        await self.roll_back(interaction, await owner_actor_of(interaction), version, None)


def can_manage_here(interaction: discord.Interaction) -> bool:
    try:
        return is_manager(interaction)
    except app_commands.CheckFailure:
        return False


async def setup(bot) -> None:
    await bot.add_cog(Admin(bot))
