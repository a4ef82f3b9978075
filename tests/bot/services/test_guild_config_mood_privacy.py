"""Server settings, mood reports and privacy, as the services decide them."""

from __future__ import annotations

import pytest

from bot.services import Actor, NotAllowed, Refusal
from bot.services.correcting import Target
from bot.services.guild_config import ConfigChange, channel_changes
from bot.services.mood import MoodScope
from bot.services.tagging import IncomingMessage
from bot.store import GuildSettings, StoreError

GUILD = 10
ADMIN = Actor(user_id=1, guild_id=GUILD, can_manage=True)


def test_tagging_modes_edit_the_channel_lists():
    s = GuildSettings()
    assert channel_changes(s, 5, "off") == {"allowed_channels": frozenset(), "denied_channels": frozenset({5})}
    only = GuildSettings(allowed_channels=frozenset({5}))
    assert channel_changes(only, 6, "on")["allowed_channels"] == {5, 6}  # with an 'only' list, 'on' adds to it
    assert channel_changes(GuildSettings(denied_channels=frozenset({5})), 5, "on")["denied_channels"] == set()
    assert channel_changes(only, 5, "all") == {"allowed_channels": frozenset()}


async def test_configure_needs_a_manager_and_says_what_changed(services):
    with pytest.raises(NotAllowed):
        await services.guild_config.configure(Actor(user_id=2, guild_id=GUILD), GUILD, ConfigChange())
    settings, changed = await services.guild_config.configure(ADMIN, GUILD, ConfigChange())
    assert not changed and settings.enabled
    settings, changed = await services.guild_config.configure(
        ADMIN, GUILD, ConfigChange(channel_id=7, tagging="off", settings=dict(threshold=0.8, reactions=None)))
    assert changed and settings.denied_channels == {7} and settings.threshold == 0.8 and settings.reactions
    with pytest.raises(Refusal, match="Say what to do with that channel"):
        await services.guild_config.configure(ADMIN, GUILD, ConfigChange(channel_id=7, channel_named=True))
    with pytest.raises(Refusal):
        await services.guild_config.configure(ADMIN, GUILD, ConfigChange(settings=dict(threshold=2.0)))


async def test_mood_reports_a_scope_over_utc_days(services, store):
    for i, (channel, author) in enumerate([(1, 100), (1, 200), (2, 100)]):
        await services.tagging.tag(IncomingMessage(GUILD, channel, i + 1, author, "hi"))
    await store.flush()
    server = await services.mood.report(MoodScope(GUILD), 7)
    assert len(server.days) == 7 and server.period == "the last 7 days"
    assert sum(n for *_, n in server.rows) == 3
    assert sum(n for *_, n in (await services.mood.report(MoodScope(GUILD, channel_id=1), 1)).rows) == 2
    assert sum(n for *_, n in (await services.mood.report(MoodScope(GUILD, author_id=100))).rows) == 2
    for days in (0, 91, "x"):
        with pytest.raises(Refusal, match="from 1 to 90"):
            await services.mood.report(MoodScope(GUILD), days)
    assert (await services.mood.chart(server, "t")).startswith(b"\x89PNG")


async def test_opt_out_stops_tagging_even_when_forgetting_fails(services, store, monkeypatch):
    await services.tagging.tag(IncomingMessage(GUILD, 1, 1, 100, "hi"))

    async def broken(user_id):
        raise StoreError("Could not forget (bot.db): the disk is full.", reason="full")

    monkeypatch.setattr(store, "forget_user", broken)
    with pytest.raises(Refusal, match="You are opted out"):
        await services.privacy.opt_out(100)
    assert await store.is_opted_out(100)
    monkeypatch.undo()
    assert (await services.privacy.forget(100)).total == 1
    await services.privacy.opt_in(100)
    assert not await store.is_opted_out(100)


async def test_a_deleted_message_takes_its_prediction_and_corrections_along(services, store):
    for i in (1, 2, 3):
        await services.tagging.tag(IncomingMessage(GUILD, 1, i, 100, f"text {i}"))
    actor = Actor(user_id=200, guild_id=GUILD)
    for i in (1, 2, 3):
        await services.correcting.correct(actor, Target(GUILD, 1, i, 100, f"text {i}"), "sadness")
    assert (await services.privacy.messages_deleted([1, 2])).removed == {"corrections": 2, "predictions": 2}
    assert await store.corrections_for_training() == [("text 3", "sadness")]
    assert await store.get_prediction(1) is None and await store.get_prediction(3) is not None
