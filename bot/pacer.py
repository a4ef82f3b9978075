"""Paces reaction requests to what Discord allows, dropping the ones that went stale.

Discord takes about 4 reactions a second in one channel and 50 requests a second from a
bot. discord.py would queue everything behind its rate limiter forever; here each channel
has a short bounded queue drained at its own rate, all channels share one global budget,
and a reaction whose message arrived more than ``max_age`` seconds ago is dropped (its
prediction is already stored). A 403 or 404 is logged once per channel, never retried.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import discord

log = logging.getLogger(__name__)


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

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


@dataclass(slots=True)
class _Job:
    action: Callable[[], Awaitable[object]]
    received: float
    what: str


@dataclass
class PacerStats:
    sent: int = 0
    dropped_stale: int = 0
    dropped_overflow: int = 0
    failed: int = 0
    dropped_at_close: int = 0  # still queued (or being sent) when close() gave up on them
    latencies: collections.deque = field(default_factory=lambda: collections.deque(maxlen=10_000))


class ReactionPacer:
    """One bounded queue per channel, drained by a task that exits when the queue is empty."""

    def __init__(self, *, channel_rate: float = 4.0, global_rate: float = 45.0, max_age: float = 30.0,
                 max_queue: int | None = None, clock: Callable[[], float] = monotonic) -> None:
        self.channel_rate = channel_rate
        self.max_age = max_age
        self.max_queue = max_queue or max(8, int(channel_rate * max_age))
        self.clock = clock
        self.global_limit = RateLimiter(global_rate, clock=clock)
        self.stats = PacerStats()
        self._queues: dict[int, collections.deque[_Job]] = {}
        self._limits: dict[int, RateLimiter] = {}
        self._tasks: dict[int, asyncio.Task] = {}
        self._warned: set[tuple[int, int]] = set()
        self._closed = False

    def submit(self, channel_id: int, action: Callable[[], Awaitable[object]], *, received: float | None = None,
               what: str = "reaction") -> bool:
        """Queue ``action`` (e.g. ``lambda: message.add_reaction(emoji)``); False if it was not taken."""
        if self._closed:
            return False
        q = self._queues.setdefault(channel_id, collections.deque())
        if len(q) >= self.max_queue:
            q.popleft()  # the oldest would go stale first anyway
            self.stats.dropped_overflow += 1
        q.append(_Job(action, self.clock() if received is None else received, what))
        if channel_id not in self._tasks:
            self._tasks[channel_id] = asyncio.create_task(self._drain(channel_id), name=f"pacer-{channel_id}")
        return True

    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def _drain(self, channel_id: int) -> None:
        q = self._queues[channel_id]
        limit = self._limits.setdefault(channel_id, RateLimiter(self.channel_rate, burst=1, clock=self.clock))
        try:
            while q:
                job = q[0]
                if self.clock() - job.received > self.max_age:
                    q.popleft()
                    self.stats.dropped_stale += 1
                    continue
                await limit.acquire()
                if self.clock() - job.received <= self.max_age:  # don't spend the bot's budget on a stale one
                    await self.global_limit.acquire()
                if not q or q[0] is not job:
                    continue
                q.popleft()
                if self.clock() - job.received > self.max_age:
                    self.stats.dropped_stale += 1
                    continue
                await self._send(channel_id, job)
        finally:
            self._tasks.pop(channel_id, None)
            if not q:
                self._queues.pop(channel_id, None)

    async def _send(self, channel_id: int, job: _Job) -> None:
        # discord.py retries a 429 inside the call; the deadline keeps a retry from landing stale.
        budget = max(0.1, self.max_age - (self.clock() - job.received))
        try:
            await asyncio.wait_for(job.action(), timeout=budget)
        except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
            self.stats.dropped_stale += 1
        except asyncio.CancelledError:  # close() ran out of time mid-request
            self.stats.dropped_at_close += 1
            raise
        except discord.Forbidden:
            self.stats.failed += 1
            self._warn_once(channel_id, 403,
                            "missing permission to add reactions in channel %s; skipping its reactions")
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
            self.stats.sent += 1
            self.stats.latencies.append(self.clock() - job.received)

    def _warn_once(self, channel_id: int, status: int, message: str) -> None:
        if (channel_id, status) not in self._warned:
            self._warned.add((channel_id, status))
            log.warning(message, channel_id)

    async def close(self, timeout: float = 2.0) -> None:
        """Stop taking work; give queued reactions ``timeout`` seconds, then drop the rest."""
        self._closed = True
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        left = self.queued()
        if left or self.stats.dropped_at_close:
            self.stats.dropped_at_close += left
            log.info("closing: dropped %d reactions that had not been sent", self.stats.dropped_at_close)
        self._queues.clear()
