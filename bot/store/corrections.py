"""Corrections: human labels for texts, the bot's training data (low volume, precious).

Each :meth:`CorrectionStore.add_correction` commits before it returns, so an
acknowledged correction survives a crash. Imported examples (from a file, no
message) live in the same table, unique per (text, label). Admins list, delete and
relabel both (``emotion-machine corrections``), each change one transaction.
"""

from __future__ import annotations

import json
import operator
import time
from collections.abc import Sequence
from typing import Any

from .base import NO_LIMIT, StoreBase
from .records import SOURCES, Correction, CorrectionRow, RelabelCounts, check_correction, check_label, opt_int

_COLUMNS = (
    "guild_id", "channel_id", "message_id", "author_id", "corrector_id", "predicted_label",
    "label", "text", "model_version", "source", "by_author", "created_at",
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

# Per message: the label its writer gave, if they corrected it (they know what they meant);
# else the majority vote over all its corrections, ties going to the label whose latest vote is
# the most recent. Every vote stays stored either way (docs/learning.md, "Writers and readers").
# A message is included when its latest correction is at or after :since (so new disagreement
# re-resolves the whole message).
# Imported examples (no message) are each their own example.
_TRAINING_EXAMPLES = """
WITH filtered AS (
    SELECT id, message_id, label, text, created_at, by_author
    FROM corrections
    WHERE (CAST(:guild AS BIGINT) IS NULL OR guild_id = :guild)
      -- the shared base learns only from servers that let it (and the operator's own imports and shell)
      AND (:shared = 0 OR source <> 'discord'
           OR guild_id IN (SELECT guild_id FROM guild_settings WHERE share = 1))
),
messages AS (
    SELECT message_id, MAX(created_at) AS last_at
    FROM filtered
    WHERE message_id IS NOT NULL
    GROUP BY message_id
    HAVING CAST(:since AS DOUBLE PRECISION) IS NULL OR MAX(created_at) >= :since
),
votes AS (
    SELECT f.message_id, f.label, MAX(COALESCE(f.by_author, 0)) AS by_writer,
           COUNT(*) AS n, MAX(f.created_at) AS last_at, MAX(f.id) AS last_id
    FROM filtered AS f JOIN messages AS m ON m.message_id = f.message_id
    GROUP BY f.message_id, f.label
),
winners AS (
    SELECT message_id, label,
           ROW_NUMBER() OVER (PARTITION BY message_id
                              ORDER BY by_writer DESC, n DESC, last_at DESC, last_id DESC) AS rn
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
WHERE message_id IS NULL AND (CAST(:since AS DOUBLE PRECISION) IS NULL OR created_at >= :since)
"""
_SELECT_TRAINING_EXAMPLES = f"SELECT text, label FROM ({_TRAINING_EXAMPLES}) AS examples ORDER BY at, k"
_COUNT_TRAINING_EXAMPLES = f"SELECT COUNT(*) FROM ({_TRAINING_EXAMPLES}) AS examples"

# ----------------------------------------------------------------- what admins see and change

_ROW_COLUMNS = ", ".join(("id", "source", "guild_id", "channel_id", "message_id", "author_id", "corrector_id",
                          "by_author", "predicted_label", "label", "text", "model_version", "created_at"))
_LIST = f"""
SELECT {_ROW_COLUMNS} FROM corrections
WHERE (CAST(:guild AS BIGINT) IS NULL OR guild_id = :guild)
  AND (CAST(:label AS TEXT) IS NULL OR lower(label) = lower(:label))
  AND (CAST(:source AS TEXT) IS NULL OR source = :source)
  AND (CAST(:since AS DOUBLE PRECISION) IS NULL OR created_at >= :since)
ORDER BY created_at DESC, id DESC
LIMIT :limit
"""
_IMPORTED = "source = 'import' AND message_id IS NULL"  # the rows V4 keeps unique per (text, label)


def _by_ids(ids: str) -> dict[str, str]:
    """The statements on chosen ids; ``ids`` is the dialect's query of the ids in the JSON array ``:ids``."""
    chosen = f"id IN ({ids})"
    return {
        "missing": f"SELECT value FROM ({ids}) AS chosen WHERE value NOT IN (SELECT id FROM corrections) "
                   "ORDER BY value",
        "delete": f"DELETE FROM corrections WHERE {chosen}",
        "unchanged": f"SELECT COUNT(*) FROM corrections WHERE {chosen} AND label = :label",
        # An imported row whose text already has an imported example with the new label becomes that one.
        "merge_into_existing": f"""
DELETE FROM corrections
WHERE {chosen} AND label <> :label AND {_IMPORTED}
  AND EXISTS (SELECT 1 FROM corrections AS other
              WHERE other.source = 'import' AND other.message_id IS NULL
                AND other.text = corrections.text AND other.label = :label)
""",
        # Chosen imported rows sharing a text would collide with each other: the oldest of them stays.
        "merge_twins": f"""
DELETE FROM corrections
WHERE {chosen} AND label <> :label AND {_IMPORTED}
  AND id NOT IN (SELECT MIN(id) FROM corrections
                 WHERE {chosen} AND label <> :label AND {_IMPORTED} GROUP BY text)
""",
        "relabel": f"UPDATE corrections SET label = :label WHERE {chosen} AND label <> :label",
    }


# Ids travel as one JSON array, so a bulk change is one statement whatever the number of ids.
_BY_IDS = {
    "sqlite": _by_ids("SELECT value FROM json_each(:ids)"),
    "postgresql": _by_ids("SELECT CAST(value AS BIGINT) AS value FROM json_array_elements_text(CAST(:ids AS json))"),
}


class NoSuchCorrections(ValueError):
    """Some ids name no stored correction; nothing was changed."""

    def __init__(self, ids: Sequence[int]) -> None:
        self.ids = tuple(ids)
        shown = ", ".join(map(str, self.ids[:10])) + (f" and {len(self.ids) - 10} more" if len(self.ids) > 10 else "")
        super().__init__(f"no correction with id {shown}" if len(self.ids) == 1 else f"no corrections with ids {shown}")


def _id_array(ids: Sequence[int]) -> str:
    """The distinct ids as the JSON array :data:`_CHOSEN` reads; ValueError for a non-integer."""
    try:
        return json.dumps(sorted({int(i) for i in ids}))
    except (TypeError, ValueError):
        raise ValueError(f"correction ids must be integers, got {list(ids)!r}") from None


async def _require_ids(db: Any, sql: dict[str, str], ids: str) -> None:
    """Inside the write transaction: NoSuchCorrections unless every id is stored."""
    missing = [value for (value,) in await db.execute_fetchall(sql["missing"], {"ids": ids})]
    if missing:
        raise NoSuchCorrections(missing)


def _list_params(guild_id: int | None, label: str | None, source: str | None, since: float | None,
                 limit: int | None) -> dict[str, Any]:
    if source is not None and source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if limit is not None and int(limit) < 0:
        raise ValueError(f"limit must be 0 or more, got {limit!r}")
    return {"guild": opt_int(guild_id), "label": label, "source": source,
            "since": None if since is None else float(since), "limit": NO_LIMIT if limit is None else int(limit)}


def _row(values: Sequence[Any]) -> CorrectionRow:
    by_author = values[7]
    return CorrectionRow(*values[:7], None if by_author is None else bool(by_author), *values[8:])


_DELETE_OF_MESSAGE = "DELETE FROM corrections WHERE message_id = ?"


async def delete_message_corrections(db: Any, message_ids: Sequence[int]) -> int:
    """Inside a write transaction: delete every correction of these messages (their text goes with them)."""
    cursor = await db.executemany(_DELETE_OF_MESSAGE, [(message_id,) for message_id in message_ids])
    return cursor.rowcount


def _params(c: Correction, now: float) -> tuple[Any, ...]:
    """The row for _INSERT, from a checked correction; an unset ``created_at`` is ``now``."""
    values = _values(c)
    return values if c.created_at is not None else (*values[:-1], now)


def _filters(since: float | None, guild_id: int | None, shared: bool = False) -> dict[str, Any]:
    return {"since": since, "guild": opt_int(guild_id), "shared": int(bool(shared))}


class CorrectionStore(StoreBase):
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

        async def body(db: Any) -> None:
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

        async def body(db: Any) -> int:
            added = 0
            if imported:  # rowcount sums over the batch; skipped repeats count 0
                added += (await db.executemany(_INSERT_IMPORTED, imported)).rowcount
            if others:
                added += (await db.executemany(_UPSERT, others)).rowcount
            return added

        return await self._write(f"save {len(checked)} examples", body)

    async def corrections_for_training(
        self, *, since: float | None = None, guild_id: int | None = None, shared: bool = False
    ) -> list[tuple[str, str]]:
        """``(text, label)`` training examples, one per corrected message (majority vote).

        With ``since``, only messages whose latest correction is at/after it (resolved
        over all their votes) and imports made since then. ``guild_id``: that server's only
        (a server's own line). ``shared``: what the shared base may learn from, the servers
        that turned ``share`` on plus imports and the shell.
        """
        rows = await self._read(
            "read training examples", _SELECT_TRAINING_EXAMPLES, _filters(since, guild_id, shared)
        )
        return [(text, label) for text, label in rows]

    async def count_corrections(
        self, *, since: float | None = None, guild_id: int | None = None, shared: bool = False
    ) -> int:
        """How many examples :meth:`corrections_for_training` would return."""
        rows = await self._read(
            "count training examples", _COUNT_TRAINING_EXAMPLES, _filters(since, guild_id, shared)
        )
        return int(rows[0][0])

    async def list_corrections(
        self, *, guild_id: int | None = None, label: str | None = None, source: str | None = None,
        since: float | None = None, limit: int | None = None,
    ) -> list[CorrectionRow]:
        """Stored corrections and imported examples, newest first; every filter given must match.

        ``label`` matches in any case; ``since`` is a unix time; ``limit`` None returns them all.
        """
        params = _list_params(guild_id, label, source, since, limit)
        return [_row(values) for values in await self._read("list corrections", _LIST, params)]

    async def delete_corrections(self, ids: Sequence[int]) -> int:
        """Delete these corrections (text and all) in one transaction; returns how many.

        NoSuchCorrections, and nothing deleted, if any id is not stored.
        """
        self._require_open()
        chosen = _id_array(ids)

        sql = _BY_IDS[self.dialect]

        async def body(db: Any) -> int:
            await _require_ids(db, sql, chosen)
            return (await db.execute(sql["delete"], {"ids": chosen})).rowcount

        return 0 if chosen == "[]" else await self._write("delete corrections", body)

    async def relabel_corrections(self, ids: Sequence[int], label: str) -> RelabelCounts:
        """Give these corrections ``label``, in one transaction.

        An imported row whose text is already imported with ``label`` merges into that example
        (imports are unique per text and label, V4). NoSuchCorrections if any id is not stored,
        UnknownLabel / ValueError for a bad label: then nothing changes.
        """
        self._require_open()
        params = {"ids": _id_array(ids), "label": check_label(label, self.labels)}

        sql = _BY_IDS[self.dialect]

        async def body(db: Any) -> RelabelCounts:
            await _require_ids(db, sql, params["ids"])
            unchanged = (await db.execute_fetchall(sql["unchanged"], params))[0][0]
            merged = (await db.execute(sql["merge_into_existing"], params)).rowcount
            merged += (await db.execute(sql["merge_twins"], params)).rowcount
            relabelled = (await db.execute(sql["relabel"], params)).rowcount
            return RelabelCounts(relabelled=relabelled, merged=merged, unchanged=unchanged)

        if params["ids"] == "[]":
            return RelabelCounts(0, 0, 0)
        return await self._write(f"relabel corrections as {label!r}", body)
