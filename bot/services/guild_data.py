"""The data follows the server: what happens when the bot leaves (or rejoins) a server, and ``guild forget``.

Leaving keeps everything for ``EMOTION_GUILD_GRACE_DAYS`` (a server that removed the bot by mistake
and invites it back loses nothing); after that a purge deletes the server's corrections, predictions,
review queue and settings (:mod:`bot.store.departures`) and its line of model versions on disk. The
operator can forget a server at once (``emotion-machine guild forget ID``).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass

from bot.services.common import Actor, Serving
from model.registry import server_lines, server_root

log = logging.getLogger(__name__)

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What forgetting one server deleted."""

    guild_id: int
    counts: dict[str, int]
    #: Model versions of the server's line removed from disk.
    versions: int


class GuildDataService:
    def __init__(self, settings, store, serving: Serving | None = None) -> None:
        self.settings, self.store, self.serving = settings, store, serving

    async def left(self, guild_id: int) -> None:
        """The bot was removed from ``guild_id``: keep its data for the grace period, stop serving its head."""
        await self.store.mark_guild_left(guild_id)
        if self.serving is not None:
            self.serving.set_head(guild_id, None)
        log.info("left server %s: its data and model are kept %g days, then deleted",
                 guild_id, self.settings.guild_grace_days)

    async def present(self, guild_ids: Iterable[int]) -> list[int]:
        """The bot is in these servers (joined, rejoined, or seen at start): nothing of theirs is forgotten.

        Returns those that had been marked as left; their models are served again.
        """
        departed = set(await self.store.guilds_left_before(float("inf")))  # one read, not a write per server
        back = [g for g in guild_ids if g in departed and await self.store.mark_guild_present(g)]
        if back and self.serving is not None:
            for guild_id, head in (await self.serving.heads_for(self.serving.classifier, only=back)).items():
                self.serving.set_head(guild_id, head)
        return back

    async def absent(self, present: Iterable[int]) -> list[int]:
        """At start: servers with stored data or a model line that the bot is no longer in (removed while it
        was offline). ``present`` must be every server of the bot: one process runs all its shards."""
        here = set(present)
        known = set(await asyncio.to_thread(server_lines, self.settings.models_dir))
        known |= set(await self.store.known_guilds())
        gone = sorted(g for g in known if g not in here)
        for guild_id in gone:
            await self.store.mark_guild_left(guild_id)
        return gone

    async def purge(self, now: float | None = None) -> list[Forgotten]:
        """Forget every server the bot left more than the grace period ago."""
        now = time.time() if now is None else now
        due = await self.store.guilds_left_before(now - self.settings.guild_grace_days * DAY)
        return [await self._forget(guild_id) for guild_id in due]

    async def forget(self, actor: Actor, guild_id: int) -> Forgotten:
        """Delete everything of ``guild_id`` now, in the bot's process or from the CLI (the operator only)."""
        actor.require_owner("forget a server's data")
        return await self._forget(int(guild_id))

    async def _forget(self, guild_id: int) -> Forgotten:
        if self.serving is not None:
            self.serving.set_head(guild_id, None)
        counts = await self.store.forget_guild(guild_id)
        versions = await asyncio.to_thread(_remove_line, self.settings.models_dir, guild_id)
        log.info("forgot server %s: %s, %d model version(s)", guild_id,
                 ", ".join(f"{n} {kind}" for kind, n in counts.items() if n), versions)
        return Forgotten(guild_id, counts, versions)


def _remove_line(models_dir, guild_id: int) -> int:
    """Delete a server's line of versions; returns how many versions it held."""
    root = server_root(models_dir, guild_id)
    if not root.is_dir():
        return 0
    versions = sum(1 for p in root.iterdir() if p.is_dir() and p.name[1:].isdigit())
    trash = root.with_name(f".trash-{root.name}-{time.time_ns()}")
    root.rename(trash)  # gone at once, even if the removal is cut short
    shutil.rmtree(trash, ignore_errors=True)
    return versions
