"""Guild settings: per-server switches, read for every message and so cached.

A guild that never changed anything has the store's defaults (the bot's
configured threshold) and no row at all.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from .records import GuildSettings, check_guild_changes
from .review import ReviewStore

_SELECT = """
SELECT enabled, threshold, show_neutral, reactions, review, share,
       (SELECT {ids} FROM guild_channels WHERE guild_id = s.guild_id AND mode = 'allow') AS allowed,
       (SELECT {ids} FROM guild_channels WHERE guild_id = s.guild_id AND mode = 'deny') AS denied
FROM guild_settings AS s WHERE guild_id = ?
"""
#: The channel ids as one JSON array ('[]' for none), in each dialect.
_SELECTS = {"sqlite": _SELECT.format(ids="json_group_array(channel_id)"),
            "postgresql": _SELECT.format(ids="CAST(COALESCE(json_agg(channel_id), '[]') AS text)")}
_UPSERT = """
INSERT INTO guild_settings (guild_id, enabled, threshold, show_neutral, reactions, review, share, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (guild_id) DO UPDATE SET
    enabled = excluded.enabled,
    threshold = excluded.threshold,
    show_neutral = excluded.show_neutral,
    reactions = excluded.reactions,
    review = excluded.review,
    share = excluded.share,
    updated_at = excluded.updated_at
"""
_DELETE_CHANNELS = "DELETE FROM guild_channels WHERE guild_id = ?"
_INSERT_CHANNEL = "INSERT INTO guild_channels (guild_id, mode, channel_id) VALUES (?, ?, ?)"


def _from_sql(values: tuple) -> GuildSettings:
    enabled, threshold, show_neutral, reactions, review, share, allowed, denied = values
    return GuildSettings(
        enabled=bool(enabled),
        allowed_channels=frozenset(json.loads(allowed)),
        denied_channels=frozenset(json.loads(denied)),
        threshold=float(threshold),
        show_neutral=bool(show_neutral),
        reactions=bool(reactions),
        review=bool(review),
        share=bool(share),
    )


class GuildStore(ReviewStore):
    """Guild settings, cached per guild after the first read; review off empties the server's review queue."""

    def _init_guilds(self, defaults: GuildSettings | None) -> None:
        self._defaults = defaults or GuildSettings()
        self._guilds: dict[int, GuildSettings] = {}
        self._cache_generation = 0  # bumped when the cache is dropped

    def _forget_guild_settings(self) -> None:
        """Drop the cache (another process may have changed settings)."""
        self._guilds.clear()
        self._cache_generation += 1

    async def get_guild_settings(self, guild_id: int) -> GuildSettings:
        """Settings of a guild (defaults if never changed); cached after the first read."""
        guild_id = int(guild_id)
        cached = self._guilds.get(guild_id)
        if cached is not None:
            return cached
        generation = self._cache_generation
        rows = await self._read("read guild settings", _SELECTS[self.dialect], (guild_id,))
        settings = _from_sql(rows[0]) if rows else self._defaults
        if generation != self._cache_generation:
            return settings  # the cache was dropped meanwhile: don't cache what may be older
        # An update may have committed while we were reading: keep the newer value.
        return self._guilds.setdefault(guild_id, settings)

    async def update_guild_settings(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change some settings (validated) and return the new settings.

        Channel lists are replaced as a whole. Unknown keys, a threshold outside
        [0, 1] or non-boolean switches raise ValueError.
        """
        self._require_open()
        guild_id = int(guild_id)
        clean = check_guild_changes(changes)
        loaded = await self.get_guild_settings(guild_id)

        async def body(db: Any) -> GuildSettings:
            # Start from the cache under the lock so concurrent updates don't lose each other.
            new = dataclasses.replace(self._guilds.get(guild_id, loaded), **clean)
            await db.execute(
                _UPSERT,
                (guild_id, int(new.enabled), new.threshold, int(new.show_neutral),
                 int(new.reactions), int(new.review), int(new.share), time.time()),
            )
            if not new.review:  # the text waiting for review goes with the switch
                await self._clear_review_locked(db, guild_id)
            await db.execute(_DELETE_CHANNELS, (guild_id,))
            channels = [(guild_id, "allow", c) for c in sorted(new.allowed_channels)]
            channels += [(guild_id, "deny", c) for c in sorted(new.denied_channels)]
            if channels:
                await db.executemany(_INSERT_CHANNEL, channels)
            return new

        def update_cache(new: GuildSettings) -> None:
            self._guilds[guild_id] = new

        return await self._write("save guild settings", body, update_cache)
