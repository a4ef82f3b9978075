"""What callers may use of a store: the one seam a second backend has to fill.

The bot, the shell, the CLI and the benchmarks use exactly these members; a
PostgreSQL store (asyncpg) implementing them plugs in without touching a caller.
How a store is opened (``Store.open(...)``) is each backend's own business, and so
are the test-only extras of the SQLite store (``delete_prediction``, ``_db``...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from .records import Correction, GuildSettings, PredictionRow


@runtime_checkable
class StoreProtocol(Protocol):
    """The public surface of a store. Failures raise ``StoreError``; bad input ValueError."""

    path: str
    """Where the data lives, for messages."""
    labels: tuple[str, ...] | None
    """The labels a correction may use (None: any)."""
    dropped_predictions: int
    """Predictions lost because the buffer overflowed while the database failed."""

    @property
    def buffered(self) -> int:
        """Predictions accepted but not written yet."""
        ...

    async def close(self) -> None: ...
    async def refresh_if_changed(self) -> bool: ...

    # predictions: buffered, so record_prediction does no I/O
    async def record_prediction(self, row: PredictionRow) -> None: ...
    async def flush(self) -> int: ...
    async def get_prediction(self, message_id: int) -> PredictionRow | None: ...
    async def delete_predictions_older_than(self, days: float, now: float | None = None) -> int: ...

    # corrections: durable when add_correction returns
    async def add_correction(self, c: Correction) -> None: ...
    async def add_examples(self, examples: Sequence[Correction]) -> int: ...
    async def corrections_for_training(
        self, *, since: float | None = None, guild_id: int | None = None
    ) -> list[tuple[str, str]]: ...
    async def count_corrections(
        self, *, since: float | None = None, guild_id: int | None = None
    ) -> int: ...

    # summaries
    async def emotion_counts(
        self, *, guild_id: int, channel_id: int | None = None, author_id: int | None = None,
        since: float, until: float | None = None,
    ) -> list[tuple[str, str, int]]: ...
    async def label_counts(self, guild_id: int | None = None) -> dict[str, int]: ...
    async def stats(self) -> dict[str, Any]: ...

    # privacy
    async def forget_user(self, user_id: int) -> dict[str, int]: ...
    async def forget_messages(self, message_ids: Sequence[int]) -> dict[str, int]: ...
    async def set_opted_out(self, user_id: int, opted_out: bool) -> None: ...
    async def is_opted_out(self, user_id: int) -> bool: ...

    # guild settings
    async def get_guild_settings(self, guild_id: int) -> GuildSettings: ...
    async def update_guild_settings(self, guild_id: int, **changes: Any) -> GuildSettings: ...
