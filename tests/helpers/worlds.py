"""simcord worlds: a guild with channels and members, a bot run that also closes it, reactions as tuples."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import discord


def build_guild(env, name: str = "Main", *, channels: Sequence[str] = ("general",),
                members: Sequence[str] = ("alice",), manager: str | None = "mod", role: str = "Mods") -> tuple:
    """A guild with text ``channels`` and ``members``, plus (unless ``manager`` is None) a member of
    that name holding ``role``, which has Manage Server. Returns ``(guild, *channels, *members, manager)``."""
    guild = env.create_guild(name)
    managers = guild.create_role(role, permissions=discord.Permissions(manage_guild=True)) if manager else None
    made = [guild.create_text_channel(channel) for channel in channels]
    made += [guild.add_member(env.create_user(member)) for member in members]
    if manager:
        made.append(guild.add_member(env.create_user(manager), roles=[managers]))
    return (guild, *made)


def reactions(message) -> list[tuple[str, int]]:
    """``message``'s reactions as ``(emoji, count)`` pairs."""
    return [(str(r.emoji), r.count) for r in message.reactions]


def hold_the_model(env):
    """Make the bot's model wait (an ``asyncio.Event`` to ``set()``) without blocking simcord's settling:
    messages sent meanwhile are received but not yet classified."""
    import asyncio

    original = env.bot.worker.classify
    release = asyncio.Event()

    async def busy(text, key=None):
        await env.external_wait(release.wait(), reason="the model is busy with other messages")
        return await original(text, key)

    env.bot.worker.classify = busy
    return release


@contextlib.asynccontextmanager
async def running(bot, **options):
    """``simcord.run`` that also closes the bot: simcord detaches it but never calls ``close()``,
    which would leave the store's SQLite thread (non-daemon) and the worker running."""
    import simcord

    env = simcord.Env(bot, **options)
    await env.start()
    try:
        with env.time_context():
            yield env
    finally:
        await env.shutdown()
        await bot.close()
        if env.check_errors:
            env.raise_errors()


async def correct_all(channel, member, admin, texts, label: str) -> None:
    """``member`` posts each of ``texts`` in ``channel`` and ``admin`` corrects it to ``label``."""
    for text in texts:
        msg = await member.send(channel, text)
        await admin.slash(channel, "correct", message=str(msg.id), emotion=label)
