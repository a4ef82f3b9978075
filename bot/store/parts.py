"""The store's parts composed once, for every backend: what a store does, whatever holds the data.

:class:`bot.store.sqlite.Store` and :class:`bot.store.postgres.PostgresStore` add only how they
connect (their ``*Connection`` base) to this.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .counts import CountsStore
from .departures import DepartureStore
from .records import GuildSettings


def check_options(labels: Sequence[str] | None, flush_interval: float, batch_size: int, max_buffer: int) -> None:
    """The options every backend's ``open`` takes, checked before anything is opened."""
    if flush_interval <= 0 or batch_size < 1 or max_buffer < batch_size:
        raise ValueError("need flush_interval > 0 and 1 <= batch_size <= max_buffer")
    if labels is not None and (not labels or not all(isinstance(x, str) and x for x in labels)):
        raise ValueError("labels must be a non-empty sequence of non-empty strings")


class StoreParts(DepartureStore, CountsStore):
    """Predictions, counts, corrections, privacy, guild settings, review and departures."""

    def _init_parts(
        self,
        *,
        labels: Sequence[str] | None,
        flush_interval: float,
        batch_size: int,
        max_buffer: int,
        defaults: GuildSettings | None,
    ) -> None:
        self._init_predictions(flush_interval, batch_size, max_buffer)
        self._init_corrections(None if labels is None else tuple(labels))
        self._init_privacy()
        self._init_guilds(defaults)
        self._init_review()

    async def _reload_caches(self, db: Any) -> None:
        await self._reload_opted_out(db)
        self._forget_guild_settings()
        self._forget_review_bounds()

    async def _before_close(self) -> None:
        await self._stop_flushing()
