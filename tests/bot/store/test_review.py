"""The /review queue in the store: the bound per server, eviction, expiry, isolation, and every way text leaves."""

from __future__ import annotations

import math
import time

import pytest

from bot.store import Correction, PredictionRow, Store
from bot.store.review import ReviewRow
from tests.bot.store.backends import count, execute, refreshed

DAY = 86_400.0
G1, G2 = 1, 2


@pytest.fixture
async def store(opener):
    s = await opener(flush_interval=0.05)
    yield s
    await s.close()


def row(message_id: int, confidence: float, *, guild: int = G1, author: int = 100, age: float = 0.0,
        text: str | None = None) -> ReviewRow:
    return ReviewRow(guild_id=guild, channel_id=10, message_id=message_id, author_id=author,
                     text=text or f"text {message_id}", label="joy", confidence=confidence, model_version="base",
                     created_at=time.time() - age)


async def waiting(store: Store, guild: int = G1) -> list[int]:
    return [r.message_id for r in await store.review_items(guild)]


class Counting:
    """Counts the store's database calls (reads and write transactions) from now on."""

    def __init__(self, store: Store, monkeypatch) -> None:
        self.calls = 0
        for name in ("_read", "_write"):
            original = getattr(store, name)
            monkeypatch.setattr(store, name, self.wrap(original))

    def wrap(self, original):
        async def counted(*args, **kwargs):
            self.calls += 1
            return await original(*args, **kwargs)
        return counted


async def test_the_least_sure_are_kept_and_the_most_confident_evicted(store: Store):
    for i, confidence in enumerate([0.5, 0.3, 0.9], start=1):
        assert await store.offer_review(row(i, confidence), keep=3)
    assert await waiting(store) == [2, 1, 3]  # least sure first
    assert await store.offer_review(row(4, 0.1), keep=3)  # evicts 3 (0.9)
    assert not await store.offer_review(row(5, 0.7), keep=3)  # surer than all that wait
    assert not await store.offer_review(row(6, 0.5), keep=3)  # a tie with the surest waiting one loses
    assert await waiting(store) == [4, 2, 1]
    [first] = await store.review_items(G1, limit=1)
    assert (first.text, first.label, first.confidence, first.model_version) == ("text 4", "joy", 0.1, "base")


async def test_a_full_queue_refuses_surer_messages_without_touching_the_database(store: Store, monkeypatch):
    for i in range(3):
        await store.offer_review(row(i, 0.2 + i / 10), keep=3)
    counting = Counting(store, monkeypatch)
    for i in range(10, 30):
        assert not await store.offer_review(row(i, 0.8), keep=3)
    assert counting.calls == 0
    assert await store.offer_review(row(99, 0.1), keep=3)
    assert counting.calls == 1  # one write for the one that entered


async def test_expired_rows_are_never_read_and_purged(store: Store):
    await store.offer_review(row(1, 0.2, age=DAY + 60))
    await store.offer_review(row(2, 0.9, age=DAY - 600))
    assert await waiting(store) == [2]  # 1 was too old to enter at all
    await execute(store, "UPDATE review_queue SET created_at = created_at - 3600")  # 2 is now 24 h 50 min old
    assert await waiting(store) == []
    assert await store.delete_expired_reviews(DAY) == 1
    assert await count(store, "review_queue") == 0


async def test_expired_rows_make_room_in_a_full_queue(store: Store, monkeypatch):
    import types

    import bot.store.review as review

    for i in range(3):
        await store.offer_review(row(i, 0.1, age=DAY - 1), keep=3)
    assert not await store.offer_review(row(8, 0.8), keep=3)
    later = time.time() + 2
    monkeypatch.setattr(review, "time", types.SimpleNamespace(time=lambda: later))
    assert await store.offer_review(row(9, 0.8), keep=3)  # the cached bound knew the oldest had expired
    assert await waiting(store) == [9]


async def test_each_server_has_its_own_queue_and_bound(store: Store):
    for i in range(3):
        await store.offer_review(row(i, 0.1), keep=3)
    assert await store.offer_review(row(10, 0.9, guild=G2), keep=3)
    assert await waiting(store, G2) == [10]
    assert await waiting(store, G1) == [0, 1, 2]
    assert not await store.remove_review(G2, 1)  # another server's message: untouched
    assert await store.remove_review(G1, 1)
    assert await waiting(store, G1) == [0, 2]
    assert await store.offer_review(row(11, 0.8), keep=3)  # room again after the removal


async def test_forgetting_a_user_or_deleted_messages_removes_their_rows(store: Store):
    await store.offer_review(row(1, 0.1, author=5))
    await store.offer_review(row(2, 0.2, author=6))
    await store.offer_review(row(3, 0.3, author=6, guild=G2))
    await store.forget_user(6)
    assert await waiting(store) == [1] and await waiting(store, G2) == []
    await store.forget_messages([1])
    assert await waiting(store) == []
    assert await store.offer_review(row(4, 0.9), keep=1)  # the bound followed the deletes


async def test_review_is_off_by_default_and_turning_it_off_empties_the_servers_queue(store: Store):
    assert not (await store.get_guild_settings(G1)).review
    assert (await store.update_guild_settings(G1, review=True)).review
    await store.offer_review(row(1, 0.1))
    await store.offer_review(row(2, 0.1, guild=G2))
    await store.update_guild_settings(G1, threshold=0.6)  # other changes keep it
    assert await waiting(store) == [1]
    assert not (await store.update_guild_settings(G1, review=False)).review
    assert await waiting(store) == [] and await waiting(store, G2) == [2]
    with pytest.raises(ValueError, match="review must be true or false"):
        await store.update_guild_settings(G1, review="yes")


async def test_a_corrected_message_leaves_the_queue_only_when_asked(store: Store):
    await store.offer_review(row(1, 0.1))
    await store.add_correction(Correction(text="text 1", label="joy", guild_id=G1, message_id=1, corrector_id=7))
    await store.record_prediction(PredictionRow(G1, 10, 1, 100, "joy", 0.1))
    assert await waiting(store) == [1]  # the queue is the service's to empty (CorrectingService)


@pytest.mark.parametrize("changes, error", [
    (dict(text="  "), "text is empty"),
    (dict(label=""), "label"),
    (dict(confidence=math.nan), "confidence"),
    (dict(confidence=1.5), "confidence"),
    (dict(guild_id=None), "guild"),
])
async def test_bad_rows_are_refused_and_store_nothing(store: Store, changes, error):
    import dataclasses

    with pytest.raises(ValueError, match=error):
        await store.offer_review(dataclasses.replace(row(1, 0.1), **changes))
    assert await waiting(store) == []


async def test_text_sqlite_cannot_store_is_repaired_and_ids_are_coerced(store: Store):
    assert await store.offer_review(ReviewRow(guild_id="1", channel_id="10", message_id="5", author_id="100",
                                              label="joy", confidence=0.5, model_version=None,
                                              created_at=time.time(), text="broken \ud800 half"))
    [kept] = await store.review_items(G1)
    assert (kept.message_id, kept.guild_id) == (5, 1) and "\ud800" not in kept.text and "half" in kept.text


async def test_another_process_emptying_the_queue_is_seen(store: Store, opener):
    await store.offer_review(row(1, 0.1), keep=1)
    assert not await store.offer_review(row(2, 0.5), keep=1)
    other = await opener()
    await execute(other, "DELETE FROM review_queue")
    await other.close()
    assert await refreshed(store)
    assert await store.offer_review(row(2, 0.5), keep=1)
