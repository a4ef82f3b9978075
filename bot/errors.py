"""One place that turns every app-command error into an ephemeral message a member can act on."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

log = logging.getLogger(__name__)


class UserError(app_commands.AppCommandError):
    """An error whose message is meant for the member who ran the command."""


class NotManager(app_commands.CheckFailure):
    """The member lacks Manage Server for an admin command."""


def is_manager(interaction: discord.Interaction) -> bool:
    """Server-side check: Manage Server in this guild. ``default_permissions`` is only a client hint."""
    perms = getattr(interaction.user, "guild_permissions", None)
    if interaction.guild is None or perms is None or not (perms.manage_guild or perms.administrator):
        raise NotManager("You need the **Manage Server** permission for this command.")
    return True


def manager_only():
    return app_commands.check(is_manager)


def message_for(error: Exception) -> str:
    """The text a member sees for ``error`` (an app-command error or what a view callback raised)."""
    original = getattr(error, "original", error)
    if isinstance(error, (UserError, NotManager)):
        return str(error)
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server."
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use this command here."
    if isinstance(error, app_commands.TransformerError):
        if error.type is discord.AppCommandOptionType.channel:
            return "I can't see that channel or thread (archived, or hidden from me)."
        return f"That value isn't valid: {getattr(error.value, 'name', error.value)}."
    from bot.store import StoreError

    if isinstance(original, StoreError):
        return "The bot's database is unavailable right now; please try again later."
    if isinstance(original, discord.Forbidden):
        return "I don't have the Discord permission needed for that here."
    return "Something went wrong on my side; it has been logged."


async def send_ephemeral(interaction: discord.Interaction, content: str, **kwargs) -> None:
    """Answer whether or not the interaction was already responded to or deferred."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(content, ephemeral=True, **kwargs)
        else:
            await interaction.response.send_message(content, ephemeral=True, **kwargs)
    except discord.HTTPException as exc:
        log.warning("could not send an error message (HTTP %s)", exc.status)


def install_error_handler(tree: app_commands.CommandTree) -> None:
    async def on_app_command_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        known = isinstance(error, (UserError, app_commands.CheckFailure, app_commands.TransformerError))
        if not known:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("command /%s failed", command, exc_info=getattr(error, "original", error))
        await send_ephemeral(interaction, message_for(error))

    tree.on_error = on_app_command_error
