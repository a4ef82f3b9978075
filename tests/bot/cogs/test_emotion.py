"""``/emotion about | predict | optout | optin | forget-me`` and ``/emotion-config`` through simcord."""

from __future__ import annotations

import asyncio
import logging

import discord
import pytest
import simcord

from bot.permissions import NotManager
from bot.services import Refusal
from bot.store import GuildSettings, StoreError
from model.labels import emoji_for
from tests.helpers import build_guild, reactions, running

HAPPY = "😄"


@pytest.fixture
def world(simcord_env):
    return (simcord_env, *build_guild(simcord_env, members=("alice", "bob")))


def acknowledge(env, exc_type) -> None:
    """The bot's own tree.on_error (installed in setup_hook) replaces simcord's capturing wrapper, so
    command errors are usually not recorded; whatever simcord did record must be of ``exc_type``."""
    for error in env.errors:
        assert isinstance(getattr(error, "original", error), exc_type), error


def logged_failures(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bot.errors" and r.levelno >= logging.ERROR]


def fields(embed: discord.Embed) -> dict[str, str]:
    return {f.name: f.value for f in embed.fields}


async def default_settings(env, guild) -> GuildSettings:
    return GuildSettings(threshold=env.bot.settings.threshold)


# --------------------------------------------------------------------------- about / predict

async def test_about_shows_the_model_and_what_was_tagged(world):
    env, guild, general, alice, bob, mod = world
    r = await alice.slash(general, "emotion about")
    assert r.ephemeral and r.response.content == ""
    [embed] = r.response.embeds
    assert embed.title == "Emotion Machine"
    f = fields(embed)
    assert f["Version"] == "base"
    assert f["Device"] == "cpu"
    labels = env.bot.classifier.labels
    assert f[f"Labels ({len(labels)})"].split() == [x for lb in labels for x in (emoji_for(lb), lb)]
    assert f["Tagged here"] == "nothing yet"
    assert f["Stored for this server"] == "0 predictions · 0 corrections"
    assert general.history() == []  # nobody else sees it

    msgs = [await alice.send(general, "happy"), await bob.send(general, "very happy")]
    await mod.slash(general, "correct", message=str(msgs[0].id), emotion="anger")
    f = fields((await alice.slash(general, "emotion about")).response.embeds[0])
    assert f["Tagged here"] == f"{HAPPY} happiness 2"
    assert f["Stored for this server"] == "2 predictions · 1 corrections"


async def test_about_counts_only_this_servers_tags(world):
    env, guild, general, alice, bob, mod = world
    other = env.create_guild("Other")
    elsewhere = other.create_text_channel("x")
    carol = other.add_member(env.create_user("carol"))
    await carol.send(elsewhere, "happy")
    await carol.send(elsewhere, "happy")
    await alice.send(general, "happy")
    f = fields((await alice.slash(general, "emotion about")).response.embeds[0])
    assert f["Tagged here"] == f"{HAPPY} happiness 1"
    assert f["Stored for this server"] == "1 predictions · 0 corrections"  # another server's are not shown


async def test_predict_shows_the_top_three_with_bars(world):
    env, guild, general, alice, bob, mod = world
    r = await alice.slash(general, "emotion predict", text="I am so happy")
    assert r.ephemeral
    lines = r.response.content.splitlines()
    assert len(lines) == 3
    expected = env.bot.classifier.predict(["I am so happy"])[0].top(3)
    assert expected[0][0] == "happiness"
    for line, (label, p) in zip(lines, expected):
        emoji, bar, pct, name = line.split(maxsplit=3)
        assert (emoji, name) == (emoji_for(label), label)
        assert bar.startswith("`") and bar.endswith("`") and len(bar) == 14
        assert bar.strip("`").count("█") == round(p * 12) and set(bar.strip("`")) <= {"█", "░"}
        assert pct == f"{p:.1%}"
    # a prediction is not a tag: nothing stored, nothing posted
    assert await env.bot.store.label_counts() == {}
    assert general.history() == []


async def test_predict_handles_long_and_unusual_text(world):
    env, guild, general, alice, bob, mod = world
    r = await alice.slash(general, "emotion predict", text="😀 مرحبا " * 400)
    assert len(r.response.content.splitlines()) == 3 and "happiness" in r.response.content.splitlines()[0]
    with pytest.raises(simcord.OptionError):
        await alice.slash(general, "emotion predict", text="x" * 4001)


async def test_predict_with_only_spaces_asks_for_text(world, caplog):
    env, guild, general, alice, bob, mod = world
    r = await alice.slash(general, "emotion predict", text="   ")
    assert r.ephemeral and r.response.content == "Give me some text to classify."
    acknowledge(env, Refusal)
    assert logged_failures(caplog) == []  # an expected refusal, not a failure


# --------------------------------------------------------------------------- privacy

async def seed_records(env, general, alice, bob, mod):
    """alice's message (predicted, corrected by mod) and bob's message corrected by alice."""
    a = await alice.send(general, "happy")
    b = await bob.send(general, "happy")
    await mod.slash(general, "correct", message=str(a.id), emotion="anger")
    await alice.slash(general, "correct", message=str(b.id), emotion="sadness")
    assert await env.bot.store.count_corrections() == 2
    return a, b


async def test_optout_stops_tagging_and_deletes_what_was_stored(world):
    env, guild, general, alice, bob, mod = world
    a, b = await seed_records(env, general, alice, bob, mod)
    r = await alice.slash(general, "emotion optout")
    assert r.ephemeral
    # alice's prediction, mod's correction of alice's message, alice's correction of bob's message
    assert "deleted 3 stored records" in r.response.content
    store = env.bot.store
    assert await store.get_prediction(a.id) is None
    assert await store.get_prediction(b.id) is not None
    assert await store.count_corrections() == 0
    assert await store.is_opted_out(alice.id)
    later = await alice.send(general, "happy")
    assert reactions(later) == [] and await store.get_prediction(later.id) is None
    assert reactions(await bob.send(general, "happy")) == [(HAPPY, 1)]


async def test_optout_also_drops_predictions_still_buffered(world):
    env, guild, general, alice, bob, mod = world
    from bot.store import PredictionRow

    store = env.bot.store
    await store.record_prediction(PredictionRow(guild_id=guild.id, channel_id=general.id, message_id=42,
                                                author_id=alice.id, label="anger", probability=0.9))
    assert store.buffered == 1
    r = await alice.slash(general, "emotion optout")
    assert "deleted 1 stored records" in r.response.content
    await store.flush()
    assert await store.get_prediction(42) is None


async def test_optout_twice_is_harmless(world):
    env, guild, general, alice, bob, mod = world
    await alice.slash(general, "emotion optout")
    r = await alice.slash(general, "emotion optout")
    assert r.ephemeral and "deleted 0 stored records" in r.response.content
    assert await env.bot.store.opted_out_users() == {alice.id}


async def test_optin_resumes_tagging(world):
    env, guild, general, alice, bob, mod = world
    await alice.slash(general, "emotion optout")
    r = await alice.slash(general, "emotion optin")
    assert r.ephemeral and "tag your messages again" in r.response.content
    assert not await env.bot.store.is_opted_out(alice.id)
    msg = await alice.send(general, "happy")
    assert reactions(msg) == [(HAPPY, 1)] and await env.bot.store.get_prediction(msg.id) is not None


async def test_optout_survives_a_restart(bot_settings, happy_classifier):
    from bot.client import EmotionBot
    from bot.services.tagging import IncomingMessage

    for step in ("optout", "check"):
        bot = EmotionBot(bot_settings, happy_classifier, store_options={"flush_interval": 0.01})
        async with running(bot) as env:
            guild, general, alice = build_guild(env, "G", manager=None)
            if step == "optout":
                await alice.slash(general, "emotion optout")
                opted_out_id = alice.id
            else:  # a fresh env need not hand out the same ids: the restarted bot is asked about that one
                assert await bot.store.is_opted_out(opted_out_id)
                message = IncomingMessage(guild.id, general.id, 1, opted_out_id, "happy")
                assert await bot.services.tagging.tag(message) is None
                assert await bot.store.get_prediction(1) is None


async def test_forget_me_deletes_records_but_tagging_continues(world):
    env, guild, general, alice, bob, mod = world
    a, b = await seed_records(env, general, alice, bob, mod)
    r = await alice.slash(general, "emotion forget-me")
    assert r.ephemeral and r.response.content.startswith("Deleted 3 stored records")
    store = env.bot.store
    assert await store.get_prediction(a.id) is None and await store.count_corrections() == 0
    assert await store.get_prediction(b.id) is not None
    assert not await store.is_opted_out(alice.id)
    later = await alice.send(general, "happy")
    assert reactions(later) == [(HAPPY, 1)] and await store.get_prediction(later.id) is not None


async def test_forget_me_while_a_message_is_being_classified_leaves_nothing_behind(world):
    env, guild, general, alice, bob, mod = world
    original = env.bot.worker.classify
    release = asyncio.Event()

    async def busy(text, key=None):  # the model is busy with alice's message until the test releases it
        await env.external_wait(release.wait(), reason="the model is busy")
        return await original(text, key)

    env.bot.worker.classify = busy
    msg = await alice.send(general, "happy")  # returns while the message waits for the model
    r = await alice.slash(general, "emotion forget-me")
    assert r.response.content.startswith("Deleted 0 stored records")
    release.set()
    await env.settle()
    assert await env.bot.store.get_prediction(msg.id) is None
    assert reactions(general.history()[-1]) == []
    env.bot.worker.classify = original
    later = await alice.send(general, "happy")  # forgetting is not opting out
    assert reactions(later) == [(HAPPY, 1)]


async def test_privacy_commands_leave_other_users_alone(world):
    env, guild, general, alice, bob, mod = world
    b = await bob.send(general, "happy")
    await mod.slash(general, "correct", message=str(b.id), emotion="anger")
    await alice.slash(general, "emotion forget-me")
    await alice.slash(general, "emotion optout")
    assert await env.bot.store.get_prediction(b.id) is not None
    assert await env.bot.store.corrections_for_training() == [("happy", "anger")]


# --------------------------------------------------------------------------- config

async def show_config_to(env, guild, *members) -> None:
    """What a server admin can do in Server Settings ▸ Integrations: show the hidden command to members."""
    [config] = [c for c in await env.bot.tree.fetch_commands() if c.name == "emotion-config"]
    guild.set_command_permissions(config, dict.fromkeys(members, True))


async def test_config_needs_manage_server(world, caplog):
    env, guild, general, alice, bob, mod = world
    await show_config_to(env, guild, alice)
    r = await alice.slash(general, "emotion-config", server=False, threshold=0.9)
    assert r.ephemeral and r.response.content == "You need the **Manage Server** permission for this command."
    acknowledge(env, NotManager)
    assert logged_failures(caplog) == []  # an expected refusal, not a failure
    assert await env.bot.store.get_guild_settings(guild.id) == await default_settings(env, guild)
    assert reactions(await alice.send(general, "happy")) == [(HAPPY, 1)]


async def test_config_needs_manage_server_even_to_read(world, caplog):
    env, guild, general, alice, bob, mod = world
    await show_config_to(env, guild, alice)
    r = await alice.slash(general, "emotion-config")
    assert "Manage Server" in r.response.content and "Threshold" not in r.response.content
    acknowledge(env, NotManager)
    assert logged_failures(caplog) == []  # an expected refusal, not a failure


async def test_manage_messages_is_not_enough(world, caplog):
    env, guild, general, alice, bob, mod = world
    helpers = guild.create_role("Helpers", permissions=discord.Permissions(manage_messages=True,
                                                                             manage_channels=True))
    helper = guild.add_member(env.create_user("helper"), roles=[helpers])
    assert "emotion-config" not in helper.available_commands(general)
    await show_config_to(env, guild, helper)
    r = await helper.slash(general, "emotion-config", server=False)
    assert "Manage Server" in r.response.content
    acknowledge(env, NotManager)
    assert logged_failures(caplog) == []  # an expected refusal, not a failure
    assert (await env.bot.store.get_guild_settings(guild.id)).enabled


async def test_administrators_and_the_owner_may_configure(simcord_env):
    env = simcord_env
    owner = env.create_user("owner")
    guild = env.create_guild("Owned", owner=owner)
    general = guild.create_text_channel("general")
    admins = guild.create_role("Admins", permissions=discord.Permissions(administrator=True))
    admin = guild.add_member(env.create_user("admin"), roles=[admins])
    r = await admin.slash(general, "emotion-config", threshold=0.7)
    assert r.response.content.startswith("Settings updated.")
    assert owner.id in guild.member_ids()
    boss = simcord.MemberActor(env, guild, owner)  # the owner has no role at all
    r = await boss.slash(general, "emotion-config", threshold=0.8)
    assert r.response.content.startswith("Settings updated.")
    assert (await env.bot.store.get_guild_settings(guild.id)).threshold == pytest.approx(0.8)


async def test_config_without_options_shows_the_current_settings(world):
    env, guild, general, alice, bob, mod = world
    r = await mod.slash(general, "emotion-config")
    assert r.ephemeral
    assert r.response.content == (
        "Current settings:\n"
        "Tagging in this server: **on**\n"
        "Channels: all, except those turned off\n"
        "Turned off in: none\n"
        "Threshold: **0.50** · show neutral: **no** · reactions: **on**\n"
        "Sharing: **off**: this server's corrections train only its own model")


async def test_config_changes_each_setting_and_shows_the_summary(world):
    env, guild, general, alice, bob, mod = world
    store = env.bot.store
    random = guild.create_text_channel("random")
    steps = [
        (dict(threshold=0.75), "Threshold: **0.75**", dict(threshold=0.75)),
        (dict(show_neutral=True), "show neutral: **yes**", dict(show_neutral=True)),
        (dict(reactions=False), "reactions: **off (predictions still recorded)**", dict(reactions=False)),
        (dict(server=False), "Tagging in this server: **off**", dict(enabled=False)),
        (dict(server=True), "Tagging in this server: **on**", dict(enabled=True)),
        (dict(channel=random, tagging="off"), f"Turned off in: <#{random.id}>",
         dict(denied_channels=frozenset({random.id}))),
        (dict(channel=general, tagging="only"), f"Only in: <#{general.id}>",
         dict(allowed_channels=frozenset({general.id}))),
        (dict(channel=random, tagging="on"), "Turned off in: none",  # 'on' joins the 'only' list
         dict(denied_channels=frozenset(), allowed_channels=frozenset({general.id, random.id}))),
        (dict(tagging="all"), "Channels: all, except those turned off", dict(allowed_channels=frozenset())),
        (dict(threshold=0.0), "Threshold: **0.00**", dict(threshold=0.0)),
        (dict(show_neutral=False, reactions=True), "show neutral: **no** · reactions: **on**",
         dict(show_neutral=False, reactions=True)),
    ]
    for options, shown, expected in steps:
        r = await mod.slash(general, "emotion-config", **options)
        assert r.ephemeral and r.response.content.startswith("Settings updated.\n"), options
        assert shown in r.response.content, (options, r.response.content)
        current = await store.get_guild_settings(guild.id)
        for key, value in expected.items():
            assert getattr(current, key) == value, (options, key)


async def test_config_survives_a_restart(bot_settings, happy_classifier):
    from bot.client import EmotionBot

    seen = []
    for step in range(2):
        bot = EmotionBot(bot_settings, happy_classifier, store_options={"flush_interval": 0.01})
        async with running(bot) as env:
            guild = env.create_guild("G", id=1_100_000_000_000_000_001)  # the same server after the restart
            general = guild.create_text_channel("general")
            managers = guild.create_role("Mods", permissions=discord.Permissions(manage_guild=True))
            mod = guild.add_member(env.create_user("mod"), roles=[managers])
            if step == 0:
                await mod.slash(general, "emotion-config", channel=general, tagging="off", threshold=0.9,
                                reactions=False)
            seen.append(await bot.store.get_guild_settings(guild.id))
    assert seen[1] == seen[0]
    assert seen[1].threshold == pytest.approx(0.9) and not seen[1].reactions


@pytest.mark.parametrize("threshold", [1.5, -0.1])
async def test_a_threshold_out_of_range_is_rejected_by_discord(world, threshold):
    env, guild, general, alice, bob, mod = world
    with pytest.raises(simcord.OptionError):
        await mod.slash(general, "emotion-config", threshold=threshold)
    assert await env.bot.store.get_guild_settings(guild.id) == await default_settings(env, guild)


async def test_tagging_choices_are_enforced_by_discord(world):
    env, guild, general, alice, bob, mod = world
    with pytest.raises(simcord.OptionError):
        await mod.slash(general, "emotion-config", channel=general, tagging="maybe")


async def test_a_channel_without_tagging_gets_a_clear_message(world, caplog):
    env, guild, general, alice, bob, mod = world
    r = await mod.slash(general, "emotion-config", channel=general, threshold=0.9)
    assert r.ephemeral
    assert r.response.content == "Say what to do with that channel: set `tagging` to on, off or only."
    acknowledge(env, Refusal)
    assert logged_failures(caplog) == []  # an expected refusal, not a failure
    # nothing at all was changed, not even the threshold given alongside
    assert await env.bot.store.get_guild_settings(guild.id) == await default_settings(env, guild)


async def test_emotion_commands_are_server_only(world):
    env, guild, general, alice, bob, mod = world
    assert {"emotion about", "emotion predict", "emotion optout", "emotion optin", "emotion forget-me",
            "emotion-config"} <= set(mod.available_commands(general))
    assert not any(c.startswith("emotion") for c in alice.user.available_commands())


async def test_config_is_hidden_from_members_and_still_refused_when_a_server_shows_it(world):
    env, guild, general, alice, bob, mod = world
    commands = set(alice.available_commands(general))
    assert "emotion about" in commands and not any("config" in c for c in commands)
    assert "emotion-config" in mod.available_commands(general)
    await show_config_to(env, guild, alice)
    r = await alice.slash(general, "emotion-config", server=False)
    assert "Manage Server" in r.response.content
    assert (await env.bot.store.get_guild_settings(guild.id)).enabled


# --------------------------------------------------------------------------- store failures

def failing(*_args, **_kwargs):
    raise StoreError("Could not save an opt-out (x): the disk is full", path="x", reason="full")


async def test_a_store_failure_gets_a_clear_message_and_the_bot_keeps_working(world, monkeypatch, caplog):
    env, guild, general, alice, bob, mod = world
    monkeypatch.setattr(env.bot.store, "set_opted_out", _async(failing))
    r = await alice.slash(general, "emotion optout")
    assert r.ephemeral
    assert r.response.content.startswith("The bot's database is unavailable right now")
    assert "try again later" in r.response.content
    acknowledge(env, StoreError)
    [record] = logged_failures(caplog)
    assert record.getMessage() == "command /emotion optout failed"
    assert isinstance(record.exc_info[1], StoreError) and "disk is full" in str(record.exc_info[1])
    assert not await env.bot.store.is_opted_out(alice.id)
    # other commands and tagging still work
    r = await alice.slash(general, "emotion about")
    assert r.response.embeds[0].title == "Emotion Machine"
    assert reactions(await alice.send(general, "happy")) == [(HAPPY, 1)]


async def test_a_store_failure_while_saving_config(world, monkeypatch, caplog):
    env, guild, general, alice, bob, mod = world
    monkeypatch.setattr(env.bot.store, "update_guild_settings", _async(failing))
    r = await mod.slash(general, "emotion-config", server=False)
    assert "database is unavailable" in r.response.content
    acknowledge(env, StoreError)
    assert len(logged_failures(caplog)) == 1
    assert reactions(await alice.send(general, "happy")) == [(HAPPY, 1)]


async def test_a_store_failure_in_forget_me(world, monkeypatch, caplog):
    env, guild, general, alice, bob, mod = world
    msg = await alice.send(general, "happy")
    monkeypatch.setattr(env.bot.store, "forget_user", _async(failing))
    r = await alice.slash(general, "emotion forget-me")
    assert "database is unavailable" in r.response.content
    acknowledge(env, StoreError)
    assert len(logged_failures(caplog)) == 1
    assert await env.bot.store.get_prediction(msg.id) is not None


def _async(fn):
    async def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


async def test_tagging_on_enables_a_channel_while_another_is_only(world):
    env, guild, general, alice, bob, mod = world
    random = guild.create_text_channel("random")
    await mod.slash(general, "emotion-config", channel=general, tagging="only")
    r = await mod.slash(general, "emotion-config", channel=random, tagging="on")
    assert r.response.content.startswith("Settings updated.")
    assert reactions(await alice.send(random, "happy")) == [(HAPPY, 1)]
