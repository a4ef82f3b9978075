"""Tagging through simcord: the real discord.py stack, the real worker, a tiny model."""

from __future__ import annotations

import discord
import simcord
from simcord.enums import MessageType


def reactions(message) -> list[tuple[str, int]]:
    return [(str(r.emoji), r.count) for r in message.reactions]


async def test_member_message_gets_the_top_emoji_and_a_prediction_row(simcord_env):
    env = simcord_env
    guild = env.create_guild("Main")
    general = guild.create_text_channel("general")
    alice = guild.add_member(env.create_user("alice"))
    msg = await alice.send(general, "I'm so happy with my new phone!")
    assert reactions(msg) == [("😄", 1)]
    row = await env.bot.store.get_prediction(msg.id)
    assert (row.label, row.channel_id, row.author_id, row.model_version) == ("happiness", general.id, alice.id, "base")
    assert row.probability > 0.9
