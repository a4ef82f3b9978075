"""Many servers in simcord: each /retrain learns for its own server, /base is the owner's, leaving is noted."""

from __future__ import annotations

import dataclasses

import pytest

from bot.client import EmotionBot
from model.registry import server_root
from tests.helpers import build_guild, correct_all, reactions, running

SAD = ["i am so sad", "sad sad today", "so sad sorry", "sad ugh", "very sad"]
ANGRY = ["i am so angry", "angry angry today", "so angry why", "angry hate", "very angry"]


@pytest.fixture
def server_settings(bot_settings):
    return dataclasses.replace(bot_settings, finetune_epochs=40, finetune_batch_size=4, finetune_mix=1.0,
                               min_corrections=6, server_lr=5e-2)


async def _two_servers(env):
    a = build_guild(env, "Alpha", manager="ann", role="Admins")  # guild, general, alice, ann
    b = build_guild(env, "Beta", members=("bea",), manager="bob", role="Admins")
    return a, b


async def test_a_servers_retrain_teaches_that_server_only(server_settings, happy_classifier):
    bot = EmotionBot(server_settings, happy_classifier, store_options={"flush_interval": 0.01})
    async with running(bot, settle_timeout=180) as env:
        (alpha, a_general, alice, ann), (beta, b_general, bea, bob) = await _two_servers(env)
        await correct_all(a_general, alice, ann, SAD, "sadness")
        await correct_all(a_general, alice, ann, ANGRY, "anger")

        r = await bob.slash(b_general, "retrain")  # Beta has no corrections of its own: Alpha's do not count
        assert r.ephemeral and "Only 0 corrections in this server" in r.response.content
        r = await ann.slash(a_general, "retrain", force=True)
        assert "Now tagging this server's messages with its **v1**" in r.response.content, r.response.content

        assert reactions(await alice.send(a_general, "sad sad sad")) == [("😢", 1)]
        assert reactions(await bea.send(b_general, "sad sad sad")) == [("😄", 1)]  # Beta: still the base
        assert (server_root(server_settings.models_dir, alpha.id) / "v1").is_dir()
        assert not server_root(server_settings.models_dir, beta.id).exists()

        info = await bob.slash(b_general, "model info")
        assert "This server is tagged by the shared base model" in info.response.content
        r = await bob.slash(b_general, "model rollback", version="v1")  # Beta has no v1: it cannot reach Alpha's
        assert "does not exist" in r.response.content or "nothing to roll back" in r.response.content
        assert bot.services.serving.head_of(alpha.id).name == "v1"
        assert reactions(await alice.send(a_general, "angry today")) == [("😠", 1)]


async def test_the_shared_base_is_the_owners_alone(server_settings, happy_classifier):
    bot = EmotionBot(server_settings, happy_classifier, store_options={"flush_interval": 0.01})
    async with running(bot) as env:
        (alpha, a_general, alice, ann), _ = await _two_servers(env)
        owner = alpha.add_member(env.create_user("olga"))
        bot.owner_id = owner.id  # what discord.py otherwise reads from the application's owner or team
        for command in await bot.tree.fetch_commands():  # an admin shows /base to everyone: still refused
            if command.name == "base":
                alpha.set_command_permissions(command, {ann: True, alice: True, owner: True})
        for who in (ann, alice):
            r = await who.slash(a_general, "base info")
            assert r.ephemeral and "Only the bot's owner" in r.response.content
            r = await who.slash(a_general, "base retrain")
            assert "Only the bot's owner" in r.response.content
        r = await owner.slash(a_general, "base info")
        assert "Serving the base model" in r.response.content
        r = await owner.slash(a_general, "base retrain")
        assert "Only 0 corrections from the servers that share" in r.response.content


async def test_being_removed_from_a_server_is_noted_and_its_model_no_longer_served(server_settings,
                                                                                   happy_classifier):
    bot = EmotionBot(server_settings, happy_classifier, store_options={"flush_interval": 0.01})
    async with running(bot, settle_timeout=180) as env:
        (alpha, a_general, alice, ann), _ = await _two_servers(env)
        await correct_all(a_general, alice, ann, SAD, "sadness")
        await correct_all(a_general, alice, ann, ANGRY[:1], "anger")
        await ann.slash(a_general, "retrain", force=True)
        assert bot.services.serving.head_of(alpha.id) is not None
        env.backend.remove_guild(alpha.id)
        await env.settle()
        assert bot.services.serving.head_of(alpha.id) is None
        assert await bot.store.guilds_left_before(float("inf")) == [alpha.id]
        assert await bot.store.count_corrections(guild_id=alpha.id) == 6  # kept for the grace period
