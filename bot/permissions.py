"""Who the member is and what they may do, from Discord's server-side data (never a client hint)."""

from __future__ import annotations

import dataclasses

import discord
from discord import app_commands

from bot.services import Actor


class NotManager(app_commands.CheckFailure):
    """The member lacks Manage Server for an admin command."""


def can_manage(interaction: discord.Interaction) -> bool:
    """Manage Server (or Administrator) in this guild, from the member Discord sent with the interaction."""
    perms = getattr(interaction.user, "guild_permissions", None)
    return interaction.guild is not None and perms is not None and bool(perms.manage_guild or perms.administrator)


def can_moderate(interaction: discord.Interaction) -> bool:
    """Manage Messages (or Administrator) in this guild: who may ``/review``, from the member Discord sent."""
    perms = getattr(interaction.user, "guild_permissions", None)
    return interaction.guild is not None and perms is not None and bool(perms.manage_messages or perms.administrator)


def is_manager(interaction: discord.Interaction) -> bool:
    """The check behind :func:`manager_only`; ``default_permissions`` only hides commands client-side."""
    if not can_manage(interaction):
        raise NotManager("You need the **Manage Server** permission for this command.")
    return True


def manager_only():
    return app_commands.check(is_manager)


def actor_of(interaction: discord.Interaction) -> Actor:
    """The invoking member as the services see them."""
    return Actor(user_id=interaction.user.id, guild_id=interaction.guild_id, can_manage=can_manage(interaction),
                 name=getattr(interaction.user, "display_name", "") or str(interaction.user.id),
                 can_moderate=can_moderate(interaction))


async def owner_actor_of(interaction: discord.Interaction) -> Actor:
    """:func:`actor_of`, plus whether they own the bot (the application's owner or team, from Discord).

    discord.py's ``Bot.is_owner`` asks Discord for the application's owner once and caches it.
    """
    owner = await interaction.client.is_owner(interaction.user)
    return dataclasses.replace(actor_of(interaction), is_owner=bool(owner))
