"""The learning loop in simcord: correct → /retrain → gate → hot swap → new reactions; /model."""

from __future__ import annotations

import dataclasses

import pytest

from bot.client import EmotionBot
from tests.helpers import build_guild, correct_all, reactions, running

SAD = ["i am so sad", "sad sad today", "so sad sorry", "sad ugh", "very sad"]
ANGRY = ["i am so angry", "angry angry today", "so angry why", "angry hate", "very angry"]


@pytest.fixture
def loop_settings(bot_settings):
    """Settings that let a tiny model learn from ten corrections in a few seconds (the fine-tune unmixed)."""
    return dataclasses.replace(bot_settings, finetune_epochs=40, finetune_lr=5e-3, finetune_batch_size=4,
                               finetune_mix=1.0, min_corrections=6, server_lr=5e-2)


async def _world(env):
    guild, general, alice, admin = build_guild(env, manager="admin", role="Admins")
    return guild, general, admin, alice


async def test_full_loop_correct_retrain_swap_react(loop_settings, happy_classifier):
    bot = EmotionBot(loop_settings, happy_classifier, store_options={"flush_interval": 0.01})
    async with running(bot, settle_timeout=180) as env:
        guild, general, admin, alice = await _world(env)
        before = await alice.send(general, "so sad today")
        assert reactions(before) == [("😄", 1)]  # the base model says happiness to everything
        await correct_all(general, alice, admin, SAD, "sadness")
        await correct_all(general, alice, admin, ANGRY, "anger")

        r = await admin.slash(general, "retrain", force=True)
        assert not r.ephemeral
        text = r.response.content
        assert "Deployed **v1**" in text and "Now tagging this server's messages with its **v1**" in text, text
        assert r.response.components == []  # the Cancel button is gone at the end

        # the server's own line: a head on the unchanged base, in the server's folder
        assert bot.classifier is happy_classifier and bot.services.serving.head_of(guild.id).name == "v1"
        assert (loop_settings.models_dir / "servers" / str(guild.id) / "v1" / "head.safetensors").is_file()
        after = await alice.send(general, "sad sad sad")
        assert reactions(after) == [("😢", 1)]
        angry = await alice.send(general, "angry today")
        assert reactions(angry) == [("😠", 1)]
        row = await bot.store.get_prediction(after.id)
        assert row.model_version == "v1@base"  # each prediction records the version that made it

        info = await admin.slash(general, "model info")
        assert "This server's model: current version **v1**" in info.response.content and info.ephemeral


async def test_too_few_corrections_and_permissions(loop_settings, happy_classifier):
    bot = EmotionBot(loop_settings, happy_classifier, store_options={"flush_interval": 0.01})
    async with running(bot) as env:
        guild, general, admin, alice = await _world(env)
        assert "retrain" not in alice.available_commands(general)  # the client-side hint
        # a server admin lets everyone see the admin commands: the bot must still refuse
        for command in await bot.tree.fetch_commands():
            if command.name in {"retrain", "model"}:
                guild.set_command_permissions(command, {alice: True})
        r = await alice.slash(general, "retrain")
        assert r.ephemeral and "Manage Server" in r.response.content
        r = await admin.slash(general, "retrain")
        assert r.ephemeral and "Only 0 corrections" in r.response.content and "at least 6" in r.response.content
        r = await alice.slash(general, "model rollback")
        assert "Manage Server" in r.response.content


async def test_a_second_retrain_while_one_runs_gets_a_clear_answer(loop_settings, happy_classifier):
    bot = EmotionBot(loop_settings, happy_classifier, store_options={"flush_interval": 0.01})
    async with running(bot) as env:
        guild, general, admin, alice = await _world(env)

        class Running:
            running = True
            started_by = "someone"
            guild_id = guild.id

        bot.services.retraining.running = Running()
        r = await admin.slash(general, "retrain")
        assert r.ephemeral and "already running" in r.response.content


async def test_a_refused_candidate_is_not_deployed(loop_settings, happy_classifier):
    # no hold-out (too few distinct texts) and no replay: the gate has nothing to compare on
    bot = EmotionBot(loop_settings, happy_classifier, store_options={"flush_interval": 0.01})
    async with running(bot, settle_timeout=180) as env:
        guild, general, admin, alice = await _world(env)
        await correct_all(general, alice, admin, SAD + ANGRY[:1], "sadness")
        r = await admin.slash(general, "retrain")
        assert "Not deployed" in r.response.content
        # said in the answer, with the numbers: nothing guards against forgetting, the hold-out is too small
        assert "⚠️ no replay data: the base records no training data" in r.response.content
        assert "⚠️ the hold-out is too small for a verdict (0 held-out texts" in r.response.content
        assert bot.classifier is happy_classifier
        msg = await alice.send(general, "sad")
        assert reactions(msg) == [("😄", 1)]


async def test_a_crashed_training_deploys_nothing_and_the_bot_stays_up(loop_settings, happy_model_dir, tmp_path):
    from model.classifier import Classifier

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    classifier = Classifier.load(happy_model_dir, device="cpu", version="base")
    classifier.source = str(broken)  # the job trains from the serving model's source: make it unloadable
    bot = EmotionBot(loop_settings, classifier, store_options={"flush_interval": 0.01})
    async with running(bot, settle_timeout=180) as env:
        guild, general, admin, alice = await _world(env)
        await correct_all(general, alice, admin, SAD + ANGRY[:1], "sadness")
        r = await admin.slash(general, "retrain", force=True)
        assert "Training failed" in r.response.content and "Nothing was deployed" in r.response.content
        assert bot.classifier is classifier
        msg = await alice.send(general, "still here")
        assert reactions(msg) == [("😄", 1)]


async def test_rollback_swaps_back(loop_settings, happy_classifier, tmp_path):
    from model.registry import Registry
    from tests.helpers.tiny import build_tiny_model

    registry = Registry(loop_settings.models_dir)
    for label in ("sadness", "anger"):
        version, tmp = registry.allocate()
        build_tiny_model(tmp, confident=label)
        registry.commit(tmp, {"base": "tiny", "parent": None})
        registry.set_current(version)
    bot = EmotionBot(loop_settings, happy_classifier, store_options={"flush_interval": 0.01})
    async with running(bot) as env:
        guild, general, admin, alice = await _world(env)
        bot.owner_id = alice.id  # the shared base is the owner's
        for command in await bot.tree.fetch_commands():  # /base is hidden (Administrator) unless shown
            if command.name == "base":
                guild.set_command_permissions(command, {alice: True})
        r = await admin.slash(general, "model rollback", version="v1")  # this server has no v1 of its own
        assert r.ephemeral and "does not exist" in r.response.content
        r = await alice.slash(general, "base rollback", version="v1")
        assert "now tagging with **v1**" in r.response.content
        msg = await alice.send(general, "anything")
        assert reactions(msg) == [("😢", 1)]
        r = await alice.slash(general, "base rollback", version="v9")
        assert r.ephemeral and "v9" in r.response.content
