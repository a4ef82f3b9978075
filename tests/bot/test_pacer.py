"""Reaction pacing: rates, stale drops, bounded queues, 403/404 logged once."""

from __future__ import annotations

import asyncio
import logging
import time

import discord

from bot.pacer import RateLimiter, ReactionPacer


class _Resp:
    def __init__(self, status):
        self.status, self.reason = status, "x"


async def test_channel_rate_is_respected():
    pacer = ReactionPacer(channel_rate=20.0, global_rate=1000.0, max_age=30)
    times: list[float] = []

    async def act():
        times.append(time.monotonic())

    for _ in range(6):
        pacer.submit(1, act)
    await pacer.close(timeout=5)
    assert len(times) == 6
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.04  # 20/s → 50 ms apart, a little jitter allowed


async def test_channels_drain_in_parallel_under_the_global_budget():
    pacer = ReactionPacer(channel_rate=5.0, global_rate=1000.0, max_age=30)
    done: list[int] = []
    start = time.monotonic()
    for ch in range(10):
        pacer.submit(ch, lambda ch=ch: asyncio.sleep(0, result=done.append(ch)))
    await pacer.close(timeout=5)
    assert sorted(done) == list(range(10))
    assert time.monotonic() - start < 0.5  # one each: no channel waits for another


async def test_global_limit_bounds_total_rate():
    limiter = RateLimiter(50.0, burst=1)
    start = time.monotonic()
    for _ in range(11):
        await limiter.acquire()
    assert time.monotonic() - start >= 0.18  # 10 intervals of 20 ms


async def test_stale_reactions_are_dropped_not_sent():
    now = [100.0]
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=30, clock=lambda: now[0])
    sent = []
    pacer.submit(1, lambda: asyncio.sleep(0, result=sent.append("old")), received=50.0)
    pacer.submit(1, lambda: asyncio.sleep(0, result=sent.append("new")), received=99.0)
    await pacer.close(timeout=2)
    assert sent == ["new"]
    assert pacer.stats.dropped_stale == 1 and pacer.stats.sent == 1


async def test_queue_per_channel_is_bounded():
    pacer = ReactionPacer(channel_rate=1.0, global_rate=1000.0, max_age=30, max_queue=5)
    for _ in range(50):
        pacer.submit(7, lambda: asyncio.sleep(0))
    assert pacer.queued() <= 5
    assert pacer.stats.dropped_overflow >= 44
    await pacer.close(timeout=0.1)
    # Every submission is accounted for: sent, dropped for space, or dropped at close.
    st = pacer.stats
    assert st.sent + st.dropped_overflow + st.dropped_at_close + st.dropped_stale + st.failed == 50
    assert st.dropped_at_close >= 3 and pacer.queued() == 0


async def test_a_request_cut_off_by_close_is_counted():
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=30)
    pacer.submit(1, lambda: asyncio.sleep(5))  # e.g. stuck in discord.py's 429 retries
    pacer.submit(1, lambda: asyncio.sleep(0))
    await asyncio.sleep(0.01)
    await pacer.close(timeout=0.05)
    assert (pacer.stats.dropped_at_close, pacer.stats.sent) == (2, 0)


async def test_forbidden_and_not_found_are_logged_once_per_channel(caplog):
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=30)

    async def forbidden():
        raise discord.Forbidden(_Resp(403), "Missing Permissions")

    async def gone():
        raise discord.NotFound(_Resp(404), "Unknown Message")

    with caplog.at_level(logging.WARNING, logger="bot.pacer"):
        for _ in range(5):
            pacer.submit(1, forbidden)
            pacer.submit(2, gone)
        await pacer.close(timeout=2)
    assert pacer.stats.failed == 10
    assert len([r for r in caplog.records if "missing permission" in r.getMessage()]) == 1
    assert len([r for r in caplog.records if "message gone" in r.getMessage()]) == 1


async def test_an_unexpected_error_does_not_stop_the_channel():
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=30)
    sent = []

    async def boom():
        raise ValueError("x")

    pacer.submit(1, boom)
    pacer.submit(1, lambda: asyncio.sleep(0, result=sent.append(1)))
    await pacer.close(timeout=2)
    assert sent == [1] and pacer.stats.failed == 1


async def test_closed_pacer_refuses_work():
    pacer = ReactionPacer()
    await pacer.close()
    assert pacer.submit(1, lambda: asyncio.sleep(0)) is False


async def test_a_reaction_stuck_in_retries_is_dropped_at_its_deadline():
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=0.2)
    pacer.submit(1, lambda: asyncio.sleep(5))
    await pacer.close(timeout=2)
    assert pacer.stats.dropped_stale == 1 and pacer.stats.sent == 0
