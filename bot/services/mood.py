"""Mood: the emotion mix per UTC day of a server, a channel or one member, from stored predictions.

Built from the predictions table, not from reactions, so it works with reactions turned off.
The query runs in the store; the chart is rendered in a worker thread (matplotlib is CPU work).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from bot.services.common import Refusal

DEFAULT_DAYS = 14
MAX_DAYS = 90


@dataclass(frozen=True, slots=True)
class MoodScope:
    """Whose mood: a server, optionally one channel of it, or one member's messages in it."""

    guild_id: int
    channel_id: int | None = None
    author_id: int | None = None


@dataclass(frozen=True)
class MoodReport:
    scope: MoodScope
    #: ``'YYYY-MM-DD'`` UTC days, oldest first (today last).
    days: list[str]
    #: ``Store.emotion_counts`` rows.
    rows: list

    @property
    def period(self) -> str:
        return "today" if len(self.days) == 1 else f"the last {len(self.days)} days"


def day_range(days: int, now: float | None = None) -> tuple[float, list[str]]:
    """``(since, days)``: the unix time at which the first of the last ``days`` UTC days starts,
    and those days as ``'YYYY-MM-DD'``, oldest first (today last)."""
    today = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc).date()
    first = today - timedelta(days=days - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=timezone.utc).timestamp()
    return since, [(first + timedelta(days=i)).isoformat() for i in range(days)]


def check_days(days: int) -> int:
    if not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise Refusal(f"/mood takes a number of days from 1 to {MAX_DAYS} (default {DEFAULT_DAYS}), not {days!r}")
    return days


class MoodService:
    def __init__(self, store) -> None:
        self.store = store

    async def report(self, scope: MoodScope, days: int = DEFAULT_DAYS) -> MoodReport:
        since, day_list = day_range(check_days(days))
        rows = await self.store.emotion_counts(guild_id=scope.guild_id, channel_id=scope.channel_id,
                                               author_id=scope.author_id, since=since)
        return MoodReport(scope, day_list, rows)

    @staticmethod
    async def chart(report: MoodReport, title: str) -> bytes:
        """The PNG, rendered off the event loop."""
        from bot.charts import mood_chart

        return await asyncio.to_thread(mood_chart, report.rows, title=title, days=report.days)
