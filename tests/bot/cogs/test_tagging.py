"""Tagging through simcord: the real discord.py stack, the real worker, a tiny model."""

from __future__ import annotations

import dataclasses
import logging
import time

import discord
import pytest
import simcord
from simcord.enums import MessageType

from tests.helpers import build_guild, reactions, running


async def test_member_message_gets_the_top_emoji_and_a_prediction_row(simcord_env):
    env = simcord_env
    guild, general, alice = build_guild(env, manager=None)
    msg = await alice.send(general, "I'm so happy with my new phone!")
    assert reactions(msg) == [("😄", 1)]
    row = await env.bot.store.get_prediction(msg.id)
    assert (row.label, row.channel_id, row.author_id, row.model_version) == ("happiness", general.id, alice.id, "base")
    assert env.bot.settings.threshold < row.probability < 1.0  # above the threshold: it reacted


# --------------------------------------------------------------------------- helpers / world

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
HAPPY = "😄"


@pytest.fixture
def world(simcord_env):
    return (simcord_env, *build_guild(simcord_env, channels=("general", "random")))


@pytest.fixture
async def thread(world):
    """A thread in #general that the bot has seen created."""
    env, guild, general, random, alice, mod = world
    made = new_thread(env, guild, general, alice)
    await env.settle()
    return made


def reaction_puts(env, message_id=None) -> list[str]:
    return [e.path for e in env.http_requests
            if e.method == "PUT" and "/reactions/" in e.path and (message_id is None or f"/{message_id}/" in e.path)]


async def tagged(env, msg) -> bool:
    """True when the bot recorded a prediction for ``msg`` (whatever happened to its reaction)."""
    return await env.bot.store.get_prediction(msg.id) is not None


async def assert_untouched(env, msg) -> None:
    """No prediction row, no reaction, not even an attempt to react."""
    assert await env.bot.store.get_prediction(msg.id) is None
    assert reaction_puts(env, msg.id) == []
    latest = next((m for m in env.bot.cached_messages if m.id == msg.id), None)
    assert latest is None or latest.reactions == []


def new_thread(env, guild, parent, owner, name="t"):
    return simcord.ChannelHandle(env, guild, env.backend.create_thread(parent.id, name, owner.id))


async def config(actor, where, **options):
    r = await actor.slash(where, "emotion-config", **options)
    assert r.ephemeral and r.response.content.startswith("Settings updated."), r.response.content
    return r


# --------------------------------------------------------------------------- who and what is not tagged

async def test_another_bots_message_is_not_tagged(world):
    env, guild, general, random, alice, mod = world
    other = guild.add_member(env.create_user("otherbot", bot=True))
    msg = await other.send(general, "I am so happy")
    await assert_untouched(env, msg)


async def test_a_webhook_message_is_not_tagged(world):
    env, guild, general, random, alice, mod = world
    hook = guild.create_webhook(general, "CI")
    msg = await hook.send("I am so happy", username="GitHub")
    assert msg.webhook_id is not None
    await assert_untouched(env, msg)


async def test_a_system_message_is_not_tagged(world):
    env, guild, general, random, alice, mod = world
    smsg = guild.create_system_message(general, MessageType.NEW_MEMBER, author=alice)
    await env.settle()
    assert smsg.type is discord.MessageType.new_member
    await assert_untouched(env, smsg)
    assert await env.bot.store.label_counts() == {}


async def test_a_direct_message_is_not_tagged(world):
    env, guild, general, random, alice, mod = world
    dm = await alice.send_dm("I am so happy")
    assert dm.guild is None
    await assert_untouched(env, dm)
    assert await env.bot.store.label_counts() == {}


async def test_an_attachment_without_text_is_not_tagged(world):
    env, guild, general, random, alice, mod = world
    msg = await alice.send(general, "", attachments=[("cat.png", PNG)])
    assert msg.content == "" and msg.attachments
    await assert_untouched(env, msg)


@pytest.mark.parametrize("text", ["   ", "\n\t \n", "\u3000"])
async def test_a_whitespace_only_caption_is_not_tagged(world, text):
    env, guild, general, random, alice, mod = world
    msg = await alice.send(general, text, attachments=[("cat.png", PNG)])
    await assert_untouched(env, msg)


async def send_raw(env, channel, author, content: str) -> discord.Message:
    """Deliver a message simcord's 2,000-character/empty checks would refuse (Nitro allows 4,000)."""
    from simcord.actors import to_discord_message

    message = env.backend.prepare_message(channel.id, author.id, "placeholder")
    message.content = content
    env.backend.commit_message(message)
    env._mark_mutation()
    await env.settle()
    return to_discord_message(env, message)


async def test_a_whitespace_only_message_is_not_tagged(world):
    env, guild, general, random, alice, mod = world
    msg = await send_raw(env, general, alice, " \n\t ")
    assert msg.content.strip() == ""
    await assert_untouched(env, msg)


async def test_an_opted_out_members_messages_are_not_classified(world):
    env, guild, general, random, alice, mod = world
    await alice.slash(general, "emotion optout")
    processed = env.bot.worker.processed
    msg = await alice.send(general, "I am so happy")
    await assert_untouched(env, msg)
    assert env.bot.worker.processed == processed  # not even sent to the model
    assert reactions(await mod.send(general, "me too")) == [(HAPPY, 1)]


# --------------------------------------------------------------------------- what is tagged

async def test_a_4000_character_message_is_tagged(world):
    env, guild, general, random, alice, mod = world
    text = ("i am so happy today " * 200)[:4000]
    assert len(text) == 4000
    msg = await send_raw(env, general, alice, text)
    assert len(msg.content) == 4000
    assert reactions(msg) == [(HAPPY, 1)]
    assert (await env.bot.store.get_prediction(msg.id)).label == "happiness"


@pytest.mark.parametrize("text", ["🎉🎉🎉", "😀 مرحبا بك يا صديقي", "שלום עולם ‏!", "‮reversed‬ 🙂"])
async def test_emoji_and_right_to_left_messages_are_tagged(world, text):
    env, guild, general, random, alice, mod = world
    msg = await alice.send(general, text)
    assert reactions(msg) == [(HAPPY, 1)]
    assert await tagged(env, msg)


async def test_a_reply_is_tagged(world):
    env, guild, general, random, alice, mod = world
    first = await mod.send(general, "hello")
    reply = await alice.send(general, "so happy", reply_to=first)
    assert reply.type is discord.MessageType.reply
    assert reactions(reply) == [(HAPPY, 1)]


async def test_threads_and_forum_posts_are_tagged(world):
    env, guild, general, random, alice, mod = world
    thread = new_thread(env, guild, general, alice)
    forum = guild.create_forum_channel("forum")
    post = new_thread(env, guild, forum, alice, "post")
    await env.settle()
    in_thread = await alice.send(thread, "angry!")
    in_post = await alice.send(post, "happy")
    assert reactions(in_thread) == [(HAPPY, 1)] and reactions(in_post) == [(HAPPY, 1)]
    assert (await env.bot.store.get_prediction(in_thread.id)).channel_id == thread.id
    assert (await env.bot.store.get_prediction(in_post.id)).channel_id == post.id
    assert isinstance(env.bot.get_channel(post.id).parent, discord.ForumChannel)


# --------------------------------------------------------------------------- server settings

async def test_a_channel_turned_off_is_not_tagged_nor_its_threads(world, thread):
    env, guild, general, random, alice, mod = world
    await config(mod, random, channel=general, tagging="off")
    await assert_untouched(env, await alice.send(general, "happy"))
    await assert_untouched(env, await alice.send(thread, "happy"))
    assert reactions(await alice.send(random, "happy")) == [(HAPPY, 1)]
    await config(mod, random, channel=general, tagging="on")
    assert reactions(await alice.send(general, "happy again")) == [(HAPPY, 1)]


async def test_tagging_off_without_a_channel_applies_to_the_current_one(world):
    env, guild, general, random, alice, mod = world
    await config(mod, random, tagging="off")
    await assert_untouched(env, await alice.send(random, "happy"))
    assert reactions(await alice.send(general, "happy")) == [(HAPPY, 1)]


async def test_a_thread_can_be_turned_off_on_its_own(world, thread):
    env, guild, general, random, alice, mod = world
    await config(mod, general, channel=thread, tagging="off")
    await assert_untouched(env, await alice.send(thread, "happy"))
    assert reactions(await alice.send(general, "happy")) == [(HAPPY, 1)]


async def test_only_mode_limits_tagging_to_that_channel_and_its_threads(world):
    env, guild, general, random, alice, mod = world
    thread = new_thread(env, guild, general, alice)
    other_thread = new_thread(env, guild, random, alice, "elsewhere")
    await env.settle()
    r = await config(mod, general, channel=general, tagging="only")
    assert f"Only in: <#{general.id}>" in r.response.content
    assert reactions(await alice.send(general, "happy")) == [(HAPPY, 1)]
    assert reactions(await alice.send(thread, "happy")) == [(HAPPY, 1)]
    await assert_untouched(env, await alice.send(random, "happy"))
    await assert_untouched(env, await alice.send(other_thread, "happy"))
    # a second 'only' channel joins the first
    await config(mod, general, channel=random, tagging="only")
    assert reactions(await alice.send(random, "happy")) == [(HAPPY, 1)]


async def test_only_mode_on_a_forum_tags_its_posts(world):
    env, guild, general, random, alice, mod = world
    forum = guild.create_forum_channel("forum")
    post = new_thread(env, guild, forum, alice, "post")
    await env.settle()
    await config(mod, general, channel=forum, tagging="only")
    assert reactions(await alice.send(post, "happy")) == [(HAPPY, 1)]
    await assert_untouched(env, await alice.send(general, "happy"))


async def test_the_server_switch_stops_all_tagging(world):
    env, guild, general, random, alice, mod = world
    thread = new_thread(env, guild, general, alice)
    await env.settle()
    r = await config(mod, general, server=False)
    assert "Tagging in this server: **off**" in r.response.content
    for channel in (general, random, thread):
        await assert_untouched(env, await alice.send(channel, "happy"))
    await config(mod, general, server=True)
    assert reactions(await alice.send(random, "happy")) == [(HAPPY, 1)]


async def test_settings_are_per_server(world):
    env, guild, general, random, alice, mod = world
    await config(mod, general, server=False)
    other = env.create_guild("Other")
    elsewhere = other.create_text_channel("x")
    bob = other.add_member(env.create_user("bob"))
    assert reactions(await bob.send(elsewhere, "happy")) == [(HAPPY, 1)]


async def test_a_threshold_above_the_probability_records_but_does_not_react(world):
    env, guild, general, random, alice, mod = world
    await config(mod, general, threshold=1.0)
    msg = await alice.send(general, "happy")
    row = await env.bot.store.get_prediction(msg.id)
    assert row is not None and row.label == "happiness" and row.probability < 1.0
    assert reactions(msg) == [] and reaction_puts(env, msg.id) == []
    await config(mod, general, threshold=0.0)
    assert reactions(await alice.send(general, "happy")) == [(HAPPY, 1)]


async def test_reactions_off_records_predictions_without_reacting(world):
    env, guild, general, random, alice, mod = world
    await config(mod, general, reactions=False)
    msg = await alice.send(general, "happy")
    assert reactions(msg) == [] and reaction_puts(env) == []
    assert (await env.bot.store.get_prediction(msg.id)).label == "happiness"
    assert await env.bot.store.label_counts(guild.id) == {"happiness": 1}


@pytest.fixture(scope="module")
def neutral_classifier(tmp_path_factory):
    from model.classifier import Classifier
    from tests.helpers.tiny import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("neutral") / "model", confident="neutral")
    return Classifier.load(folder, device="cpu", version="neutral-v1")


async def test_neutral_is_hidden_by_default_and_shown_with_show_neutral(bot_settings, neutral_classifier):
    from bot.client import EmotionBot

    bot = EmotionBot(bot_settings, neutral_classifier, store_options={"flush_interval": 0.01})
    async with running(bot) as env:
        guild, general, alice, mod = build_guild(env, "G")
        msg = await alice.send(general, "ok fine")
        assert reactions(msg) == [] and reaction_puts(env) == []
        row = await bot.store.get_prediction(msg.id)
        assert (row.label, row.model_version) == ("neutral", "neutral-v1")
        await config(mod, general, show_neutral=True)
        assert reactions(await alice.send(general, "ok fine")) == [("😐", 1)]
        await config(mod, general, show_neutral=False)
        assert reactions(await alice.send(general, "ok")) == []


# --------------------------------------------------------------------------- Discord failures

def pacer_warnings(caplog, needle: str, logger: str = "bot.pacer") -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and needle in r.getMessage()]


async def test_missing_add_reactions_permission_is_logged_once_per_channel(world, caplog):
    env, guild, general, random, alice, mod = world
    caplog.set_level(logging.WARNING, logger="bot.cogs.tagging")
    deny = {guild.me: discord.PermissionOverwrite(add_reactions=False)}
    noreact = guild.create_text_channel("noreact", overwrites=deny)
    noreact2 = guild.create_text_channel("noreact2", overwrites=deny)
    sent = [await alice.send(noreact, f"happy {i}") for i in range(3)]
    sent.append(await alice.send(noreact2, "happy"))
    sent.append(await alice.send(noreact2, "happy"))
    for msg in sent:
        assert await tagged(env, msg)
        assert reactions(msg) == []
    warnings = pacer_warnings(caplog, "missing Add Reactions", "bot.cogs.tagging")
    assert len(warnings) == 2, warnings
    assert str(noreact.id) in warnings[0] and str(noreact2.id) in warnings[1]
    assert env.bot.pacer.stats.failed == 0 and reaction_puts(env) == []  # no request Discord would refuse
    # the other channels are not affected
    assert reactions(await alice.send(general, "happy")) == [(HAPPY, 1)]


async def test_add_reactions_denied_on_an_existing_channel(world, caplog):
    from simcord.backend.models import Overwrite
    from simcord.enums import OverwriteType

    env, guild, general, random, alice, mod = world
    caplog.set_level(logging.WARNING, logger="bot.cogs.tagging")
    assert reactions(await alice.send(general, "happy")) == [(HAPPY, 1)]
    env.backend.set_overwrite(general.id, Overwrite(guild.me.id, OverwriteType.MEMBER,
                                                    deny=discord.Permissions(add_reactions=True).value))
    await env.settle()
    for _ in range(2):
        msg = await alice.send(general, "happy")
        assert await tagged(env, msg) and reactions(msg) == []
    assert len(pacer_warnings(caplog, "missing Add Reactions", "bot.cogs.tagging")) == 1


async def test_a_404_on_the_reaction_is_survived(world, caplog):
    env, guild, general, random, alice, mod = world
    caplog.set_level(logging.WARNING, logger="bot.pacer")
    env.inject_error("PUT", "/channels/*/messages/*/reactions/*", status=404, code=10008, message="Unknown Message")
    gone = await alice.send(general, "happy")
    assert await tagged(env, gone) and reactions(gone) == []
    assert env.bot.pacer.stats.failed == 1
    assert len(pacer_warnings(caplog, "message gone")) == 1
    # the channel's queue keeps working
    assert reactions(await alice.send(general, "happy")) == [(HAPPY, 1)]


async def test_after_a_403_a_channel_gets_no_reaction_requests_until_its_permissions_change(world, caplog):
    from simcord.backend.models import Overwrite
    from simcord.enums import OverwriteType

    env, guild, general, random, alice, mod = world
    caplog.set_level(logging.WARNING, logger="bot.pacer")
    # Discord refuses although the cached permissions allow it (e.g. they changed while the bot was away)
    env.inject_error("PUT", "/channels/*/messages/*/reactions/*", status=403, code=50013,
                     message="Missing Permissions")
    for i in range(4):
        assert await tagged(env, await alice.send(general, f"happy {i}"))
    assert len(reaction_puts(env)) == 1  # the first only: each 403 counts towards Discord's invalid-request ban
    assert len(pacer_warnings(caplog, "not reacting there")) == 1
    assert reactions(await alice.send(random, "happy")) == [(HAPPY, 1)]  # other channels are not affected
    env.backend.set_overwrite(general.id, Overwrite(guild.me.id, OverwriteType.MEMBER,
                                                    allow=discord.Permissions(add_reactions=True).value))
    await env.settle()  # CHANNEL_UPDATE: the bot's permissions there may have changed
    assert reactions(await alice.send(general, "happy again")) == [(HAPPY, 1)]


async def test_a_500_on_the_reaction_is_survived(world):
    env, guild, general, random, alice, mod = world
    env.inject_error("PUT", "/channels/*/messages/*/reactions/*", status=500, code=0, times=None)
    msg = await alice.send(general, "happy")
    assert await tagged(env, msg) and reactions(msg) == []
    assert env.bot.pacer.stats.failed == 1


async def test_a_message_deleted_before_the_reaction_is_survived(world):
    env, guild, general, random, alice, mod = world
    # 404 for the real reason: the message is gone by the time the PUT arrives
    original = env.bot.pacer.submit

    def submit(channel_id, action, **kw):
        for m in general.history():
            env.backend.delete_message(general.id, m.id)
        return original(channel_id, action, **kw)

    env.bot.pacer.submit = submit
    await alice.send(general, "happy")
    await env.settle()  # (its prediction goes with the message: bot.cogs.privacy)
    assert env.bot.pacer.stats.failed == 1 and env.bot.pacer.stats.sent == 0


# --------------------------------------------------------------------------- bursts and pacing

def post_burst(env, channel, author, n: int) -> list[int]:
    """Create ``n`` messages at once (no settle between them), as a busy channel would."""
    ids = [env.backend.create_message(channel.id, author.id, f"so happy {i}").id for i in range(n)]
    env._mark_mutation()
    return ids


async def test_a_burst_is_recorded_and_reactions_are_paced(world):
    env, guild, general, random, alice, mod = world
    n = 8
    ids = post_burst(env, general, alice, n)
    await env.settle()
    for mid in ids:
        assert (await env.bot.store.get_prediction(mid)).label == "happiness"
    stats = env.bot.pacer.stats
    assert stats.sent + stats.dropped_stale + stats.dropped_overflow + stats.failed == n
    assert stats.sent == n  # 8 reactions at 4/s fit well inside 30 s
    assert len(reaction_puts(env)) == n
    assert all(reactions(m) == [(HAPPY, 1)] for m in general.history())
    # paced: about 4 per second in one channel (virtual seconds)
    latencies = sorted(stats.latencies)
    assert latencies[-1] >= (n - 1) / env.bot.settings.channel_reactions_per_s * 0.9
    assert all(b - a >= 0.2 for a, b in zip(latencies, latencies[1:])), latencies


async def test_bursts_in_two_channels_are_paced_independently(world):
    env, guild, general, random, alice, mod = world
    post_burst(env, general, alice, 4)
    post_burst(env, random, alice, 4)
    await env.settle()
    stats = env.bot.pacer.stats
    assert stats.sent == 8
    # two channels drain side by side: the slowest waits ~3 slots, not ~7
    assert max(stats.latencies) < 7 / env.bot.settings.channel_reactions_per_s * 0.9


async def test_stale_reactions_are_dropped_but_predictions_kept(bot_settings, happy_classifier):
    from bot.client import EmotionBot

    settings = dataclasses.replace(bot_settings, reaction_max_age=0.3)
    bot = EmotionBot(settings, happy_classifier, store_options={"flush_interval": 0.01})
    async with running(bot) as env:
        guild, general, alice = build_guild(env, "G", manager=None)
        n = 12
        ids = post_burst(env, general, alice, n)
        await env.settle()
        for mid in ids:
            assert await bot.store.get_prediction(mid) is not None
        stats = bot.pacer.stats
        dropped = stats.dropped_stale + stats.dropped_overflow
        assert stats.sent + dropped + stats.failed == n
        assert stats.failed == 0
        assert 1 <= stats.sent <= 3 and dropped >= n - 3, stats
        assert len(reaction_puts(env)) == stats.sent
        assert all(lat <= 0.3 + 1e-6 for lat in stats.latencies)
        # the queue is empty afterwards and a fresh message is reacted to
        assert bot.pacer.queued() == 0
        assert reactions(await alice.send(general, "happy")) == [(HAPPY, 1)]


# --------------------------------------------------------------------------- retention

async def test_retention_deletes_old_predictions_and_keeps_corrections(world):
    from bot.store import Correction, PredictionRow

    env, guild, general, random, alice, mod = world
    store = env.bot.store
    days = env.bot.settings.retention_days
    now = time.time()

    def row(mid, age_days):
        return PredictionRow(guild_id=guild.id, channel_id=general.id, message_id=mid, author_id=alice.id,
                             label="anger", probability=0.9, model_version="base",
                             created_at=now - age_days * 86_400)

    await store.record_prediction(row(1, days + 1))
    await store.record_prediction(row(2, days + 400))
    await store.record_prediction(row(3, days - 1))
    await store.flush()
    await store.record_prediction(row(4, days + 2))  # still buffered when the pass runs
    await store.add_correction(Correction(text="old but precious", label="anger", guild_id=guild.id,
                                          channel_id=general.id, message_id=1, author_id=alice.id,
                                          corrector_id=mod.id, predicted_label="anger"))
    recent = await alice.send(general, "happy")
    await env.bot.get_cog("Tagging").retention()
    for mid in (1, 2, 4):
        assert await store.get_prediction(mid) is None, mid
    assert await store.get_prediction(3) is not None
    assert await store.get_prediction(recent.id) is not None
    assert await store.corrections_for_training() == [("old but precious", "anger")]


async def test_retention_runs_by_itself_every_six_hours(world):
    from bot.store import PredictionRow

    env, guild, general, random, alice, mod = world
    store = env.bot.store
    assert env.bot.get_cog("Tagging").retention.is_running()
    old = time.time() - (env.bot.settings.retention_days + 1) * 86_400
    await store.record_prediction(PredictionRow(guild_id=guild.id, channel_id=general.id, message_id=7,
                                                author_id=alice.id, label="anger", probability=0.9,
                                                created_at=old))
    await store.flush()
    env.bot.get_cog("Tagging").sync_caches.cancel()  # 720 passes of the 30 s loop would only slow this down
    await env.advance_time(6 * 3600 + 1)
    assert await store.get_prediction(7) is None


async def test_a_failing_retention_pass_is_logged_and_the_loop_keeps_running(world, monkeypatch, caplog):
    from bot.store import StoreError

    env, guild, general, random, alice, mod = world
    caplog.set_level(logging.ERROR, logger="bot.cogs.tagging")

    async def locked(*_args, **_kwargs):
        raise StoreError("Could not delete old predictions (x): the database is locked", path="x", reason="locked")

    monkeypatch.setattr(env.bot.store, "delete_predictions_older_than", locked)
    cog = env.bot.get_cog("Tagging")
    await cog.retention()
    env.bot.get_cog("Tagging").sync_caches.cancel()  # 720 passes of the 30 s loop would only slow this down
    await env.advance_time(6 * 3600 + 1)
    assert [r.getMessage() for r in caplog.records if r.name == "bot.cogs.tagging"] == [
        "retention failed: Could not delete old predictions (x): the database is locked"] * 2
    assert cog.retention.is_running() and not cog.retention.failed()
    assert reactions(await alice.send(general, "happy")) == [(HAPPY, 1)]

# --------------------------------------------------------------------------- races and limits

async def test_opting_out_while_a_message_is_being_classified_leaves_nothing_behind(world):
    env, guild, general, random, alice, mod = world
    store = env.bot.store
    original = env.bot.worker.classify

    async def classify_then_optout(text, key=None):
        prediction = await original(text, key)
        # `/emotion optout` is handled while this message waits for the model (a busy worker queue)
        await store.set_opted_out(alice.id, True)
        await store.forget_user(alice.id)
        return prediction

    env.bot.worker.classify = classify_then_optout
    msg = await alice.send(general, "happy")
    assert await store.get_prediction(msg.id) is None
    assert reaction_puts(env, msg.id) == []


async def test_a_channel_without_add_reactions_is_not_sent_a_403_per_message(world):
    env, guild, general, random, alice, mod = world
    noreact = guild.create_text_channel("noreact",
                                        overwrites={guild.me: discord.PermissionOverwrite(add_reactions=False)})
    sent = [await alice.send(noreact, f"happy {i}") for i in range(4)]
    for msg in sent:
        assert await tagged(env, msg)
    assert len(reaction_puts(env)) <= 1, reaction_puts(env)


async def test_a_flood_beyond_the_backlog_is_shed_with_one_warning(world, caplog):
    import asyncio

    env, guild, general, random, alice, mod = world
    caplog.set_level(logging.WARNING, logger="bot.services.tagging")
    cog = env.bot.get_cog("Tagging")
    service = env.bot.services.tagging
    sent = [await alice.send(general, f"happy {i}") for i in range(5)]
    flood = [next(m for m in env.bot.cached_messages if m.id == s.id) for s in sent]
    for m in flood:  # start over: the flood arrives while the model is stuck
        await env.bot.store.delete_prediction(m.id)
    service.max_backlog = 2
    original = env.bot.worker.classify
    release = asyncio.Event()

    async def stuck(text, key=None):
        await release.wait()
        return await original(text, key)

    env.bot.worker.classify = stuck
    handlers = [asyncio.create_task(cog.on_message(m)) for m in flood]
    await asyncio.sleep(0.05)
    assert (service.backlog, service.shed) == (2, 3)
    release.set()
    await asyncio.gather(*handlers)
    await env.bot.store.flush()
    assert [await tagged(env, m) for m in flood] == [True, True, False, False, False]
    assert service.backlog == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "bot.services.tagging"]
    assert len(warnings) == 1 and "overloaded" in warnings[0] and "skipped 1 new" in warnings[0]
    env.bot.worker.classify = original
    assert await tagged(env, await alice.send(general, "happy again"))  # back to normal


async def test_an_opt_out_written_by_another_process_is_seen_within_30_seconds(world):
    from bot.store import Store

    env, guild, general, random, alice, mod = world
    assert await tagged(env, await alice.send(general, "happy"))
    other = await Store.open(env.bot.settings.db_path)  # e.g. a second bot process on the same file
    try:
        await other.set_opted_out(alice.id, True)
        await other.update_guild_settings(guild.id, reactions=False)
    finally:
        await other.close()
    await env.advance_time(31)
    await assert_untouched(env, await alice.send(general, "happy"))
    assert not (await env.bot.store.get_guild_settings(guild.id)).reactions




# --------------------------------------------------------------------------- corrections racing the pacer

ANGRY = "😠"


def when_queued(pacer, n: int):
    """An event set once ``n`` reactions wait in the pacer (the burst is classified, the queue busy)."""
    import asyncio

    queued = asyncio.Event()
    original = pacer.submit

    def submit(channel_id, action, **kw):
        taken = original(channel_id, action, **kw)
        if pacer.queued() >= n:
            queued.set()
        return taken

    pacer.submit = submit
    return queued


async def test_a_correction_while_the_reaction_is_queued_leaves_only_the_corrected_emoji(world):
    import asyncio

    env, guild, general, random, alice, mod = world
    n = 8
    queued = when_queued(env.bot.pacer, n - 1)  # the first may already be on its way
    ids = post_burst(env, general, alice, n)
    await asyncio.wait_for(queued.wait(), 10)
    target = ids[-1]  # its 😄 would go out about 2 s from now
    r = await mod.slash(general, "correct", message=str(target), emotion="anger")
    assert "anger" in r.response.content, r.response.content
    await env.settle()
    assert [reactions(m) for m in general.history() if m.id == target] == [[(ANGRY, 1)]]
    assert [p.split("/reactions/")[1] for p in reaction_puts(env, target)] == ["%F0%9F%98%A0/@me"]  # no 😄 sent
    assert all(reactions(m) == [(HAPPY, 1)] for m in general.history() if m.id in ids[:-1])
    assert env.bot.pacer.stats.sent == n


async def test_a_correction_while_the_message_is_being_classified_leaves_only_the_corrected_emoji(world):
    from tests.helpers.worlds import hold_the_model

    env, guild, general, random, alice, mod = world
    release = hold_the_model(env)
    msg = await alice.send(general, "hmm")
    assert await env.bot.store.get_prediction(msg.id) is None  # not classified yet
    r = await mod.slash(general, "correct", message=str(msg.id), emotion="anger")
    assert "anger" in r.response.content, r.response.content
    release.set()
    await env.settle()
    assert await env.bot.store.get_prediction(msg.id) is not None  # tagged after all, but its 😄 not sent
    assert reactions(general.history()[-1]) == [(ANGRY, 1)]
    assert env.bot.pacer.stats.cancelled == 1
