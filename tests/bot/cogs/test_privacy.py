"""A message deleted on Discord takes its prediction and its corrections (with the text) along, through simcord."""

from __future__ import annotations

import pytest

from tests.helpers import build_guild, reactions
from tests.helpers.worlds import hold_the_model


@pytest.fixture
def world(simcord_env):
    return (simcord_env, *build_guild(simcord_env, members=("alice", "bob")))


async def corrected(env, channel, author, corrector, text: str):
    """``author``'s message, tagged and corrected by ``corrector``."""
    msg = await author.send(channel, text)
    await corrector.slash(channel, "correct", message=str(msg.id), emotion="anger")
    return msg


async def test_a_deleted_message_loses_its_prediction_and_corrections(world):
    env, guild, general, alice, bob, mod = world
    store = env.bot.store
    gone = await corrected(env, general, alice, bob, "delete me")
    await mod.slash(general, "correct", message=str(gone.id), emotion="sadness")
    kept = await corrected(env, general, alice, bob, "keep me")
    await alice.delete(gone)
    assert await store.get_prediction(gone.id) is None
    assert await store.corrections_for_training() == [("keep me", "anger")]
    assert (await store.stats())["corrections"] == 1 and await store.get_prediction(kept.id) is not None


async def test_a_bulk_delete_removes_every_message_of_it(world):
    env, guild, general, alice, bob, mod = world
    store = env.bot.store
    msgs = [await corrected(env, general, alice, bob, f"purge {i}") for i in range(3)]
    kept = await corrected(env, general, bob, alice, "keep me")
    env.backend.bulk_delete_messages(general.id, [m.id for m in msgs])  # a moderator's purge
    await env.settle()
    assert [await store.get_prediction(m.id) for m in msgs] == [None] * 3
    assert await store.corrections_for_training() == [("keep me", "anger")]
    assert await store.get_prediction(kept.id) is not None


async def test_a_message_deleted_while_it_is_classified_is_never_recorded(world):
    env, guild, general, alice, bob, mod = world
    release = hold_the_model(env)
    msg = await alice.send(general, "happy")
    await alice.delete(msg)
    release.set()
    await env.settle()
    assert await env.bot.store.get_prediction(msg.id) is None
    assert not any(e.method == "PUT" and f"/{msg.id}/reactions/" in e.path for e in env.http_requests)


async def test_deleting_an_untagged_message_is_harmless(world):
    env, guild, general, alice, bob, mod = world
    mine = await env.bot.get_channel(general.id).send("the bot's own words")
    await env.settle()
    await env.bot.get_channel(general.id).get_partial_message(mine.id).delete()
    await env.settle()
    assert reactions(await alice.send(general, "happy")) == [("😄", 1)]
    assert env.errors == []


async def test_a_store_failure_is_logged_and_the_bot_keeps_working(world, monkeypatch, caplog):
    from bot.store import StoreError

    env, guild, general, alice, bob, mod = world
    msg = await alice.send(general, "happy")

    async def failing(message_ids):
        raise StoreError("Could not forget deleted messages (x): the disk is full", path="x", reason="full")

    monkeypatch.setattr(env.bot.store, "forget_messages", failing)
    await alice.delete(msg)
    [record] = [r for r in caplog.records if r.name == "bot.cogs.privacy"]
    assert "could not delete what is stored about 1 deleted messages" in record.getMessage()
    assert "disk is full" in record.getMessage()
    assert reactions(await alice.send(general, "happy")) == [("😄", 1)]
