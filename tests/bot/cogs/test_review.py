"""/review through simcord: off by default, turned on by an admin, the least sure first, labelled with the
"Correct emotion" menu, skipped, deleted meanwhile; only moderators, only their server, only channels they read."""

from __future__ import annotations

import dataclasses

import discord
import pytest

from bot.services import review as review_rules
from tests.helpers import build_guild, reactions, running

HAPPY, SAD = "😄", "😢"
#: What the model is sure of, per text (anything else: 0.99).
SURE = {"maybe fine": 0.55, "who knows": 0.7, "hard to say": 0.62, "pretty sure": 0.95}


def unsure_model(env) -> None:
    """The bot's model answers happiness for every text, as sure as :data:`SURE` says."""
    original = env.bot.worker.classify

    async def classify(text, key=None):
        prediction = await original(text)
        return dataclasses.replace(prediction, score=SURE.get(text, 0.99))

    env.bot.worker.classify = classify


def moderator(env, guild, name: str = "mod"):
    mods = guild.create_role(f"{name} role", permissions=discord.Permissions(manage_messages=True))
    return guild.add_member(env.create_user(name), roles=[mods])


@pytest.fixture
def world(simcord_env):
    env = simcord_env
    guild, general, alice, bob, admin = build_guild(env, members=("alice", "bob"), manager="admin", role="Admins")
    unsure_model(env)
    return env, guild, general, alice, bob, admin, moderator(env, guild)


async def turn_on(admin, channel) -> None:
    r = await admin.slash(channel, "emotion-config", review=True)
    assert r.response.content.startswith("Settings updated.") and "Review" in r.response.content


async def post(member, channel, *texts):
    return [await member.send(channel, text) for text in texts]


async def waiting(env, guild) -> list[int]:
    return [row.message_id for row in await env.bot.store.review_items(guild.id)]


async def corrections(env) -> list[tuple[int, int, str, str]]:
    return list(await env.bot.store._db.execute_fetchall(
        "SELECT message_id, corrector_id, label, text FROM corrections ORDER BY id"))


async def test_the_whole_flow(world):
    env, guild, general, alice, bob, admin, mod = world
    await post(alice, general, "maybe fine")
    assert await waiting(env, guild) == []  # off by default: nothing stored
    r = await mod.slash(general, "review")
    assert r.ephemeral and "an admin can turn it on with /emotion-config review:True" in r.response.content

    await turn_on(admin, general)
    surest, least, middle = await post(alice, general, "who knows", "maybe fine", "hard to say")
    await post(bob, general, "pretty sure", "so happy")
    r = await mod.slash(general, "review")
    assert r.ephemeral
    shown = r.response.content
    assert "1 of 5" in shown and "> maybe fine" in shown and "55%" in shown and least.jump_url in shown
    assert {c["custom_id"] for row in r.response.components for c in row["components"]} >= {
        "correct:label", "review:skip"}

    await mod.select(r.response, ["sadness"])  # the same menu as Apps ▸ Correct emotion
    assert "Changed" in r.response.content and "sadness" in r.response.content
    assert "2 of 5" in r.response.content and "> hard to say" in r.response.content
    assert await corrections(env) == [(least.id, mod.id, "sadness", "maybe fine")]
    assert reactions(next(m for m in general.history() if m.id == least.id)) == [(SAD, 1)]  # swapped, as the menu does
    assert least.id not in await waiting(env, guild)

    await mod.click(r.response, custom_id="review:skip")
    assert "Skipped" in r.response.content and "3 of 5" in r.response.content and "> who knows" in r.response.content
    assert middle.id not in await waiting(env, guild) and surest.id in await waiting(env, guild)
    assert len(await corrections(env)) == 1  # a skip labels nothing
    for _ in range(3):
        await mod.click(r.response, custom_id="review:skip")
    assert r.response.components == [] and "That's all" in r.response.content
    assert await waiting(env, guild) == []
    assert "Nothing waits" in (await mod.slash(general, "review")).response.content


async def test_members_without_manage_messages_are_refused(world):
    env, guild, general, alice, bob, admin, mod = world
    await turn_on(admin, general)
    await post(alice, general, "maybe fine")
    assert "review" not in alice.available_commands(general)  # Discord hides it (default_permissions)
    assert "review" in mod.available_commands(general)
    [command] = [c for c in await env.bot.tree.fetch_commands() if c.name == "review"]
    guild.set_command_permissions(command, {alice: True, admin: True})  # a server shows it anyway
    for who in (alice, admin):  # Manage Server is not Manage Messages
        r = await who.slash(general, "review")
        assert r.ephemeral and "Manage Messages" in r.response.content and "maybe fine" not in r.response.content
    assert len(await waiting(env, guild)) == 1


async def test_another_servers_moderator_never_sees_it(world):
    env, guild, general, alice, bob, admin, mod = world
    await turn_on(admin, general)
    await post(alice, general, "maybe fine")
    other, lobby, carol, boss = build_guild(env, "Other", channels=("lobby",), members=("carol",), manager="boss")
    await turn_on(boss, lobby)
    r = await moderator(env, other, "othermod").slash(lobby, "review")
    assert "Nothing waits" in r.response.content and "maybe fine" not in r.response.content
    assert len(await waiting(env, guild)) == 1


async def test_a_channel_the_moderator_cannot_read_is_not_offered(world):
    env, guild, general, alice, bob, admin, mod = world
    await turn_on(admin, general)
    secret = guild.create_text_channel("secret", overwrites={
        guild.default_role: discord.PermissionOverwrite(view_channel=False),
        alice: discord.PermissionOverwrite(view_channel=True),
        guild.me: discord.PermissionOverwrite(view_channel=True)})
    await post(alice, secret, "maybe fine")
    r = await mod.slash(general, "review")
    assert "channels you can read" in r.response.content and "maybe fine" not in r.response.content
    await post(alice, general, "who knows")
    r = await mod.slash(general, "review")
    assert "1 of 1" in r.response.content and "> who knows" in r.response.content


async def test_a_message_deleted_meanwhile_is_dropped_with_a_note(world):
    env, guild, general, alice, bob, admin, mod = world
    await turn_on(admin, general)
    least, gone, last = await post(alice, general, "maybe fine", "hard to say", "who knows")
    r = await mod.slash(general, "review")
    assert "1 of 3" in r.response.content
    await alice.delete(gone)
    assert gone.id not in await waiting(env, guild)  # the delete took it out of the queue already
    await mod.click(r.response, custom_id="review:skip")
    assert "deleted meanwhile" in r.response.content and "hard to say" not in r.response.content
    assert "3 of 3" in r.response.content and "> who knows" in r.response.content


async def test_forget_me_and_turning_review_off_empty_the_queue(world):
    env, guild, general, alice, bob, admin, mod = world
    await turn_on(admin, general)
    await post(alice, general, "maybe fine")
    await post(bob, general, "who knows")
    await alice.slash(general, "emotion forget-me")
    assert len(await waiting(env, guild)) == 1
    r = await admin.slash(general, "emotion-config", review=False)
    assert "Review" not in r.response.content
    assert await waiting(env, guild) == []
    await post(bob, general, "hard to say")
    assert await waiting(env, guild) == []


async def test_the_purge_loop_deletes_text_before_it_is_24_hours_old(world):
    env, guild, general, alice, bob, admin, mod = world
    await turn_on(admin, general)
    [msg] = await post(alice, general, "maybe fine")
    [row] = await env.bot.store.review_items(guild.id)
    await env.bot.store.offer_review(dataclasses.replace(row, created_at=row.created_at - review_rules.MAX_AGE + 60))
    assert await waiting(env, guild) == [msg.id]  # 23 h 59 min old: still readable
    await env.advance_time(review_rules.PURGE_EVERY)
    assert await waiting(env, guild) == []


async def test_more_than_25_labels_page_like_the_correct_menu(tmp_path, bot_settings):
    from bot.client import EmotionBot
    from model.classifier import Classifier
    from model.labels import GOEMOTIONS
    from tests.helpers.tiny import build_tiny_model

    clf = Classifier.load(build_tiny_model(tmp_path / "go", GOEMOTIONS, confident="joy"), device="cpu")
    bot = EmotionBot(bot_settings, clf, store_options={"flush_interval": 0.01})
    async with running(bot) as env:
        guild, general, alice, admin = build_guild(env, "G", manager="admin")
        mod = moderator(env, guild)
        unsure_model(env)
        await turn_on(admin, general)
        [msg] = await post(alice, general, "maybe fine")
        r = await mod.slash(general, "review")
        assert "page 1/2" in r.response.content and "1 of 1" in r.response.content
        await mod.click(r.response, custom_id="correct:next")
        assert "page 2/2" in r.response.content and "> maybe fine" in r.response.content
        await mod.select(r.response, ["neutral"])
        assert "That's all" in r.response.content
        assert await corrections(env) == [(msg.id, mod.id, "neutral", "maybe fine")]
