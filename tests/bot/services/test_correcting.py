"""Who may correct what, and what a correction stores."""

from __future__ import annotations

import pytest

from bot.services import Actor, Refusal
from bot.services.correcting import Target
from bot.services.tagging import IncomingMessage

GUILD, CHANNEL, AUTHOR, READER = 10, 20, 30, 40
MEMBER = Actor(user_id=READER, guild_id=GUILD)


def target(**changes) -> Target:
    values = dict(guild_id=GUILD, channel_id=CHANNEL, message_id=1, author_id=AUTHOR, text="so sad today")
    return Target(**{**values, **changes})


async def test_a_correction_of_a_tagged_message_is_stored_with_what_was_shown(services, store):
    await services.tagging.tag(IncomingMessage(GUILD, CHANNEL, 1, AUTHOR, "so sad today"))
    outcome = await services.correcting.correct(MEMBER, target(), "SADNESS", count=True)
    assert (outcome.label, outcome.previous, outcome.confirmed, outcome.reactions, outcome.total) == (
        "sadness", "happiness", False, True, 1)
    assert await store.corrections_for_training() == [("so sad today", "sadness")]
    again = await services.correcting.correct(MEMBER, target(), "sadness")
    assert again.previous == "happiness" and again.total is None  # counting is asked for, not free


@pytest.mark.parametrize("changes, actor, why", [
    (dict(own=True), MEMBER, "one of my own messages"),
    (dict(by_bot=True), MEMBER, "written by members"),
    (dict(text="   "), MEMBER, "no text to learn from"),
    (dict(actor_can_read=False), MEMBER, "channels you can read"),
    ({}, Actor(user_id=READER, guild_id=GUILD + 1), "in another server"),
])
async def test_refusals_store_nothing(services, store, changes, actor, why):
    with pytest.raises(Refusal, match=why):
        await services.correcting.correct(actor, target(**changes), "sadness")
    assert await store.count_corrections() == 0


async def test_unknown_labels_and_opted_out_authors_are_refused(services, store):
    with pytest.raises(Refusal, match="not an emotion this model knows") as refused:
        await services.correcting.correct(MEMBER, target(), "hangry")
    assert "😢 sadness" in str(refused.value)
    await store.set_opted_out(AUTHOR, True)
    with pytest.raises(Refusal, match="opted out"):
        await services.correcting.correct(MEMBER, target(), "sadness")
    assert await store.count_corrections() == 0


async def test_a_prediction_of_another_server_is_not_shown_as_the_previous_tag(services):
    await services.tagging.tag(IncomingMessage(GUILD + 1, CHANNEL, 1, AUTHOR, "so sad today"))
    outcome = await services.correcting.correct(MEMBER, target(), "sadness")
    assert outcome.previous is None
    assert await services.correcting.current_label(1, GUILD) is None
    assert await services.correcting.channel_of(1, GUILD + 1) == CHANNEL


@pytest.mark.parametrize("meanwhile", ["forget", "delete"])
async def test_a_correction_racing_a_forget_or_a_delete_stores_nothing(services, store, monkeypatch, meanwhile):
    add = store.add_correction

    async def add_after(correction):  # the author's /emotion forget-me (or the delete) is handled first
        if meanwhile == "forget":
            await services.privacy.forget(AUTHOR)
        else:
            await services.privacy.messages_deleted([1])
        await add(correction)

    monkeypatch.setattr(store, "add_correction", add_after)
    with pytest.raises(Refusal, match="stored nothing"):
        await services.correcting.correct(MEMBER, target(), "sadness")
    assert await store.count_corrections() == 0
