"""The bot against a local fake Discord: real discord.py HTTP client and gateway, loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import urllib.parse

import discord
import pytest

from tests.helpers.fake_discord import TOKEN, FakeDiscord, first_of

OTHER_TOKEN = "MTA4NzY1NDMyMTA5ODc2NTQzMw.HzYxWv.ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zy"
HAPPY = "%F0%9F%98%84"  # 😄, as discord.py percent-encodes it in the reaction route
RETRY_AFTER = 0.3


@pytest.fixture
async def make_fake(monkeypatch):
    """``await make_fake(**options)``: a started fake Discord that discord.py talks to; stopped afterwards."""
    servers: list[FakeDiscord] = []

    async def make(**options) -> FakeDiscord:
        server = await FakeDiscord(TOKEN, **options).start()
        server.patch(monkeypatch)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


@pytest.fixture
async def fake(make_fake):
    return await make_fake(reaction_429s=1, retry_after=RETRY_AFTER)


@contextlib.asynccontextmanager
async def started(settings, classifier, *, connect: bool = True):
    """The bot logged in (commands synced) and, with ``connect``, ready on the gateway: ``(bot, gateway task)``."""
    from bot.client import EmotionBot

    bot = EmotionBot(settings, classifier, guild_ready_timeout=0.2)
    task = None
    try:
        await asyncio.wait_for(bot.login(TOKEN), 15)
        if connect:
            task = asyncio.create_task(bot.connect(reconnect=False))
            await first_of(bot.wait_until_ready(), task, 10)
        yield bot, task
    finally:
        await asyncio.wait_for(bot.close(), 10)
        if task is not None:
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)


def debug_logs(caplog) -> None:
    for name in ("discord", "bot", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)


async def test_member_message_is_recorded_and_reacted_to_through_a_429(fake, bot_settings, happy_classifier, caplog):
    debug_logs(caplog)
    async with started(bot_settings, happy_classifier) as (bot, connect):
        conn = fake.current()
        assert conn.compress in ("zlib-stream", "zstd-stream")  # discord.py asked for a compressed stream
        intents = conn.identify["intents"]
        assert intents & (1 << 0) and intents & (1 << 9) and intents & (1 << 15)  # guilds, messages, content
        paths = [(r.method, r.path) for r in fake.requests]
        assert ("GET", "/api/v10/users/@me") in paths
        assert ("PUT", f"/api/v10/applications/{fake.APP_ID}/commands") in paths  # global sync
        assert all(r.authorized for r in fake.requests if r.path.startswith("/api/"))
        channel = bot.get_channel(fake.CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        assert channel.permissions_for(channel.guild.me).add_reactions

        sent = time.monotonic()
        message_id = await fake.push_message("I'm so happy!")
        done = lambda: len(fake.reactions) >= 2 or any(r.status == 204 for r in fake.reactions)  # noqa: E731
        await first_of(fake.wait_for(done, 15), connect, 15)

        want = f"/api/v10/channels/{fake.CHANNEL_ID}/messages/{message_id}/reactions/{HAPPY}/@me"
        assert [(r.method, r.path, r.status) for r in fake.reactions] == [("PUT", want, 429), ("PUT", want, 204)]
        assert fake.reactions[1].time - fake.reactions[0].time >= RETRY_AFTER * 0.9  # it waited retry_after
        assert fake.reactions[0].time - sent < 10
        assert "responded with 429" in caplog.text  # discord.py's own retry, not a pacer failure
        assert bot.pacer.stats.failed == 0

        row = await bot.store.get_prediction(message_id)
        assert row is not None
        assert (row.label, row.guild_id, row.channel_id, row.author_id) == (
            "happiness", fake.GUILD_ID, fake.CHANNEL_ID, fake.MEMBER_ID)
        assert row.probability > 0.5
        unknown = [r for r in fake.requests if r.status == 404]
        assert not unknown, f"the bot called routes the fake does not know: {unknown}"
    assert conn.ws.closed
    assert TOKEN not in caplog.text


async def test_rejected_token_is_a_login_failure_and_never_logged(fake, bot_settings, happy_classifier, caplog):
    from bot.client import EmotionBot

    debug_logs(caplog)
    bot = EmotionBot(bot_settings, happy_classifier)
    try:
        with pytest.raises(discord.LoginFailure):
            await asyncio.wait_for(bot.login(OTHER_TOKEN), 10)
    finally:
        await asyncio.wait_for(bot.close(), 10)
    assert [(r.method, r.path, r.status, r.authorized) for r in fake.requests] == [
        ("GET", "/api/v10/users/@me", 401, False)]
    assert fake.connections == []
    for secret in (OTHER_TOKEN, OTHER_TOKEN.split(".")[-1]):
        assert secret not in caplog.text


# --------------------------------------------------------------------------- pacing what discord.py sends


async def test_discord_py_retries_count_against_the_channels_budget(make_fake, bot_settings, happy_classifier):
    fake = await make_fake(reaction_429s=0, first_put_429=True, limit_headers=False, retry_after=0.01)
    rate, n = 10.0, 5
    settings = dataclasses.replace(bot_settings, channel_reactions_per_s=rate)
    async with started(settings, happy_classifier) as (bot, connect):
        for i in range(n):
            await fake.push_message(f"so happy {i}")
        landed = lambda: sum(r.status == 204 for r in fake.reactions) >= n  # noqa: E731
        await first_of(fake.wait_for(landed, 15), connect, 15)
    assert bot.pacer.stats.retried == n and bot.pacer.stats.sent == n
    firsts = [r.time for r in fake.reactions if r.status == 429]  # each reaction's first PUT, then its retry
    assert len(firsts) == n and len(fake.reactions) == 2 * n
    # every reaction cost two requests, so they start two intervals apart (without the trace: one, 2 × rate PUTs/s)
    gaps = [b - a for a, b in zip(firsts, firsts[1:])]
    assert min(gaps) >= 2 / rate * 0.9, gaps


async def test_a_reaction_that_landed_is_not_counted_dropped_at_close(make_fake, bot_settings, happy_classifier,
                                                                      caplog):
    fake = await make_fake(reaction_429s=0, reaction_reset_after=5.0)  # discord.py then sleeps 5 s in the call
    caplog.set_level(logging.INFO, logger="bot.pacer")
    async with started(bot_settings, happy_classifier) as (bot, connect):
        await fake.push_message("so happy")
        await first_of(fake.wait_for(lambda: any(r.status == 204 for r in fake.reactions), 10), connect, 10)
        await bot.pacer.close(timeout=0.5)
        assert (bot.pacer.stats.sent, bot.pacer.stats.dropped_at_close) == (1, 0)
    assert "dropped" not in caplog.text


# --------------------------------------------------------------------------- start-up: the log, the invite, commands


def puts_to_commands(fake) -> list[tuple[str, int]]:
    """(scope, how many commands) for each command sync the fake received."""
    return [("global" if "/guilds/" not in r.path else r.path.split("/guilds/")[1].split("/")[0], len(r.json))
            for r in fake.requests if r.method == "PUT" and r.path.endswith("/commands")]


async def test_ready_says_who_where_and_how_many_commands(fake, bot_settings, happy_classifier, caplog):
    caplog.set_level(logging.INFO, logger="bot")
    async with started(bot_settings, happy_classifier):
        pass
    synced = len(fake.commands["global"])
    assert synced >= 5
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("logged in as")]
    assert lines == [f"logged in as Emotion Machine in 1 server, {synced} commands synced"]
    assert "invite" not in caplog.text


async def test_a_bot_in_no_server_logs_its_invite_url(make_fake, bot_settings, happy_classifier, caplog):
    fake = await make_fake(guilds=0)
    caplog.set_level(logging.INFO, logger="bot")
    async with started(bot_settings, happy_classifier):
        pass
    assert "logged in as Emotion Machine in 0 servers" in caplog.text
    [line] = [r.getMessage() for r in caplog.records if "invite" in r.getMessage()]
    url = urllib.parse.urlsplit(line.split()[-1])
    query = urllib.parse.parse_qs(url.query)
    assert (url.netloc, url.path) == ("discord.com", "/oauth2/authorize")
    assert query["client_id"] == [str(fake.APP_ID)]
    assert query["scope"] == ["bot applications.commands"]
    granted = discord.Permissions(int(query["permissions"][0]))
    assert granted == discord.Permissions(view_channel=True, send_messages=True, send_messages_in_threads=True,
                                          read_message_history=True, add_reactions=True, attach_files=True)
    assert TOKEN not in caplog.text


async def test_unchanged_commands_are_not_synced_again(fake, bot_settings, happy_classifier, monkeypatch):
    import bot.client

    async with started(bot_settings, happy_classifier, connect=False) as (first, _):
        pass
    assert puts_to_commands(fake) == [("global", first.commands_synced)]
    async with started(bot_settings, happy_classifier, connect=False) as (second, _):
        pass
    assert puts_to_commands(fake) == [("global", first.commands_synced)]  # nothing new: no second sync
    assert second.commands_synced == first.commands_synced
    monkeypatch.setattr(bot.client, "EXTENSIONS", tuple(e for e in bot.client.EXTENSIONS if e != "bot.cogs.stats"))
    async with started(bot_settings, happy_classifier, connect=False) as (third, _):
        pass
    assert third.commands_synced < first.commands_synced
    assert puts_to_commands(fake)[-1] == ("global", third.commands_synced)  # the tree changed: synced


async def test_unsetting_the_guild_id_removes_the_commands_synced_there(fake, bot_settings, happy_classifier):
    in_guild = dataclasses.replace(bot_settings, guild_id=fake.GUILD_ID)
    async with started(in_guild, happy_classifier, connect=False) as (bot, _):
        pass
    n = bot.commands_synced
    assert puts_to_commands(fake) == [(str(fake.GUILD_ID), n)]
    async with started(bot_settings, happy_classifier, connect=False):
        pass
    assert puts_to_commands(fake)[1:] == [("global", n), (str(fake.GUILD_ID), 0)]  # listed once, not twice
    assert fake.commands[str(fake.GUILD_ID)] == [] and len(fake.commands["global"]) == n


async def test_voice_library_warnings_are_silenced(bot_settings, happy_classifier, monkeypatch, caplog):
    from bot.client import EmotionBot

    monkeypatch.setattr(discord.VoiceClient, "warn_nacl", True)  # as on a machine without PyNaCl and davey
    monkeypatch.setattr(discord.VoiceClient, "warn_dave", True)
    caplog.set_level(logging.DEBUG, logger="discord")
    bot = EmotionBot(bot_settings, happy_classifier)
    await bot.close()
    assert "voice will NOT be supported" not in caplog.text
