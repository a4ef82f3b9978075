"""One bot as several processes: ``emotion-machine cluster --processes N`` starts N ``run --shards`` children.

Each child runs a contiguous range of the application's shards (:func:`split_shards`), so every server is
tagged by exactly one process. They share the database (PostgreSQL: caches, versions, the training lock and
the REST budget go through it) and the models folder. The supervisor:

* staggers the starts: Discord lets an application IDENTIFY ``max_concurrency`` shards per 5 seconds, so
  the next child starts only after the previous one's shards had their turns;
* restarts a child that dies (after 1 s, doubling to a minute while it keeps dying fast; a child that ran
  for ``healthy_after`` seconds starts again at 1 s), and says so in the log;
* on SIGINT/SIGTERM stops every child with SIGTERM (they finish in-flight work), SIGKILL after ``grace``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

IDENTIFY_WINDOW = 5.0  # seconds: Discord's IDENTIFY rate limit window per max_concurrency bucket


def split_shards(shard_count: int, processes: int) -> list[list[int]]:
    """``shard_count`` shards over ``processes`` contiguous ranges as even as can be (earlier ranges one larger)."""
    if shard_count < 1 or processes < 1:
        raise ValueError("need at least one shard and one process")
    if processes > shard_count:
        raise ValueError(f"{processes} processes for {shard_count} shards: a process needs at least one shard")
    size, extra = divmod(shard_count, processes)
    ranges, start = [], 0
    for i in range(processes):
        end = start + size + (1 if i < extra else 0)
        ranges.append(list(range(start, end)))
        start = end
    return ranges


def identify_time(shards: int, max_concurrency: int) -> float:
    """Seconds a process needs for its shards' IDENTIFYs: one window per ``max_concurrency`` of them."""
    return math.ceil(shards / max(1, max_concurrency)) * IDENTIFY_WINDOW


@dataclass
class Member:
    """One child process and its shards."""

    index: int
    shards: list[int]
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 1.0
    exits: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        first, last = self.shards[0], self.shards[-1]
        return f"process {self.index} (shards {first}-{last})" if last != first else \
            f"process {self.index} (shard {first})"


class Cluster:
    """Start, watch and stop the children; ``command(shards)`` is a child's argv."""

    def __init__(self, command: Callable[[list[int]], Sequence[str]], ranges: list[list[int]], *,
                 max_concurrency: int = 1, env: dict[str, str] | None = None, grace: float = 30.0,
                 healthy_after: float = 60.0, max_backoff: float = 60.0) -> None:
        self.command = command
        self.members = [Member(i, shards) for i, shards in enumerate(ranges)]
        self.max_concurrency = max_concurrency
        self.env = env
        self.grace = grace
        self.healthy_after = healthy_after
        self.max_backoff = max_backoff
        self._stopping = asyncio.Event()
        self._starting = asyncio.Lock()
        self._identify_free_at = 0.0  # monotonic time the last start's IDENTIFYs are done

    async def _spawn(self, member: Member) -> None:
        """Start ``member`` once the previous start's IDENTIFY windows have passed (starts go one at a time)."""
        async with self._starting:
            wait = self._identify_free_at - time.monotonic()
            if wait > 0:
                log.info("%s waits %.1f s for the IDENTIFY windows of the previous start", member.label, wait)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), wait)
            if self._stopping.is_set():
                member.process = None
                return
            try:
                member.process = await asyncio.create_subprocess_exec(*self.command(member.shards), env=self.env)
            except OSError as exc:  # the interpreter or a file gone: said, and tried again after a backoff
                log.error("%s could not start: %s", member.label, exc)
                member.process = None
                member.started_at = time.monotonic()
                return
            member.started_at = time.monotonic()
            self._identify_free_at = member.started_at + identify_time(len(member.shards), self.max_concurrency)
            log.info("%s started (pid %d)", member.label, member.process.pid)

    async def _watch(self, member: Member) -> None:
        """Keep ``member`` running until the cluster stops."""
        while not self._stopping.is_set():
            await self._spawn(member)
            if self._stopping.is_set():
                return
            code = await member.process.wait() if member.process is not None else None
            if code is not None:
                member.exits.append(code)
            if self._stopping.is_set():
                return
            ran = time.monotonic() - member.started_at
            member.backoff = 1.0 if ran >= self.healthy_after else min(self.max_backoff, member.backoff * 2)
            delay = 1.0 if ran >= self.healthy_after else member.backoff / 2
            how = "not started" if code is None else f"signal {-code}" if code < 0 else f"exit status {code}"
            log.warning("%s stopped (%s) after %.0f s; restarting in %.0f s", member.label, how, ran, delay)
            member.restarts += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def run(self) -> int:
        """Run until :meth:`stop` (or SIGINT/SIGTERM); 0 once every child has stopped."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, lambda s=sig: (log.info("%s: stopping the cluster", s.name),
                                                            self.stop()))
        # in order: _spawn takes the members one at a time, each after the previous one's IDENTIFY windows
        watchers = [asyncio.create_task(self._watch(m), name=f"cluster-{m.index}") for m in self.members]
        try:
            await self._stopping.wait()
            await self._terminate()
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
        return 0

    def stop(self) -> None:
        self._stopping.set()

    async def _terminate(self) -> None:
        async with self._starting:  # no start half-done: a child being created now is signalled too
            running = [m.process for m in self.members if m.process is not None and m.process.returncode is None]
            for process in running:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), self.grace)
        except asyncio.TimeoutError:
            for process in running:
                if process.returncode is None:
                    log.warning("pid %d did not stop within %.0f s: killed", process.pid, self.grace)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            await asyncio.gather(*(p.wait() for p in running))
