"""Two processes of one bot sharing PostgreSQL: a deploy in one is served by the other, one training at a time
across them, and one REST budget for both."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.pacer import SharedRateLimiter
from bot.services import Actor, Refusal, Serving
from bot.services.retraining import RetrainingService
from bot.store import Correction, open_store
from model.registry import Registry
from tests.bot.services.conftest import FakeWorker
from tests.helpers.tiny import build_tiny_model

OPERATOR = Actor.operator()


@pytest.fixture
async def two_stores(pg_url):
    a, b = await open_store(pg_url), await open_store(pg_url)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_a_version_deployed_in_one_process_is_served_by_the_other_within_seconds(settings, two_stores):
    registry = Registry(settings.models_dir)  # the shared models folder
    for label in ("sadness", "anger"):
        _, folder = registry.allocate()
        build_tiny_model(folder, confident=label)
        registry.set_current(registry.commit(folder, {"base": "tiny", "parent": None}).name)
    here, there = FakeWorker(), FakeWorker()
    deploying = RetrainingService(settings, two_stores[0], Serving(here))
    following = RetrainingService(settings, two_stores[1], Serving(there))
    await deploying.listen()
    await following.listen()

    started = time.monotonic()
    assert (await deploying.rollback(OPERATOR, "v1")).name == "v1"
    while there.classifier.version != "v1":
        assert time.monotonic() - started < 5, "the other process never swapped"
        await asyncio.sleep(0.05)
    assert here.classifier.version == "v1"
    assert await following.follow(None) is False  # already serving it: nothing to do


async def test_one_training_at_a_time_across_the_processes(settings, two_stores):
    a, b = two_stores
    await a.add_examples([Correction(f"text {i}", "joy", source="import") for i in range(5)])
    first = RetrainingService(settings, a, None)
    second = RetrainingService(settings, b, None)
    run = await first.prepare(OPERATOR)
    assert run.lock is not None
    with pytest.raises(Refusal, match="Another process of this bot is training"):
        await second.prepare(OPERATOR)
    await run.release()  # what finish() does when the run ends
    other = await second.prepare(OPERATOR)
    assert other.lock is not None
    await other.release()


async def test_a_second_run_prepared_in_the_same_process_waits_and_an_abandoned_one_lets_go(settings, two_stores,
                                                                                          monkeypatch):
    import bot.services.retraining as retraining

    a, _ = two_stores
    await a.add_examples([Correction(f"text {i}", "joy", source="import") for i in range(5)])
    service = RetrainingService(settings, a, None)
    first = await service.prepare(OPERATOR)
    with pytest.raises(Refusal, match="already running"):
        await service.prepare(OPERATOR)  # the first is about to start: its lock is not taken from it
    assert first.lock is not None
    monkeypatch.setattr(retraining, "ABANDONED_AFTER", 0.0)  # its front end never started it
    second = await service.prepare(OPERATOR)
    assert first.lock is None and second.lock is not None
    await second.release()


async def test_both_processes_together_stay_within_the_bot_wide_budget(two_stores):
    rate = 20.0
    limiters = [SharedRateLimiter(lambda n, s=s: s.lease_requests("test", rate, rate, n), rate) for s in two_stores]
    sent = [0, 0]

    async def spend(i: int, until: float) -> None:
        while time.monotonic() < until:
            await limiters[i].acquire()
            sent[i] += 1

    until = time.monotonic() + 1.5
    await asyncio.gather(spend(0, until), spend(1, until))
    # the burst (20) plus 1.5 s at 20/s, plus one lease (2) in flight per process at the end
    assert sum(sent) <= rate + 1.5 * rate + 4, sent
    assert min(sent) > 5  # both got their share


async def test_after_a_lost_listener_every_line_is_checked_again(settings, two_stores, monkeypatch):
    """Announcements sent while the listening connection was down are lost: reconnecting re-reads every line."""
    store = two_stores[1]
    service = RetrainingService(settings, store, Serving(FakeWorker()))
    await service.listen()
    checked = asyncio.Event()

    async def follow_all() -> None:
        checked.set()

    monkeypatch.setattr(service, "follow_all", follow_all)
    await store._listener.close()  # the connection drops (a server restart, a network cut)
    await store.refresh_if_changed()  # the cache loop notices, reconnects, and says what may have been missed
    await asyncio.wait_for(checked.wait(), 5)
