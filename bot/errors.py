"""One place that turns every app-command error into an ephemeral message a member can act on.

A service's :class:`~bot.services.Refusal` is said as it is; anything unexpected is logged and
answered with a generic line, so no traceback or internal detail reaches a member.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.permissions import NotManager
from bot.services import Refusal
from bot.store import StoreError

log = logging.getLogger(__name__)


def message_for(error: Exception) -> str:
    """The text a member sees for ``error`` (an app-command error or what a view callback raised)."""
    original = getattr(error, "original", error)
    if isinstance(error, NotManager) or isinstance(original, Refusal):
        return str(original)
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server."
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use this command here."
    if isinstance(error, app_commands.TransformerError):
        if error.type is discord.AppCommandOptionType.channel:
            return "I can't see that channel or thread (archived, or hidden from me)."
        return f"That value isn't valid: {getattr(error.value, 'name', error.value)}."
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
        known = isinstance(error, (app_commands.CheckFailure, app_commands.TransformerError)) \
            or isinstance(getattr(error, "original", None), Refusal)
        if not known:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("command /%s failed", command, exc_info=getattr(error, "original", error))
        await send_ephemeral(interaction, message_for(error))

    tree.on_error = on_app_command_error
