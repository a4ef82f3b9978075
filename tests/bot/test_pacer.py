"""Reaction pacing: rates, stale drops, bounded queues, keys (corrections), 403 blocks, 404 logged once,
discord.py's retries seen through an aiohttp trace."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import discord
import pytest
from aiohttp import web

from bot.pacer import RateLimiter, ReactionPacer, SharedRateLimiter, trace_config


class _Resp:
    def __init__(self, status):
        self.status, self.reason = status, "x"


def forbidden(code: int = 50013):
    async def act():
        raise discord.Forbidden(_Resp(403), {"message": "Missing Permissions", "code": code})
    return act


def recorder(log: list, item):
    return lambda: asyncio.sleep(0, result=log.append(item))


def accounted(stats) -> int:
    """Every submission ends in exactly one counter."""
    return (stats.sent + stats.dropped_stale + stats.dropped_overflow + stats.failed + stats.dropped_at_close
            + stats.dropped_blocked + stats.replaced + stats.cancelled)


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

    async def gone():
        raise discord.NotFound(_Resp(404), "Unknown Message")

    with caplog.at_level(logging.WARNING, logger="bot.pacer"):
        for _ in range(5):
            pacer.submit(1, forbidden())
            pacer.submit(2, gone)
        await pacer.close(timeout=2)
    # one 403: the channel's 4 other reactions are not sent; every 404 is its own message
    assert (pacer.stats.failed, pacer.stats.dropped_blocked) == (1 + 5, 4)
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


def test_the_defaults_leave_a_margin_below_discords_limits():
    from bot.settings import Settings

    pacer = ReactionPacer()
    assert pacer.channel_rate < 4.0 and pacer.global_limit.rate < 50.0  # Discord: 4/s a channel, 50/s a bot
    assert Settings().channel_reactions_per_s < 4.0 and Settings().global_requests_per_s < 45.0


# --------------------------------------------------------------------------- keys: corrections

async def test_a_queued_job_is_replaced_by_one_with_the_same_key_and_keeps_its_turn():
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=30)
    sent: list[str] = []
    pacer.submit(1, recorder(sent, "a-old"), key="a")
    pacer.submit(1, recorder(sent, "b"), key="b")
    assert pacer.submit(1, recorder(sent, "a-new"), key="a")
    await pacer.close(timeout=2)
    assert sent == ["a-new", "b"]
    assert (pacer.stats.sent, pacer.stats.replaced) == (2, 1) and accounted(pacer.stats) == 3


async def test_take_over_runs_the_correction_in_the_queued_reactions_turn():
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=30)
    sent: list[str] = []
    release = asyncio.Event()
    pacer.submit(1, release.wait)  # the channel is busy
    pacer.submit(1, recorder(sent, "😄"), key=42)
    pacer.submit(1, recorder(sent, "next"), key=43)
    assert await pacer.take_over(42, recorder(sent, "😠")) is True
    release.set()
    await pacer.close(timeout=2)
    assert sent == ["😠", "next"] and pacer.stats.sent == 3


async def test_take_over_without_an_action_cancels_the_queued_reaction():
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=30)
    sent: list[str] = []
    release = asyncio.Event()
    pacer.submit(1, release.wait)
    pacer.submit(1, recorder(sent, "😄"), key=42)
    assert await pacer.take_over(42) is True
    assert await pacer.take_over(42) is False  # nothing left to take over
    release.set()
    await pacer.close(timeout=2)
    assert sent == [] and pacer.stats.cancelled == 1 and accounted(pacer.stats) == 2


async def test_take_over_waits_for_the_reaction_being_sent():
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=30)
    events: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def put():
        started.set()
        await release.wait()
        events.append("😄 landed")

    pacer.submit(1, put, key=42)
    await started.wait()
    correction = asyncio.create_task(pacer.take_over(42))
    await asyncio.sleep(0)
    assert not correction.done()  # it must not remove the emoji before the PUT lands
    release.set()
    assert await correction is False
    events.append("correction")
    assert events == ["😄 landed", "correction"]
    await pacer.close()


async def test_a_reaction_submitted_after_a_correction_took_its_message_over_is_refused():
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=30)
    assert await pacer.take_over(42) is False  # corrected while the message was still being classified
    assert pacer.submit(1, lambda: asyncio.sleep(0), key=42) is False
    assert pacer.submit(1, lambda: asyncio.sleep(0), key=43) is True
    await pacer.close(timeout=2)
    assert (pacer.stats.cancelled, pacer.stats.sent) == (1, 1)


# --------------------------------------------------------------------------- 403: stop sending there

async def test_after_a_403_a_channel_gets_no_more_requests_until_unblocked(caplog):
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=30)
    sent: list[int] = []
    with caplog.at_level(logging.WARNING, logger="bot.pacer"):
        pacer.submit(1, forbidden())
        for i in range(3):
            pacer.submit(1, recorder(sent, i))  # queued behind the 403
        pacer.submit(2, recorder(sent, 100))
        await asyncio.sleep(0.05)
        assert pacer.submit(1, recorder(sent, 3)) is False  # new ones are skipped too
        assert sent == [100]
        assert (pacer.stats.failed, pacer.stats.dropped_blocked) == (1, 4)
        pacer.unblock([1])  # e.g. the bot's role or the channel changed
        assert pacer.submit(1, recorder(sent, 4)) is True
        await pacer.close(timeout=2)
    assert sent == [100, 4]
    warnings = [r.getMessage() for r in caplog.records if "missing permission" in r.getMessage()]
    assert len(warnings) == 1 and "not reacting there" in warnings[0]


async def test_a_403_block_expires():
    now = [100.0]
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=30, block_for=600,
                          clock=lambda: now[0])
    pacer.submit(1, forbidden())
    await asyncio.sleep(0.01)
    assert pacer.submit(1, lambda: asyncio.sleep(0)) is False
    now[0] += 601
    assert pacer.submit(1, lambda: asyncio.sleep(0)) is True
    await pacer.close(timeout=2)
    assert pacer.stats.sent == 1


async def test_a_member_who_blocked_the_bot_does_not_block_the_channel():
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=30)
    sent: list[int] = []
    pacer.submit(1, forbidden(code=90001))  # "Reaction blocked": that message's author blocked the bot
    pacer.submit(1, recorder(sent, 1))
    await pacer.close(timeout=2)
    assert sent == [1] and pacer.stats.dropped_blocked == 0


# --------------------------------------------------------------------------- what discord.py does inside a call

@pytest.fixture
async def reaction_server():
    """A local HTTP server: each path's first PUT answers 429, later ones 204 (a reaction that needs a retry)."""
    seen: dict[str, int] = {}
    times: list[float] = []

    async def put(request: web.Request) -> web.Response:
        times.append(time.monotonic())
        seen[request.path] = seen.get(request.path, 0) + 1
        return web.Response(status=429 if seen[request.path] == 1 and "retry" in request.path else 204)

    app = web.Application()
    app.router.add_put("/{name}", put)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", times
    await runner.cleanup()


def reaction(session: aiohttp.ClientSession, url: str, *, then_sleep: float = 0.0):
    """Like discord.py's add_reaction: retry a 429 inside the call; maybe sleep on the bucket after a 2xx."""
    async def act():
        for _ in range(3):
            async with session.put(url) as response:
                if response.status != 429:
                    break
        await asyncio.sleep(then_sleep)
    return act


async def test_a_retry_inside_a_call_is_charged_to_the_channels_budget(reaction_server):
    base, times = reaction_server
    rate = 20.0
    pacer = ReactionPacer(channel_rate=rate, global_rate=1000.0, max_age=30)
    async with aiohttp.ClientSession(trace_configs=[trace_config()]) as session:
        for i in range(5):
            pacer.submit(1, reaction(session, f"{base}/retry{i}"))
        await pacer.close(timeout=5)
    assert len(times) == 10 and pacer.stats.sent == 5 and pacer.stats.retried == 5
    # each reaction took two requests, so reactions start two intervals apart (uncharged: one, 40 requests/s)
    starts = times[0::2]
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 2 / rate * 0.9, [round(t - times[0], 3) for t in times]


async def test_a_reaction_that_landed_is_sent_even_when_close_cuts_the_call_short(reaction_server):
    base, times = reaction_server
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=30)
    async with aiohttp.ClientSession(trace_configs=[trace_config()]) as session:
        pacer.submit(1, reaction(session, f"{base}/ok", then_sleep=5))  # discord.py sleeping on an empty bucket
        pacer.submit(1, lambda: asyncio.sleep(0))
        while not times:
            await asyncio.sleep(0.01)
        await pacer.close(timeout=0.1)
    assert (pacer.stats.sent, pacer.stats.dropped_at_close) == (1, 1)


async def test_a_reaction_that_landed_is_not_counted_stale_at_its_deadline(reaction_server):
    base, times = reaction_server
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=0.2)
    async with aiohttp.ClientSession(trace_configs=[trace_config()]) as session:
        pacer.submit(1, reaction(session, f"{base}/ok", then_sleep=5))
        await pacer.close(timeout=2)
    assert (pacer.stats.sent, pacer.stats.dropped_stale) == (1, 0)


# --------------------------------------------------------------------------- when the budget is short


async def test_a_backlogged_channel_serves_the_newest_first_and_drops_the_stale():
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=30, backlog_after=2.0)
    sent: list[str] = []
    now = time.monotonic()
    pacer.submit(1, recorder(sent, "stale"), received=now - 40)  # never sent
    pacer.submit(1, recorder(sent, "waited"), received=now - 5)  # the channel is behind
    pacer.submit(1, recorder(sent, "fresh"), received=now - 0.1)
    await pacer.close(timeout=2)
    assert sent == ["fresh", "waited"]
    assert pacer.stats.dropped_stale == 1 and accounted(pacer.stats) == 3


async def test_a_full_queue_drops_the_least_sure_first():
    pacer = ReactionPacer(channel_rate=1.0, global_rate=1000.0, max_age=30, max_queue=3)
    sent: list[str] = []
    pacer.submit(7, recorder(sent, "first"), priority=0.9)  # taken by the drain at once
    await asyncio.sleep(0.01)
    for name, p in [("a", 0.9), ("b", 0.3), ("c", 0.8)]:
        assert pacer.submit(7, recorder(sent, name), priority=p)
    assert pacer.submit(7, recorder(sent, "d"), priority=0.6)  # full: b (0.3) makes room
    assert not pacer.submit(7, recorder(sent, "e"), priority=0.1)  # less sure than every queued one
    assert pacer.stats.dropped_overflow == 2
    assert [job.what for job in pacer._queues[7]] == ["reaction"] * 3
    await pacer.close(timeout=0.01)
    assert "b" not in sent and "e" not in sent and accounted(pacer.stats) == 6


async def test_what_was_dropped_is_said_once_a_minute(caplog):
    caplog.set_level(logging.INFO, logger="bot.pacer")
    now = [1000.0]
    pacer = ReactionPacer(channel_rate=1000.0, global_rate=1000.0, max_age=30, clock=lambda: now[0])
    for _ in range(3):
        pacer.submit(1, lambda: asyncio.sleep(0), received=900.0)  # stale
    now[0] += 61
    pacer.submit(1, lambda: asyncio.sleep(0))
    await pacer.close(timeout=2)
    lines = [r.getMessage() for r in caplog.records if "reactions in the last" in r.getMessage()]
    assert len(lines) == 1 and "3 stale" in lines[0], lines


async def test_the_shared_budget_leases_a_few_tokens_at_a_time_and_falls_back_when_it_fails(caplog):
    granted: list[int] = []
    bucket = {"tokens": 3}

    async def lease(n: int) -> int:
        if bucket.get("down"):
            raise OSError("database down")
        got = min(n, bucket["tokens"])
        bucket["tokens"] -= got
        granted.append(got)
        return got

    limiter = SharedRateLimiter(lease, rate=40.0, fallback_share=0.25)
    for _ in range(3):
        await limiter.acquire()
    assert granted == [3]  # one lease of up to a tenth of a second's budget (4) covered three requests
    bucket["tokens"] = 10
    limiter.charge()  # a retry: paid from the next lease
    await limiter.acquire()
    assert granted[-1] == 4 and limiter.tokens == 2  # a lease of a batch (4): 1 owed, 1 spent
    bucket["down"] = True
    limiter.tokens = 0
    start = time.monotonic()
    for _ in range(3):
        await limiter.acquire()  # the local fallback: 10/s, burst 1
    assert time.monotonic() - start >= 0.15
    assert "pacing this process alone" in caplog.text
