"""Summaries of the predictions: the /mood charts' per-day counts, label totals, stats.

Every read flushes the prediction buffer first (quietly), so a chart includes the
messages tagged a moment ago.
"""

from __future__ import annotations

import math
import time
from typing import Any

from .corrections import CorrectionStore
from .predictions import DAY, PredictionStore

# Counts per (UTC day number, label). The day expression must match the one in the
# predictions_*_day indexes (V2, V3) exactly: the query then reads that index
# in (day, label) order, covering and without a sort. A leading "+" keeps the
# planner off the guild index when a narrower channel/author index applies.
# PostgreSQL's CAST rounds, so there the day is floor()ed (its schema indexes the same expression).
DAY_EXPR = {"sqlite": "CAST(created_at / 86400 AS INTEGER)",
            "postgresql": "CAST(floor(created_at / 86400) AS BIGINT)"}
_EMOTION_COUNTS = """
SELECT {day}, label, COUNT(*)
FROM predictions
WHERE {guild} = ? AND {day} >= ? AND created_at >= ? {extra}
GROUP BY {day}, label
ORDER BY {day}, label
"""
# Grouping by day first lets SQLite stream the covering index; the outer sum is tiny.
_LABEL_COUNTS = """
SELECT label, CAST(SUM(n) AS BIGINT) FROM (
    SELECT label, COUNT(*) AS n FROM predictions {where} GROUP BY guild_id, {day}, label
) AS per_day GROUP BY label ORDER BY label
"""
_STATS = """
SELECT (SELECT COUNT(*) FROM predictions),
       (SELECT COUNT(*) FROM corrections),
       (SELECT COUNT(*) FROM opted_out_users)
"""


def emotion_counts_query(
    *,
    guild_id: int,
    channel_id: int | None,
    author_id: int | None,
    since: float,
    until: float | None,
    dialect: str = "sqlite",
) -> tuple[str, list[Any]]:
    """SQL and parameters for :meth:`Store.emotion_counts` (exposed for query-plan tests)."""
    since = float(since)
    if not math.isfinite(since):
        raise ValueError(f"since must be a finite timestamp, got {since!r}")
    # floor(since / day) <= the day of every row at/after since: a safe, narrowing bound.
    extra = ""
    params: list[Any] = [int(guild_id), math.floor(since / DAY), since]
    if until is not None:
        extra += " AND created_at < ?"
        params.append(float(until))
        if until >= 0:  # CAST truncates toward zero, so only bound non-negative times
            extra += f" AND {DAY_EXPR[dialect]} <= ?"
            params.append(math.floor(float(until) / DAY))
    if channel_id is not None:
        extra += " AND channel_id = ?"
        params.append(int(channel_id))
    if author_id is not None:
        extra += " AND author_id = ?"
        params.append(int(author_id))
    narrower = channel_id is not None or author_id is not None
    sql = _EMOTION_COUNTS.format(day=DAY_EXPR[dialect], guild="+guild_id" if narrower else "guild_id", extra=extra)
    return sql, params


def _day(number: int) -> str:
    """A UTC day number as 'YYYY-MM-DD'."""
    return time.strftime("%Y-%m-%d", time.gmtime(int(number) * DAY))


class CountsStore(PredictionStore, CorrectionStore):
    """Read-only summaries; ``stats`` also counts corrections and opt-outs."""

    async def emotion_counts(
        self,
        *,
        guild_id: int,
        channel_id: int | None = None,
        author_id: int | None = None,
        since: float,
        until: float | None = None,
    ) -> list[tuple[str, str, int]]:
        """``(day 'YYYY-MM-DD' UTC, label, count)`` for a guild (optionally one channel/author).

        ``since`` is inclusive, ``until`` exclusive. Sorted by day, then label.
        """
        sql, params = emotion_counts_query(
            guild_id=guild_id, channel_id=channel_id, author_id=author_id, since=since, until=until,
            dialect=self.dialect,
        )
        self._require_open()
        await self._flush_quietly()
        rows = await self._read("count emotions", sql, params)
        return [(_day(day), label, n) for day, label, n in rows]

    async def label_counts(self, guild_id: int | None = None) -> dict[str, int]:
        """Number of predictions per label (in one guild, or everywhere)."""
        self._require_open()
        await self._flush_quietly()
        where, params = ("", ()) if guild_id is None else ("WHERE guild_id = ?", (int(guild_id),))
        sql = _LABEL_COUNTS.format(where=where, day=DAY_EXPR[self.dialect])
        rows = await self._read("count labels", sql, params)
        return dict(rows)

    async def stats(self) -> dict[str, Any]:
        """Totals for an "about" command (model versions: see ``model.registry``)."""
        self._require_open()
        await self._flush_quietly()
        (predictions, corrections, opted_out), = await self._read("read stats", _STATS)
        return {
            "predictions": predictions,
            "corrections": corrections,
            "training_examples": await self.count_corrections(),
            "opted_out_users": opted_out,
            "buffered_predictions": self.buffered,
        }
