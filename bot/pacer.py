"""Paces reaction requests to what Discord allows, dropping the ones that went stale.

Discord takes about 4 reactions a second in one channel and 50 requests a second from a
bot. discord.py would queue everything behind its rate limiter forever; here each channel
has a short bounded queue drained at its own rate, all channels share one global budget,
and a reaction whose message arrived more than ``max_age`` seconds ago is dropped (its
prediction is already stored). The defaults stay below Discord's limits, and every retry
discord.py makes on its own (after a 429) is charged to the same budgets: the pacer sees
them through an aiohttp trace (:func:`trace_config`).

A job may carry a key (the message id): a correction replaces or cancels the message's
queued reaction (:meth:`ReactionPacer.take_over`), so an old emoji never lands after it.
A 403 stops reactions in that channel until :meth:`ReactionPacer.unblock` (the bot's
permissions may have changed) or ``block_for`` seconds; a 404 is logged once per channel.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field

import aiohttp
import discord

log = logging.getLogger(__name__)

#: Discord's code for a 403 on one message only: its author blocked the bot. Not a channel permission.
REACTION_BLOCKED = 90001


def monotonic() -> float:
    """Looked up at call time, so a test clock that patches ``time.monotonic`` is honoured."""
    return time.monotonic()


class RateLimiter:
    """A token bucket; ``acquire`` sleeps until the next token (no busy waiting)."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = monotonic):
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                self._refill()
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)

    def charge(self) -> None:
        """Spend a token for a request this bucket did not hand out (a retry): the next ``acquire`` waits longer."""
        self._refill()
        self.tokens -= 1


class SharedRateLimiter:
    """A bucket every process of the bot draws from: tokens are leased from the database a few at a time.

    ``lease(n)`` returns how many of ``n`` tokens the bot-wide bucket granted (PostgreSQL:
    :meth:`bot.store.postgres.PostgresConnection.lease_requests`). A lease is a tenth of a second's
    budget at most, so one process never holds what another could spend now. While the database
    fails, a local bucket at ``fallback_share`` of the rate keeps the bot under the limit on its own.
    """

    def __init__(self, lease: Callable[[int], Awaitable[int]], rate: float, *, fallback_share: float = 0.25,
                 clock: Callable[[], float] = monotonic) -> None:
        self.rate = rate
        self.lease = lease
        self.tokens = 0.0
        self.batch = max(1, math.ceil(rate / 10))
        self.fallback = RateLimiter(rate * fallback_share, burst=1, clock=clock)
        self.clock = clock
        self._failing_until = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while self.tokens < 1:
                if self.clock() < self._failing_until:
                    await self.fallback.acquire()
                    return
                try:
                    self.tokens += await self.lease(self.batch)
                except Exception as exc:  # noqa: BLE001 - a store error or a dead connection: never stop reacting
                    if not self._failing_until:
                        log.warning("could not lease from the bot-wide REST budget (%s); pacing this process "
                                    "alone at %.1f requests/s until it works", exc, self.fallback.rate)
                    self._failing_until = self.clock() + 5.0
                    continue
                if self._failing_until:
                    log.info("the bot-wide REST budget works again")
                    self._failing_until = 0.0
                if self.tokens < 1:
                    await asyncio.sleep(max(0.01, (1 - self.tokens) / self.rate))
            self.tokens -= 1

    def charge(self) -> None:
        """A retry this process made: paid from the next lease."""
        self.tokens -= 1


@dataclass(slots=True, eq=False)
class _Job:
    action: Callable[[], Awaitable[object]]
    received: float
    what: str
    channel_id: int
    key: Hashable | None = None
    priority: float = 1.0  # the prediction's confidence: when a queue is full, the least sure goes first
    requests: int = 0  # HTTP attempts seen by the trace: more than one means discord.py retried
    landed: bool = False  # Discord answered 2xx: the reaction is there, whatever happens to the call after


#: The pacer and job a drain task is sending, so the aiohttp trace can tell which job an HTTP attempt is for.
_SENDING: contextvars.ContextVar[tuple[ReactionPacer, _Job] | None] = contextvars.ContextVar("pacer_sending",
                                                                                           default=None)


def trace_config() -> aiohttp.TraceConfig:
    """An aiohttp trace for the bot's HTTP session (``http_trace=``): a pacer sees each attempt of the reaction
    it is sending, so discord.py's own retries spend its budgets and a landed reaction counts as sent."""
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(_on_request_start)
    trace.on_request_end.append(_on_request_end)
    return trace


async def _on_request_start(_session, _ctx, _params) -> None:
    if (sending := _SENDING.get()) is not None:
        pacer, job = sending
        job.requests += 1
        if job.requests > 1:  # discord.py retrying after a 429 (or a 5xx): one more request to that channel
            pacer.charge_retry(job)


async def _on_request_end(_session, _ctx, params: aiohttp.TraceRequestEndParams) -> None:
    if (sending := _SENDING.get()) is not None and 200 <= params.response.status < 300:
        sending[1].landed = True


@dataclass
class PacerStats:
    """Every submission ends in exactly one counter from ``sent`` to ``cancelled``; ``retried`` counts requests."""

    sent: int = 0
    dropped_stale: int = 0
    dropped_overflow: int = 0
    failed: int = 0
    dropped_at_close: int = 0  # still queued (or being sent, and not landed) when close() gave up on them
    dropped_blocked: int = 0  # for a channel that answered 403: queued then, or submitted while blocked
    replaced: int = 0  # a later submission with the same key took its place in the queue
    cancelled: int = 0  # a correction took the message's reaction over (queued, or submitted after it)
    retried: int = 0  # HTTP retries discord.py made inside a call (429s): charged to the budgets, not counted above
    latencies: collections.deque = field(default_factory=lambda: collections.deque(maxlen=10_000))


class ReactionPacer:
    """One bounded queue per channel, drained by a task that exits when the queue is empty."""

    def __init__(self, *, channel_rate: float = 3.5, global_rate: float = 40.0, max_age: float = 30.0,
                 max_queue: int | None = None, block_for: float = 600.0, backlog_after: float = 2.0,
                 global_limit: RateLimiter | SharedRateLimiter | None = None,
                 clock: Callable[[], float] = monotonic) -> None:
        """``backlog_after``: once a channel's oldest reaction has waited that long, the budget is short there,
        and the newest is served first (a late emoji is worth less than a fresh one); ``global_limit``: the
        bot's budget (default: this process's own, at ``global_rate``)."""
        self.channel_rate = channel_rate
        self.backlog_after = backlog_after
        self.max_age = max_age
        self.max_queue = max_queue or max(8, int(channel_rate * max_age))
        self.block_for = block_for
        self.clock = clock
        self.global_limit = global_limit or RateLimiter(global_rate, clock=clock)
        self.stats = PacerStats()
        self._reported = (clock(), PacerStats())  # the last drop report: when, and the counters then
        self._queues: dict[int, collections.deque[_Job]] = {}
        self._limits: dict[int, RateLimiter] = {}
        self._tasks: dict[int, asyncio.Task] = {}
        self._keyed: dict[Hashable, _Job] = {}  # queued jobs by key
        self._sending: dict[Hashable, asyncio.Event] = {}  # keyed jobs being sent, set when done
        self._claimed: dict[Hashable, float] = {}  # keys a correction took over, and when
        self._blocked: dict[int, float] = {}  # channel -> until when (403)
        self._warned: set[tuple[int, int]] = set()
        self._closed = False

    # -- submitting ------------------------------------------------------------------------------

    def submit(self, channel_id: int, action: Callable[[], Awaitable[object]], *, received: float | None = None,
               what: str = "reaction", key: Hashable | None = None, priority: float = 1.0) -> bool:
        """Queue ``action`` (e.g. ``lambda: message.add_reaction(emoji)``); False if it was not taken.

        With ``key`` (the message id), a job of that key still queued is replaced in place: it keeps its turn.
        Not taken: the pacer is closed, the channel answered 403 lately, or a correction took ``key`` over.
        """
        if self._closed:
            return False
        if self._is_blocked(channel_id):
            self.stats.dropped_blocked += 1
            return False
        if self._is_claimed(key):
            self.stats.cancelled += 1
            return False
        received = self.clock() if received is None else received
        if key is not None and (queued := self._keyed.get(key)) is not None:
            queued.action, queued.received, queued.what = action, received, what
            self.stats.replaced += 1
            return True
        q = self._queues.setdefault(channel_id, collections.deque())
        if len(q) >= self.max_queue:
            least = min(q, key=lambda j: j.priority)  # the least sure; among equals the oldest (min keeps the first)
            if least.priority > priority:
                self.stats.dropped_overflow += 1  # the new one is the least sure of all
                return False
            q.remove(least)
            self._forget(least)
            self.stats.dropped_overflow += 1
        job = _Job(action, received, what, channel_id, key, priority)
        q.append(job)
        if key is not None:
            self._keyed[key] = job
        if channel_id not in self._tasks:
            self._tasks[channel_id] = asyncio.create_task(self._drain(channel_id), name=f"pacer-{channel_id}")
        return True

    async def take_over(self, key: Hashable, action: Callable[[], Awaitable[object]] | None = None) -> bool:
        """For a correction: the reaction queued under ``key`` now runs ``action`` in its turn (None: dropped).

        True if one was queued: it never reached Discord. Otherwise a job of ``key`` being sent is waited for
        (so it cannot land after the caller's own requests), and a submission of ``key`` arriving later (the
        message was still being classified) is refused. False then: the caller sends what it needs itself.
        """
        job = self._keyed.get(key)
        if job is None:
            if (sending := self._sending.get(key)) is not None:
                await sending.wait()
            self._claim(key)
            return False
        if action is None:
            self._queues[job.channel_id].remove(job)
            self._forget(job)
            self.stats.cancelled += 1
        else:
            job.action, job.received = action, self.clock()
        return True

    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def _forget(self, job: _Job) -> None:
        if job.key is not None and self._keyed.get(job.key) is job:
            del self._keyed[job.key]

    def _claim(self, key: Hashable) -> None:
        now = self.clock()
        while self._claimed and now - next(iter(self._claimed.values())) > self.max_age:
            del self._claimed[next(iter(self._claimed))]  # older claims: any submission now would be stale
        self._claimed.pop(key, None)
        self._claimed[key] = now

    def _is_claimed(self, key: Hashable | None) -> bool:
        claimed = self._claimed.get(key) if key is not None else None
        return claimed is not None and self.clock() - claimed <= self.max_age

    # -- 403: channels the bot may not react in --------------------------------------------------

    def _is_blocked(self, channel_id: int) -> bool:
        until = self._blocked.get(channel_id)
        if until is not None and self.clock() >= until:
            del self._blocked[channel_id]
            return False
        return until is not None

    def _block(self, channel_id: int) -> None:
        """Stop reacting in ``channel_id``: every request there would be another 403 (they count towards
        Discord's invalid-request limit, which bans the bot's IP for an hour)."""
        self._blocked[channel_id] = self.clock() + self.block_for
        q = self._queues.get(channel_id)
        if q:
            self.stats.dropped_blocked += len(q)
            for job in q:
                self._forget(job)
            q.clear()
        log.warning("missing permission to add reactions in channel %s; not reacting there until a role or "
                    "channel of its server changes, or for %.0f minutes", channel_id, self.block_for / 60)

    def unblock(self, channel_ids: Iterable[int] | None = None) -> None:
        """The bot's permissions may have changed (a role or channel update): try those channels (all: None) again."""
        if channel_ids is None:
            self._blocked.clear()
            return
        for channel_id in channel_ids:
            self._blocked.pop(channel_id, None)

    # -- draining --------------------------------------------------------------------------------

    def _drop_stale(self, q: collections.deque[_Job]) -> None:
        now = self.clock()
        if any(now - job.received > self.max_age for job in q):
            for job in [job for job in q if now - job.received > self.max_age]:
                q.remove(job)
                self._forget(job)
                self.stats.dropped_stale += 1

    def _next(self, q: collections.deque[_Job]) -> _Job:
        """The oldest, in turn; once the oldest has waited ``backlog_after`` the budget is short: the newest."""
        return q[-1] if self.clock() - q[0].received > self.backlog_after else q[0]

    def _report_drops(self) -> None:
        """Once a minute, what was dropped since the last report (nothing said when nothing was)."""
        at, before = self._reported
        now = self.clock()
        if now - at < 60:
            return
        st = self.stats
        drops = {"stale": st.dropped_stale - before.dropped_stale,
                 "for room (the least sure)": st.dropped_overflow - before.dropped_overflow,
                 "in channels that refused": st.dropped_blocked - before.dropped_blocked,
                 "failed": st.failed - before.failed}
        if any(drops.values()):  # quiet otherwise; the next drop after a quiet minute is said at once
            log.info("reactions in the last %.0f s: %d sent; dropped %s", now - at, st.sent - before.sent,
                     ", ".join(f"{n} {why}" for why, n in drops.items() if n))
            self._reported = (now, dataclasses.replace(st, latencies=collections.deque()))

    async def _drain(self, channel_id: int) -> None:
        q = self._queues[channel_id]
        limit = self._limits.setdefault(channel_id, RateLimiter(self.channel_rate, burst=1, clock=self.clock))
        try:
            while q:
                self._report_drops()
                self._drop_stale(q)
                if not q:
                    break
                await limit.acquire()
                self._drop_stale(q)
                if not q:
                    break
                await self.global_limit.acquire()  # nothing stale is left to spend the bot's budget on
                self._drop_stale(q)
                if not q:
                    break
                job = self._next(q)
                q.remove(job)
                self._forget(job)
                await self._send(channel_id, job)
            self._report_drops()
        finally:
            self._tasks.pop(channel_id, None)
            if not q:
                self._queues.pop(channel_id, None)

    async def _send(self, channel_id: int, job: _Job) -> None:
        # discord.py retries a 429 inside the call; the deadline keeps a retry from landing stale.
        budget = max(0.1, self.max_age - (self.clock() - job.received))
        token = _SENDING.set((self, job))
        done = self._sending.setdefault(job.key, asyncio.Event()) if job.key is not None else None
        try:
            await asyncio.wait_for(job.action(), timeout=budget)
        except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
            self._cut_off(job, "dropped_stale")
        except asyncio.CancelledError:  # close() ran out of time mid-request
            self._cut_off(job, "dropped_at_close")
            raise
        except discord.Forbidden as exc:
            self.stats.failed += 1
            if exc.code == REACTION_BLOCKED:
                self._warn_once(channel_id, exc.code, "a member in channel %s blocked the bot; "
                                                      "their messages get no reaction")
            else:
                self._block(channel_id)
        except discord.NotFound:
            self.stats.failed += 1
            self._warn_once(channel_id, 404, "message gone in channel %s (deleted?); its reaction was skipped")
        except discord.HTTPException as exc:
            self.stats.failed += 1
            log.warning("reaction in channel %s failed: HTTP %s", channel_id, exc.status)
        except Exception:  # noqa: BLE001 - one bad reaction must not stop the channel's queue
            self.stats.failed += 1
            log.exception("reaction in channel %s failed", channel_id)
        else:
            self._count_sent(job)
        finally:
            _SENDING.reset(token)
            if done is not None:
                self._sending.pop(job.key, None)
                done.set()

    def _count_sent(self, job: _Job) -> None:
        self.stats.sent += 1
        self.stats.latencies.append(self.clock() - job.received)

    def _cut_off(self, job: _Job, counter: str) -> None:
        """A call stopped by its deadline or by close(): sent all the same if Discord had already said 2xx
        (discord.py may still be sleeping on the bucket it just emptied)."""
        if job.landed:
            self._count_sent(job)
        else:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)

    def _warn_once(self, channel_id: int, status: int, message: str) -> None:
        if (channel_id, status) not in self._warned:
            self._warned.add((channel_id, status))
            log.warning(message, channel_id)

    def charge_retry(self, job: _Job) -> None:
        """discord.py sent ``job`` again inside the call (seen by :func:`trace_config`): the retry spends
        the channel's and the bot's budget, so the next reactions wait for it."""
        self.stats.retried += 1
        self._limits[job.channel_id].charge()
        self.global_limit.charge()

    async def close(self, timeout: float = 2.0) -> None:
        """Stop taking work; give queued reactions ``timeout`` seconds, then drop the rest."""
        self._closed = True
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self.stats.dropped_at_close += self.queued()
        if self.stats.dropped_at_close:
            log.info("closing: dropped %d reactions that had not been sent", self.stats.dropped_at_close)
        self._queues.clear()
        self._keyed.clear()
