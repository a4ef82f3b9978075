"""/review's rules: what enters the queue (and what never does), who may review, what leaves it and when."""

from __future__ import annotations

import time

import pytest

from bot.services import Actor, NotAllowed, Refusal
from bot.services import review as review_rules
from bot.services.correcting import Target
from bot.services.guild_config import ConfigChange
from bot.services.tagging import IncomingMessage

GUILD, OTHER, CHANNEL, HIDDEN, AUTHOR = 10, 11, 20, 21, 30
ADMIN = Actor(user_id=1, guild_id=GUILD, can_manage=True)
MOD = Actor(user_id=2, guild_id=GUILD, can_moderate=True)
MEMBER = Actor(user_id=3, guild_id=GUILD)


def message(message_id: int, channel: int = CHANNEL, guild: int = GUILD, author: int = AUTHOR) -> IncomingMessage:
    return IncomingMessage(guild_id=guild, channel_id=channel, message_id=message_id, author_id=author,
                           text=f"text {message_id}")


async def everywhere(_channel_id: int) -> bool:
    return True


async def review_on(services, guild: int = GUILD) -> None:
    await services.guild_config.configure(Actor(1, guild, can_manage=True), guild,
                                          ConfigChange(settings=dict(review=True)))


async def tag_with(services, worker, scores: dict[int, float], **where) -> None:
    for message_id, score in scores.items():
        worker.score = score
        assert await services.tagging.tag(message(message_id, **where)) is not None


async def waiting(services, actor=MOD, readable=everywhere) -> list[int]:
    return [row.message_id for row in await services.review.batch(actor, readable)]


async def test_off_by_default_nothing_is_queued(services, store, worker):
    await tag_with(services, worker, {1: 0.2})
    assert await store.review_items(GUILD) == []
    with pytest.raises(Refusal, match=r"Review is off.*/emotion-config review:True"):
        await services.review.batch(MOD, everywhere)


async def test_with_review_on_the_least_sure_come_first_a_few_at_a_time(services, worker):
    await review_on(services)
    await tag_with(services, worker, {1: 0.6, 2: 0.2, 3: 0.9, 4: 0.4, 5: 0.5, 6: 0.3, 7: 0.7})
    assert await waiting(services) == [2, 6, 4, 5, 1]  # review_rules.BATCH of them
    [first, *_] = await services.review.batch(MOD, everywhere)
    assert (first.text, first.label, first.confidence, first.channel_id) == ("text 2", "happiness", 0.2, CHANNEL)


async def test_the_queue_keeps_only_the_least_sure(services, store, worker, monkeypatch):
    monkeypatch.setattr(review_rules, "KEEP", 2)
    await review_on(services)
    await tag_with(services, worker, {1: 0.5, 2: 0.3, 3: 0.4, 4: 0.9})
    assert [r.message_id for r in await store.review_items(GUILD)] == [2, 3]


async def test_denied_channels_and_opted_out_members_never_enter(services, store, worker):
    await review_on(services)
    await store.update_guild_settings(GUILD, denied_channels=frozenset({HIDDEN}))
    assert await services.tagging.tag(message(1, channel=HIDDEN), always_classify=True) is not None  # the shell
    await store.set_opted_out(AUTHOR + 1, True)
    assert await services.tagging.tag(message(2, author=AUTHOR + 1)) is None
    assert await store.review_items(GUILD) == []


@pytest.mark.parametrize("meanwhile", ["forget", "delete"])
async def test_a_forget_or_a_delete_while_queueing_leaves_nothing(services, store, monkeypatch, meanwhile):
    await review_on(services)
    offer = store.offer_review

    async def offer_then_forget(row, **kwargs):
        waits = await offer(row, **kwargs)
        if meanwhile == "forget":
            await services.privacy.forget(AUTHOR)
        else:
            await services.privacy.messages_deleted([row.message_id])
        return waits

    monkeypatch.setattr(store, "offer_review", offer_then_forget)
    assert await services.tagging.tag(message(1)) is None
    assert await store.review_items(GUILD) == [] and await store.get_prediction(1) is None


async def test_forget_me_optout_and_a_deleted_message_empty_the_queue(services, store, worker):
    await review_on(services)
    await tag_with(services, worker, {1: 0.1, 2: 0.2})
    await tag_with(services, worker, {3: 0.3}, author=AUTHOR + 1)
    await services.privacy.messages_deleted([1])
    assert await waiting(services) == [2, 3]
    await services.privacy.forget(AUTHOR)
    assert await waiting(services) == [3]
    await services.privacy.opt_out(AUTHOR + 1)
    with pytest.raises(Refusal, match="Nothing waits"):
        await services.review.batch(MOD, everywhere)


async def test_a_correction_by_anyone_takes_the_message_out_of_the_queue(services, worker):
    await review_on(services)
    await tag_with(services, worker, {1: 0.1, 2: 0.2})
    target = Target(guild_id=GUILD, channel_id=CHANNEL, message_id=1, author_id=AUTHOR, text="text 1")
    await services.correcting.correct(MEMBER, target, "sadness")
    assert await waiting(services) == [2]


async def test_turning_review_off_deletes_the_servers_queue(services, store, worker):
    await review_on(services)
    await review_on(services, OTHER)
    await tag_with(services, worker, {1: 0.1})
    await tag_with(services, worker, {2: 0.1}, guild=OTHER)
    settings, changed = await services.guild_config.configure(ADMIN, GUILD, ConfigChange(settings=dict(review=False)))
    assert changed and not settings.review
    assert await store.review_items(GUILD) == []
    assert [r.message_id for r in await store.review_items(OTHER)] == [2]


async def test_only_moderators_review_and_only_their_own_servers_queue(services, worker):
    await review_on(services)
    await review_on(services, OTHER)
    await tag_with(services, worker, {1: 0.1})
    await tag_with(services, worker, {2: 0.2}, guild=OTHER)
    for who in (MEMBER, ADMIN):  # Manage Server alone is not Manage Messages
        with pytest.raises(NotAllowed, match="Manage Messages"):
            await services.review.batch(who, everywhere)
    assert await waiting(services, Actor(9, OTHER, can_moderate=True)) == [2]
    with pytest.raises(Refusal, match="only works in a server"):
        await services.review.batch(Actor(9, None, can_moderate=True), everywhere)


async def test_messages_in_channels_the_moderator_cannot_read_are_not_offered(services, worker):
    await review_on(services)
    await tag_with(services, worker, {1: 0.1}, channel=HIDDEN)
    asked = []

    async def not_hidden(channel_id: int) -> bool:
        asked.append(channel_id)
        return channel_id != HIDDEN

    with pytest.raises(Refusal, match="channels you can read"):
        await services.review.batch(MOD, not_hidden)
    await tag_with(services, worker, {2: 0.2, 3: 0.3}, channel=HIDDEN)
    await tag_with(services, worker, {4: 0.4})
    assert await waiting(services, readable=not_hidden) == [4]
    assert sorted(asked) == [CHANNEL, HIDDEN, HIDDEN]  # once per channel and call


async def test_skip_needs_a_moderator_and_gone_drops_a_deleted_message(services, worker):
    await review_on(services)
    await tag_with(services, worker, {1: 0.1, 2: 0.2, 3: 0.3})
    with pytest.raises(NotAllowed):
        await services.review.skip(MEMBER, 1)
    await services.review.skip(MOD, 1)
    await services.review.skip(Actor(9, OTHER, can_moderate=True), 2)  # another server's: nothing happens
    await services.review.gone(GUILD, 3)
    assert await waiting(services) == [2]


async def test_expiry_deletes_before_the_24_hours_are_up(services, store):
    from bot.store.review import ReviewRow

    now = time.time()
    for message_id, age in ((1, review_rules.MAX_AGE - review_rules.PURGE_EVERY + 5), (2, 60)):
        await store.offer_review(ReviewRow(GUILD, CHANNEL, message_id, AUTHOR, "joy", 0.5, None, now - age, "t"))
    assert await services.review.expire() == 1  # the next pass would come after the 24 h
    assert [r.message_id for r in await store.review_items(GUILD)] == [2]


async def test_a_probability_a_hair_above_one_is_queued_not_a_crash(services, store, worker):
    await review_on(services)
    await tag_with(services, worker, {1: 1.0000001})  # float rounding (fp16 on CUDA)
    [row] = await store.review_items(GUILD)
    assert row.confidence == 1.0
