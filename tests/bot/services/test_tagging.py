"""The tagging rules, once: switches, opt-outs (also while classifying), threshold and neutral, shedding."""

from __future__ import annotations

import asyncio

from bot.services.tagging import IncomingMessage

GUILD, CHANNEL, THREAD, AUTHOR = 10, 20, 21, 30


def message(message_id: int = 1, channel: int = CHANNEL, parent: int | None = None, text: str = "so happy"):
    return IncomingMessage(guild_id=GUILD, channel_id=channel, message_id=message_id, author_id=AUTHOR, text=text,
                           parent_id=parent)


async def test_a_message_is_classified_recorded_and_gets_its_emoji(services, store):
    tagged = await services.tagging.tag(message())
    assert tagged.prediction.label == "happiness" and tagged.emoji == "😄"
    row = await store.get_prediction(1)
    assert (row.guild_id, row.channel_id, row.author_id, row.label, row.model_version) == (
        GUILD, CHANNEL, AUTHOR, "happiness", "base")


async def test_server_and_channel_switches_and_opt_outs_stop_it(services, store, worker):
    await store.update_guild_settings(GUILD, denied_channels=frozenset({CHANNEL}))
    assert await services.tagging.tag(message(1)) is None
    assert await services.tagging.tag(message(2, channel=THREAD, parent=CHANNEL)) is None  # a thread of it
    assert await services.tagging.tag(message(3, channel=99)) is not None
    await store.update_guild_settings(GUILD, enabled=False)
    assert await services.tagging.tag(message(4, channel=99)) is None
    # the shell classifies whatever the switches say, but never an opted-out author
    assert await services.tagging.tag(message(5, channel=CHANNEL), always_classify=True) is not None
    await store.set_opted_out(AUTHOR, True)
    assert await services.tagging.tag(message(6, channel=99), always_classify=True) is None
    assert [await store.get_prediction(i) is not None for i in range(1, 7)] == [False, False, True, False, True, False]
    assert len(worker.texts) == 2  # nothing was even classified for the others


async def test_an_opt_out_while_the_model_is_busy_wins(services, store, worker):
    async def opt_out():
        await store.set_opted_out(AUTHOR, True)

    worker.before_answer = opt_out
    assert await services.tagging.tag(message()) is None
    assert await store.get_prediction(1) is None


async def test_forget_me_while_the_model_is_busy_drops_the_result(services, store, worker):
    forgotten = []

    async def forget():
        forgotten.append(await services.privacy.forget(AUTHOR))

    worker.before_answer = forget
    assert await services.tagging.tag(message(1)) is None
    assert forgotten[0].total == 0 and await store.get_prediction(1) is None
    worker.before_answer = None  # a message after the forget is tagged again
    assert await services.tagging.tag(message(2)) is not None and await store.get_prediction(2) is not None


async def test_forgetting_someone_else_or_another_message_keeps_the_result(services, store, worker):
    async def forget_others():
        await services.privacy.forget(AUTHOR + 1)
        await services.privacy.messages_deleted([2])

    worker.before_answer = forget_others
    assert await services.tagging.tag(message(1)) is not None and await store.get_prediction(1) is not None


async def test_a_message_deleted_while_the_model_is_busy_is_not_recorded(services, store, worker):
    async def delete():
        await services.privacy.messages_deleted([1])

    worker.before_answer = delete
    assert await services.tagging.tag(message(1)) is None
    assert await store.get_prediction(1) is None


async def test_a_forget_while_the_prediction_is_being_recorded_removes_it(services, store, monkeypatch):
    record = store.record_prediction

    async def slow_record(row):  # a store whose recording yields to the loop before it buffers the row
        await services.privacy.forget(AUTHOR)
        await record(row)

    monkeypatch.setattr(store, "record_prediction", slow_record)
    assert await services.tagging.tag(message(1)) is None
    await store.flush()
    assert await store.get_prediction(1) is None


async def test_threshold_neutral_and_reactions_decide_the_emoji_but_the_prediction_is_kept(services, store, worker):
    worker.score = 0.4
    assert (await services.tagging.tag(message(1))).emoji is None  # below the 0.5 default threshold
    worker.label, worker.score = "neutral", 0.9
    assert (await services.tagging.tag(message(2))).emoji is None
    await store.update_guild_settings(GUILD, show_neutral=True)
    assert (await services.tagging.tag(message(3))).emoji == "😐"
    await store.update_guild_settings(GUILD, reactions=False)
    assert (await services.tagging.tag(message(4))).emoji is None
    assert all([await store.get_prediction(i) for i in (1, 2, 3, 4)])


async def test_past_the_backlog_new_messages_are_shed(services, worker):
    release = asyncio.Event()

    async def stuck():
        await release.wait()

    worker.before_answer = stuck
    services.tagging.max_backlog = 2
    waiting = [asyncio.create_task(services.tagging.tag(message(i))) for i in range(4)]
    await asyncio.sleep(0.01)
    assert (services.tagging.backlog, services.tagging.shed) == (2, 2)
    release.set()
    results = await asyncio.gather(*waiting)
    assert [r is not None for r in results] == [True, True, False, False] and services.tagging.backlog == 0


async def test_a_message_that_only_quotes_someone_else_is_not_tagged(services, store, worker):
    assert await services.tagging.tag(message(1, text="> you are all terrible\n>>> and so is this")) is None
    assert await store.get_prediction(1) is None and worker.texts == []
    tagged = await services.tagging.tag(message(2, text="> you are all terrible\nso happy"))
    assert tagged is not None and await store.get_prediction(2) is not None
