"""/mood and /mood-me through simcord: the real discord.py stack, the real store, a real PNG."""

from __future__ import annotations

import asyncio
import itertools
import struct
import time

import discord
import pytest
import simcord

from bot.charts import HEIGHT_PX, WIDTH_PX
from bot.store import PredictionRow, StoreError
from tests.helpers import build_guild

DAY = 86_400
_ids = itertools.count(10**15)


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


async def record(env, guild, channel, author, label: str, *, days_ago: float = 0.0, n: int = 1) -> None:
    """Store ``n`` predictions directly, as if messages had been tagged ``days_ago``."""
    for _ in range(n):
        await env.bot.store.record_prediction(PredictionRow(
            guild_id=guild.id, channel_id=channel.id, message_id=next(_ids), author_id=author.id,
            label=label, probability=0.9, model_version="base", created_at=time.time() - days_ago * DAY))
    await env.bot.store.flush()


def chart_of(env, result) -> bytes:
    (att,) = result.response.attachments
    assert (att.filename, att.content_type) == ("mood.png", "image/png")
    png = env.backend.cdn.get(att.url)
    assert png_size(png) == (WIDTH_PX, HEIGHT_PX)
    return png


def callback_of(env) -> dict:
    return [e for e in env.http_requests if e.path.endswith("/callback")][-1].json


@pytest.fixture
def world(simcord_env):
    return (simcord_env, *build_guild(simcord_env, channels=("general", "random"), members=("alice", "bob"),
                                      manager=None))


async def test_mood_charts_the_whole_server_publicly(world):
    env, guild, general, random, alice, bob = world
    await alice.send(general, "What a lovely day!")  # the happy model tags it 'happiness'
    await bob.send(random, "Great news everyone")
    await record(env, guild, general, bob, "sadness", days_ago=1, n=2)
    await record(env, guild, random, alice, "anger", days_ago=3)
    await record(env, guild, general, alice, "fear", days_ago=40, n=5)  # outside the default 14 days

    r = await alice.slash(general, "mood")
    assert callback_of(env) == {"type": 5}  # deferred ("thinking…"), public
    assert not r.deferred and not r.ephemeral
    chart_of(env, r)
    content = r.response.content
    assert "Mood in **Main**, the last 14 days" in content
    assert "5 tagged messages" in content
    for part in ("😄 happiness 2 (40%)", "😢 sadness 2 (40%)", "😠 anger 1 (20%)"):
        assert part in content
    assert "fear" not in content
    assert [m.content for m in general.history(viewer=bob)][-1] == content  # everyone sees it

    r = await alice.slash(general, "mood", days=60)
    assert "😨 fear 5" in r.response.content and "10 tagged messages" in r.response.content


async def test_mood_of_one_channel_counts_only_that_channel(world):
    env, guild, general, random, alice, bob = world
    await alice.send(general, "yay")
    await record(env, guild, general, bob, "love", days_ago=2)
    await record(env, guild, random, bob, "anger", days_ago=2, n=3)

    r = await bob.slash(general, "mood", channel=random, days=7)
    assert f"Mood in <#{random.id}>, the last 7 days" in r.response.content
    assert "3 tagged messages: 😠 anger 3 (100%)" in r.response.content
    chart_of(env, r)

    r = await bob.slash(random, "mood", channel=general, days=1)  # today only: not the love of 2 days ago
    assert "today" in r.response.content
    assert "1 tagged message: 😄 happiness 1 (100%)" in r.response.content


async def test_mood_me_is_ephemeral_and_counts_only_the_invokers_messages(world):
    env, guild, general, random, alice, bob = world
    await alice.send(general, "so happy")
    await alice.send(random, "happy again")
    await bob.send(general, "me too")
    await record(env, guild, general, alice, "desire", days_ago=5)
    await record(env, guild, general, bob, "anger", n=4)

    r = await alice.slash(general, "mood-me")
    assert callback_of(env) == {"type": 5, "data": {"flags": 64}}
    assert r.ephemeral
    chart_of(env, r)
    content = r.response.content
    assert "3 tagged messages" in content
    assert "😄 happiness 2 (67%)" in content and "😍 desire 1 (33%)" in content
    assert "anger" not in content
    assert all(m.content != content for m in general.history(viewer=bob))  # only alice sees it

    r = await bob.slash(general, "mood-me", days=1)
    assert "5 tagged messages" in r.response.content and "😠 anger 4 (80%)" in r.response.content


async def test_a_channel_without_data_says_so(world):
    env, guild, general, random, alice, bob = world
    quiet = guild.create_text_channel("quiet")
    await record(env, guild, general, alice, "happiness", n=2)
    await record(env, guild, quiet, alice, "sadness", days_ago=30)  # too old for 14 days

    r = await alice.slash(general, "mood", channel=quiet)
    assert f"No tagged messages in <#{quiet.id}> in the last 14 days." in r.response.content
    chart_of(env, r)  # the chart says so too

    r = await bob.slash(general, "mood-me")
    assert r.ephemeral and "None of your messages in this server were tagged" in r.response.content


async def test_days_outside_1_to_90_are_refused_by_discord(world):
    env, guild, general, random, alice, bob = world
    for days in (0, 91):
        with pytest.raises(simcord.OptionError):
            await alice.slash(general, "mood", days=days)
        with pytest.raises(simcord.OptionError):
            await alice.slash(general, "mood-me", days=days)
    assert env.bot.tree.get_command("mood").guild_only
    assert env.bot.tree.get_command("mood-me").guild_only


async def test_a_channel_the_member_cannot_see_is_refused(world, monkeypatch):
    env, guild, general, random, alice, bob = world
    mods = guild.create_role("Mods", permissions=discord.Permissions(manage_guild=True))
    mod = guild.add_member(env.create_user("mod"), roles=[mods])
    secret = guild.create_text_channel("secret", overwrites={
        guild.default_role: discord.PermissionOverwrite(view_channel=False),
        mods: discord.PermissionOverwrite(view_channel=True),
        guild.me: discord.PermissionOverwrite(view_channel=True)})
    await record(env, guild, secret, mod, "anger", n=2)

    # A real client never offers it; simulate a crafted request naming it anyway.
    monkeypatch.setattr(simcord.interactions, "channel_accessible", lambda *args: True)
    r = await alice.slash(general, "mood", channel=secret)
    assert r.ephemeral and "can't see that channel" in r.response.content
    assert "anger" not in r.response.content
    monkeypatch.undo()

    # A mod may look, but a private channel's mood shown elsewhere stays between them and the bot...
    r = await mod.slash(general, "mood", channel=secret)
    assert r.ephemeral and "😠 anger 2" in r.response.content
    # ...while asked inside the channel itself, everyone there may see it.
    r = await mod.slash(secret, "mood", channel=secret)
    assert not r.ephemeral and "😠 anger 2" in r.response.content


async def test_store_errors_go_to_the_shared_error_handler(world, monkeypatch, caplog):
    env, guild, general, random, alice, bob = world

    async def broken(**kwargs):
        raise StoreError("Could not count emotions (bot.db): the disk is full.", reason="full")

    monkeypatch.setattr(env.bot.store, "emotion_counts", broken)
    r = await alice.slash(general, "mood-me")
    assert r.ephemeral and "database is unavailable" in r.response.content
    assert any(rec.exc_info and rec.exc_info[0] is StoreError for rec in caplog.records)
    # /mood answers publicly, but its error is only for the member who asked.
    r = await alice.slash(general, "mood")
    assert r.ephemeral and "database is unavailable" in r.response.content
    assert callback_of(env)["data"]["flags"] & 64  # answered directly, privately: no public "thinking…"


class _Response:
    def __init__(self, events: list) -> None:
        self.events = events

    async def defer(self, *, thinking: bool, ephemeral: bool) -> None:
        self.events.append(("defer", ephemeral))


class _Interaction:
    def __init__(self) -> None:
        self.events: list = []
        self.response = _Response(self.events)


@pytest.mark.parametrize("slow", [False, True])
async def test_the_mood_query_runs_before_the_defer_unless_it_is_slow(monkeypatch, slow):
    # Plain asyncio (simcord's clock does not move while a query runs): a query that
    # takes longer than QUERY_BEFORE_DEFER must not make Discord's 3-second deadline slip.
    import bot.cogs.stats as stats

    monkeypatch.setattr(stats, "QUERY_BEFORE_DEFER", 0.05)
    interaction = _Interaction()

    async def query():
        await asyncio.sleep(0.2 if slow else 0)
        interaction.events.append(("rows", None))
        return ["rows"]

    assert await stats.query_then_defer(interaction, query(), ephemeral=True) == ["rows"]
    expected = [("defer", True), ("rows", None)] if slow else [("rows", None), ("defer", True)]
    assert interaction.events == expected


async def test_a_failing_mood_query_is_not_deferred():
    import bot.cogs.stats as stats

    interaction = _Interaction()

    async def query():
        raise StoreError("Could not count emotions (bot.db): the disk is full.", reason="full")

    with pytest.raises(StoreError):
        await stats.query_then_defer(interaction, query(), ephemeral=False)
    assert interaction.events == []  # the error handler can still answer privately


async def test_mood_of_a_thread(world):
    env, guild, general, random, alice, bob = world
    thread = simcord.ChannelHandle(env, guild, env.backend.create_thread(general.id, "t", alice.id))
    await env.settle()
    await alice.send(thread, "love this thread")
    await alice.send(general, "and this channel")

    r = await bob.slash(general, "mood", channel=thread)
    assert not r.ephemeral and f"Mood in <#{thread.id}>" in r.response.content
    assert "1 tagged message: 😄 happiness 1 (100%)" in r.response.content
    chart_of(env, r)
