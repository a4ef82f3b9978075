"""Servers the bot left: marked when it leaves, forgotten after a grace period (or at once, by the operator).

Why a grace period: a server that kicks the bot by mistake and invites it back the same day keeps
its corrections and its model. Past it, the data follows the server out: its corrections (with
their text), predictions (buffered ones too), review queue, settings and channel lists. Its line
of model versions is on disk, not here: :mod:`bot.services.guild_data` removes both.
"""

from __future__ import annotations

import time
from typing import Any

from .guilds import GuildStore
from .privacy import PrivacyStore

_MARK_LEFT = """
INSERT INTO guild_departures (guild_id, left_at) VALUES (?, ?)
ON CONFLICT (guild_id) DO NOTHING
"""
_MARK_PRESENT = "DELETE FROM guild_departures WHERE guild_id = ?"
_LEFT_BEFORE = "SELECT guild_id FROM guild_departures WHERE left_at < ? ORDER BY left_at"
_KNOWN = """
SELECT guild_id FROM guild_settings
UNION SELECT guild_id FROM corrections WHERE guild_id IS NOT NULL
ORDER BY guild_id
"""
_FORGET = (
    ("corrections", "DELETE FROM corrections WHERE guild_id = ?"),
    ("predictions", "DELETE FROM predictions WHERE guild_id = ?"),
    ("review", "DELETE FROM review_queue WHERE guild_id = ?"),
    ("channels", "DELETE FROM guild_channels WHERE guild_id = ?"),
    ("settings", "DELETE FROM guild_settings WHERE guild_id = ?"),
    ("departures", "DELETE FROM guild_departures WHERE guild_id = ?"),
)


class DepartureStore(PrivacyStore, GuildStore):
    async def mark_guild_left(self, guild_id: int, at: float | None = None) -> None:
        """Note that the bot left ``guild_id`` (the first departure counts: leaving twice does not extend it)."""
        self._require_open()
        args = (int(guild_id), time.time() if at is None else float(at))

        async def body(db: Any) -> None:
            await db.execute(_MARK_LEFT, args)

        await self._write("note that the bot left a server", body)

    async def mark_guild_present(self, guild_id: int) -> bool:
        """The bot is in ``guild_id`` (again): nothing of it will be forgotten. True if it had been marked as left."""
        self._require_open()

        async def body(db: Any) -> bool:
            return (await db.execute(_MARK_PRESENT, (int(guild_id),))).rowcount > 0

        return await self._write("note that the bot is in a server", body)

    async def guilds_left_before(self, before: float) -> list[int]:
        """Servers the bot left before ``before`` (unix seconds) and has not rejoined: due to be forgotten."""
        return [int(g) for (g,) in await self._read("list the servers the bot left", _LEFT_BEFORE, (float(before),))]

    async def known_guilds(self) -> list[int]:
        """Servers the store keeps settings or corrections for (what a purge would have to delete)."""
        return [int(g) for (g,) in await self._read("list the servers with stored data", _KNOWN)]

    async def forget_guild(self, guild_id: int) -> dict[str, int]:
        """Delete everything stored about ``guild_id``, in one transaction; counts per kind."""
        self._require_open()
        guild_id = int(guild_id)

        async def body(db: Any) -> dict[str, int]:
            buffered = self._discard_buffered(lambda row: row.guild_id != guild_id)
            counts = {name: (await db.execute(sql, (guild_id,))).rowcount for name, sql in _FORGET}
            counts["predictions"] += buffered
            self._forget_review_bounds(guild_id)
            return counts

        def update_cache(_: dict[str, int]) -> None:
            self._guilds.pop(guild_id, None)

        return await self._write("forget a server", body, update_cache)
