"""Corrections: human labels for texts, the bot's training data (low volume, precious).

Each :meth:`CorrectionStore.add_correction` commits before it returns, so an
acknowledged correction survives a crash. Imported examples (from a file, no
message) live in the same table, unique per (text, label).
"""

from __future__ import annotations

import operator
import time
from collections.abc import Sequence
from typing import Any

import aiosqlite

from .connection import SQLiteConnection
from .records import Correction, check_correction, opt_int

_COLUMNS = (
    "guild_id", "channel_id", "message_id", "author_id", "corrector_id", "predicted_label",
    "label", "text", "model_version", "source", "created_at",
)
_values = operator.attrgetter(*_COLUMNS)  # ends with created_at
_INSERT = f"INSERT INTO corrections ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
# A user's later correction of a message replaces their earlier one.
_UPSERT = f"""{_INSERT}
ON CONFLICT (message_id, corrector_id) DO UPDATE SET
    {', '.join(f'{c} = excluded.{c}' for c in _COLUMNS if c not in ('message_id', 'corrector_id'))}
"""
# Imported examples are unique per (text, label) (V4): a repeated import adds nothing.
_INSERT_IMPORTED = f"{_INSERT}\nON CONFLICT DO NOTHING"

# Majority vote per message over all its corrections; ties go to the label whose
# latest vote is the most recent. A message is included when its latest correction
# is at or after :since (so new disagreement re-resolves the whole message).
# Imported examples (no message) are each their own example.
_TRAINING_EXAMPLES = """
WITH filtered AS (
    SELECT id, message_id, label, text, created_at
    FROM corrections
    WHERE (:guild IS NULL OR guild_id = :guild)
),
messages AS (
    SELECT message_id, MAX(created_at) AS last_at
    FROM filtered
    WHERE message_id IS NOT NULL
    GROUP BY message_id
    HAVING :since IS NULL OR MAX(created_at) >= :since
),
votes AS (
    SELECT f.message_id, f.label, COUNT(*) AS n, MAX(f.created_at) AS last_at, MAX(f.id) AS last_id
    FROM filtered AS f JOIN messages AS m ON m.message_id = f.message_id
    GROUP BY f.message_id, f.label
),
winners AS (
    SELECT message_id, label,
           ROW_NUMBER() OVER (PARTITION BY message_id
                              ORDER BY n DESC, last_at DESC, last_id DESC) AS rn
    FROM votes
),
texts AS (
    SELECT f.message_id, f.text,
           ROW_NUMBER() OVER (PARTITION BY f.message_id ORDER BY f.created_at DESC, f.id DESC) AS rn
    FROM filtered AS f JOIN messages AS m ON m.message_id = f.message_id
)
SELECT t.text AS text, w.label AS label, m.last_at AS at, w.message_id AS k
FROM winners AS w
JOIN texts AS t ON t.message_id = w.message_id AND t.rn = 1
JOIN messages AS m ON m.message_id = w.message_id
WHERE w.rn = 1
UNION ALL
SELECT text, label, created_at AS at, id AS k
FROM filtered
WHERE message_id IS NULL AND (:since IS NULL OR created_at >= :since)
"""
_SELECT_TRAINING_EXAMPLES = f"SELECT text, label FROM ({_TRAINING_EXAMPLES}) ORDER BY at, k"
_COUNT_TRAINING_EXAMPLES = f"SELECT COUNT(*) FROM ({_TRAINING_EXAMPLES})"


_DELETE_OF_MESSAGE = "DELETE FROM corrections WHERE message_id = ?"


async def delete_message_corrections(db: aiosqlite.Connection, message_ids: Sequence[int]) -> int:
    """Inside a write transaction: delete every correction of these messages (their text goes with them)."""
    cursor = await db.executemany(_DELETE_OF_MESSAGE, [(message_id,) for message_id in message_ids])
    return cursor.rowcount


def _params(c: Correction, now: float) -> tuple[Any, ...]:
    """The row for _INSERT, from a checked correction; an unset ``created_at`` is ``now``."""
    values = _values(c)
    return values if c.created_at is not None else (*values[:-1], now)


def _filters(since: float | None, guild_id: int | None) -> dict[str, Any]:
    return {"since": since, "guild": opt_int(guild_id)}


class CorrectionStore(SQLiteConnection):
    """Corrections and imported examples, and the training examples they resolve to."""

    def _init_corrections(self, labels: tuple[str, ...] | None) -> None:
        self.labels = labels
        """The labels a correction may use (None: any non-empty label)."""

    async def add_correction(self, c: Correction) -> None:
        """Save (or replace this user's earlier) correction; durable when this returns.

        Raises UnknownLabel / ValueError for bad input, StoreError if the database fails.
        """
        self._require_open()
        params = _params(check_correction(c, self.labels), time.time())

        async def body(db: aiosqlite.Connection) -> None:
            await db.execute(_UPSERT, params)

        await self._write("save a correction", body)

    async def add_examples(self, examples: Sequence[Correction]) -> int:
        """Save many corrections (e.g. an import) all-or-nothing; returns how many were new.

        Every example is validated before anything is written. Imported examples
        (``source="import"``, no message) already present with the same text and
        label are skipped, so importing a file twice does not weight it twice.
        """
        self._require_open()
        now = time.time()
        checked = [check_correction(c, self.labels) for c in examples]
        if not checked:
            return 0
        imported = [_params(c, now) for c in checked if c.imported]
        others = [_params(c, now) for c in checked if not c.imported]

        async def body(db: aiosqlite.Connection) -> int:
            added = 0
            if imported:  # rowcount sums over the batch; skipped repeats count 0
                added += (await db.executemany(_INSERT_IMPORTED, imported)).rowcount
            if others:
                added += (await db.executemany(_UPSERT, others)).rowcount
            return added

        return await self._write(f"save {len(checked)} examples", body)

    async def corrections_for_training(
        self, *, since: float | None = None, guild_id: int | None = None
    ) -> list[tuple[str, str]]:
        """``(text, label)`` training examples, one per corrected message (majority vote).

        With ``since``, only messages whose latest correction is at/after it (resolved
        over all their votes) and imports made since then.
        """
        rows = await self._read(
            "read training examples", _SELECT_TRAINING_EXAMPLES, _filters(since, guild_id)
        )
        return [(text, label) for text, label in rows]

    async def count_corrections(
        self, *, since: float | None = None, guild_id: int | None = None
    ) -> int:
        """How many examples :meth:`corrections_for_training` would return."""
        rows = await self._read(
            "count training examples", _COUNT_TRAINING_EXAMPLES, _filters(since, guild_id)
        )
        return int(rows[0][0])
