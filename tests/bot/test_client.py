"""The bot against a local fake Discord: real discord.py HTTP client and gateway, loopback only."""

from __future__ import annotations

import asyncio
import logging
import time

import discord
import pytest

from tests.helpers.fake_discord import TOKEN, FakeDiscord, first_of

OTHER_TOKEN = "MTA4NzY1NDMyMTA5ODc2NTQzMw.HzYxWv.ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zy"
HAPPY = "%F0%9F%98%84"  # 😄, as discord.py percent-encodes it in the reaction route
RETRY_AFTER = 0.3


@pytest.fixture
async def fake(monkeypatch):
    server = await FakeDiscord(TOKEN, reaction_429s=1, retry_after=RETRY_AFTER).start()
    server.patch(monkeypatch)
    try:
        yield server
    finally:
        await server.stop()


async def test_member_message_is_recorded_and_reacted_to_through_a_429(fake, bot_settings, happy_classifier, caplog):
    from bot.client import EmotionBot

    for name in ("discord", "bot", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)
    bot = EmotionBot(bot_settings, happy_classifier, guild_ready_timeout=0.2)
    connect = None
    try:
        await asyncio.wait_for(bot.login(TOKEN), 15)
        connect = asyncio.create_task(bot.connect(reconnect=False))
        await first_of(bot.wait_until_ready(), connect, 10)

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
    finally:
        await asyncio.wait_for(bot.close(), 10)
        if connect is not None:
            await asyncio.wait_for(asyncio.gather(connect, return_exceptions=True), 10)
    assert conn.ws.closed
    assert TOKEN not in caplog.text


async def test_rejected_token_is_a_login_failure_and_never_logged(fake, bot_settings, happy_classifier, caplog):
    from bot.client import EmotionBot

    for name in ("discord", "bot", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)
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
