"""Persistence for Emotion Machine: one SQLite file, accessed through aiosqlite.

Every SQL statement of the project lives in this module, behind the narrow
:class:`Store` class, so that another backend (e.g. PostgreSQL) only has to
implement :class:`StoreProtocol`.

Design notes
------------
* One connection; aiosqlite runs each statement on its own worker thread, so the
  event loop only pays for queueing a call and waking up with its result.
* An :class:`asyncio.Lock` serialises access to that connection so that the
  statements of one transaction never interleave with another coroutine's.
* Write transactions run in a shielded task: cancelling the caller never leaves
  a transaction half-done.
* Predictions (one per message, high volume, low value) are buffered in memory and
  written in batches; corrections (low volume, precious) are committed before
  :meth:`Store.add_correction` returns.
* SQLite failures surface as :class:`StoreError` with a message naming the file,
  so the bot can report them and stay up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import math
import os
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiosqlite

log = logging.getLogger(__name__)

T = TypeVar("T")

SOURCES = ("discord", "import", "shell")
"""Allowed values of :attr:`Correction.source`."""

_DAY = 86_400.0

__all__ = [
    "Correction",
    "GuildSettings",
    "ModelVersionRow",
    "PredictionRow",
    "SCHEMA_VERSION",
    "SOURCES",
    "Store",
    "StoreError",
    "StoreProtocol",
    "UnknownLabel",
    "migrations",
    "run_retention",
]


# --------------------------------------------------------------------------- errors


class StoreError(RuntimeError):
    """The database could not be used (disk full, read-only, locked, corrupt...).

    ``reason`` is a short machine-readable code ("full", "readonly", "locked",
    "cantopen", "io", "corrupt", "newer", "closed", "error") so callers can pick a
    user-facing message; ``str(err)`` is already a human sentence naming the file.
    """

    def __init__(self, message: str, *, path: str | None = None, reason: str = "error") -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason


class UnknownLabel(ValueError):
    """A correction used a label the model does not know."""

    def __init__(self, label: object, valid: Iterable[str]) -> None:
        self.label = label
        self.valid = tuple(valid)
        super().__init__(f"Unknown label {label!r}. Valid labels are: {', '.join(self.valid)}.")


# (substring of the SQLite message, reason, explanation) - first match wins.
_ERROR_KINDS: tuple[tuple[str, str, str], ...] = (
    ("database or disk is full", "full",
     "the disk is full (or the database reached its size limit); free some space and retry"),
    ("readonly database", "readonly",
     "the database file is read-only; check its permissions and that the disk is writable"),
    ("unable to open database file", "cantopen",
     "the file cannot be opened; check that its directory exists and is writable"),
    ("database is locked", "locked",
     "the database is locked by another process (is a second copy of the bot or a tool using it?)"),
    ("database table is locked", "locked",
     "the database is locked by another connection"),
    ("disk i/o error", "io", "the operating system reported a disk I/O error"),
    ("file is not a database", "corrupt", "the file is not a SQLite database (or is corrupted)"),
    ("malformed", "corrupt", "the database file is corrupted"),
)


def _translate_error(exc: sqlite3.Error, path: str, action: str) -> StoreError:
    """Turn a raw sqlite3 error into a StoreError with a sentence a human can act on."""
    text = str(exc)
    lowered = text.lower()
    for needle, reason, explanation in _ERROR_KINDS:
        if needle in lowered:
            break
    else:
        reason, explanation = "error", "SQLite reported an error"
    return StoreError(
        f"Could not {action} ({path}): {explanation}. [SQLite: {text}]",
        path=path,
        reason=reason,
    )


def _consume_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # mark as retrieved: the caller may have gone away


async def _shielded(coro: Awaitable[T]) -> T:
    """Run coro to completion even if the awaiting caller is cancelled."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(_consume_result)
    return await asyncio.shield(task)


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class PredictionRow:
    """What the model said about one message (never the message text)."""

    guild_id: int | None
    channel_id: int
    message_id: int
    author_id: int
    label: str
    probability: float
    model_version: str | None = None
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class Correction:
    """A human-provided label for a text; ``message_id`` is None for imported examples."""

    text: str
    label: str
    guild_id: int | None = None
    channel_id: int | None = None
    message_id: int | None = None
    author_id: int | None = None
    corrector_id: int | None = None
    predicted_label: str | None = None
    model_version: str | None = None
    source: str = "discord"
    created_at: float | None = None  # None: now, at insertion time


@dataclass(frozen=True, slots=True)
class GuildSettings:
    """Per-guild switches; the defaults apply to guilds that never changed anything."""

    enabled: bool = True
    allowed_channels: frozenset[int] = frozenset()
    denied_channels: frozenset[int] = frozenset()
    threshold: float = 0.5
    show_neutral: bool = False
    reactions: bool = True

    def channel_enabled(self, channel_id: int, parent_id: int | None = None) -> bool:
        """Whether the bot should tag messages in this channel (or thread of ``parent_id``).

        A disabled guild disables every channel; the deny list wins over the allow
        list; a non-empty allow list enables only its channels and their threads.
        """
        if not self.enabled:
            return False
        if channel_id in self.denied_channels or (
            parent_id is not None and parent_id in self.denied_channels
        ):
            return False
        if self.allowed_channels:
            return channel_id in self.allowed_channels or (
                parent_id is not None and parent_id in self.allowed_channels
            )
        return True


_GUILD_SETTING_KEYS = tuple(f.name for f in dataclasses.fields(GuildSettings))


@dataclass(frozen=True, slots=True)
class ModelVersionRow:
    """One trained (or base) model the bot can load."""

    version: str
    path: str
    parent: str | None
    base: str | None
    metrics: dict[str, Any] = field(hash=False)
    examples: int
    created_at: float
    is_current: bool


# --------------------------------------------------------------------------- migrations

_MIGRATION_NAME = re.compile(r"V(\d+)__(\w+)\.sql")


@functools.cache
def migrations() -> tuple[tuple[int, str, str], ...]:
    """All ``(version, name, sql)`` migrations shipped in ``bot/migrations``, in order."""
    found: list[tuple[int, str, str]] = []
    for entry in resources.files("bot.migrations").iterdir():
        match = _MIGRATION_NAME.fullmatch(entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return tuple(found)


SCHEMA_VERSION = len(migrations())
"""The schema version this build creates and understands."""


def split_sql(script: str) -> list[str]:
    """Split a SQL script into single statements (sqlite3 executes one at a time)."""
    statements: list[str] = []
    buf = ""
    parts = script.split(";")
    for part in parts[:-1]:
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    rest = buf + parts[-1]
    leftover = "\n".join(
        line for line in rest.splitlines() if line.strip() and not line.strip().startswith("--")
    )
    if leftover.strip():
        raise ValueError(f"incomplete SQL statement at end of script: {leftover[:80]!r}")
    return statements


# --------------------------------------------------------------------------- SQL

_PREDICTION_COLUMNS = (
    "message_id, guild_id, channel_id, author_id, label, probability, model_version, created_at"
)
_INSERT_PREDICTION = (
    f"INSERT OR REPLACE INTO predictions ({_PREDICTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_PREDICTION = f"SELECT {_PREDICTION_COLUMNS} FROM predictions WHERE message_id = ?"
_DELETE_PREDICTION = "DELETE FROM predictions WHERE message_id = ?"
_DELETE_PREDICTIONS_BY_AUTHOR = "DELETE FROM predictions WHERE author_id = ?"
_DELETE_OLD_PREDICTIONS = (
    "DELETE FROM predictions WHERE rowid IN "
    "(SELECT rowid FROM predictions WHERE created_at < ? LIMIT ?)"
)
_RETENTION_CHUNK = 1_000  # ~tens of ms per transaction even with all indexes

_CORRECTION_COLUMNS = (
    "guild_id, channel_id, message_id, author_id, corrector_id, predicted_label, "
    "label, text, model_version, source, created_at"
)
_UPSERT_CORRECTION = f"""
INSERT INTO corrections ({_CORRECTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (message_id, corrector_id) DO UPDATE SET
    guild_id = excluded.guild_id,
    channel_id = excluded.channel_id,
    author_id = excluded.author_id,
    predicted_label = excluded.predicted_label,
    label = excluded.label,
    text = excluded.text,
    model_version = excluded.model_version,
    source = excluded.source,
    created_at = excluded.created_at
"""
# Imported examples are unique per (text, label) (V4): a repeated import adds nothing.
_INSERT_IMPORTED = f"""
INSERT INTO corrections ({_CORRECTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
"""
_DELETE_CORRECTIONS_OF_USER = "DELETE FROM corrections WHERE corrector_id = ? OR author_id = ?"

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

# Counts per (UTC day, label). The day expression must match the one in the
# predictions_guild_day index (V2) exactly: the guild query then reads that index
# in (day, label) order, covering and without a sort. A leading "+" keeps the
# planner off the guild index when a narrower channel/author index applies.
_DAY_EXPR = "CAST(created_at / 86400 AS INTEGER)"
_EMOTION_COUNTS = f"""
SELECT date({_DAY_EXPR} * 86400, 'unixepoch'), label, COUNT(*)
FROM predictions
WHERE {{guild}} = ? AND {_DAY_EXPR} >= ? AND created_at >= ? {{extra}}
GROUP BY {_DAY_EXPR}, label
ORDER BY {_DAY_EXPR}, label
"""
# Grouping by day first lets SQLite stream the covering index; the outer sum is tiny.
_LABEL_COUNTS_ALL = f"""
SELECT label, SUM(n) FROM (
    SELECT label, COUNT(*) AS n FROM predictions GROUP BY guild_id, {_DAY_EXPR}, label
) GROUP BY label ORDER BY label
"""
_LABEL_COUNTS_GUILD = f"""
SELECT label, SUM(n) FROM (
    SELECT label, COUNT(*) AS n FROM predictions WHERE guild_id = ? GROUP BY {_DAY_EXPR}, label
) GROUP BY label ORDER BY label
"""
_STATS = """
SELECT (SELECT COUNT(*) FROM predictions),
       (SELECT COUNT(*) FROM corrections),
       (SELECT COUNT(*) FROM opted_out_users),
       (SELECT COUNT(*) FROM model_versions),
       (SELECT version FROM model_versions WHERE is_current = 1)
"""

_SELECT_OPTED_OUT = "SELECT user_id FROM opted_out_users"
_INSERT_OPTED_OUT = "INSERT OR IGNORE INTO opted_out_users (user_id, created_at) VALUES (?, ?)"
_DELETE_OPTED_OUT = "DELETE FROM opted_out_users WHERE user_id = ?"

_SELECT_GUILD_SETTINGS = """
SELECT enabled, threshold, show_neutral, reactions,
       (SELECT json_group_array(channel_id) FROM guild_channels
        WHERE guild_id = s.guild_id AND mode = 'allow'),
       (SELECT json_group_array(channel_id) FROM guild_channels
        WHERE guild_id = s.guild_id AND mode = 'deny')
FROM guild_settings AS s WHERE guild_id = ?
"""
_UPSERT_GUILD_SETTINGS = """
INSERT INTO guild_settings (guild_id, enabled, threshold, show_neutral, reactions, updated_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (guild_id) DO UPDATE SET
    enabled = excluded.enabled,
    threshold = excluded.threshold,
    show_neutral = excluded.show_neutral,
    reactions = excluded.reactions,
    updated_at = excluded.updated_at
"""
_DELETE_GUILD_CHANNELS = "DELETE FROM guild_channels WHERE guild_id = ?"
_INSERT_GUILD_CHANNEL = "INSERT INTO guild_channels (guild_id, mode, channel_id) VALUES (?, ?, ?)"

_MODEL_COLUMNS = "version, path, parent, base, metrics, examples, created_at, is_current"
_INSERT_MODEL_VERSION = (
    f"INSERT INTO model_versions ({_MODEL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_CLEAR_CURRENT_MODEL = "UPDATE model_versions SET is_current = 0 WHERE is_current = 1"
_SET_CURRENT_MODEL = "UPDATE model_versions SET is_current = 1 WHERE version = ?"
_SELECT_MODEL_VERSION = f"SELECT {_MODEL_COLUMNS} FROM model_versions WHERE version = ?"
_SELECT_CURRENT_MODEL = f"SELECT {_MODEL_COLUMNS} FROM model_versions WHERE is_current = 1"
_SELECT_MODEL_VERSIONS = f"SELECT {_MODEL_COLUMNS} FROM model_versions ORDER BY created_at, version"


# --------------------------------------------------------------------------- helpers


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _prediction_tuple(row: PredictionRow) -> tuple[Any, ...]:
    """Validate and coerce a prediction now, so no bad row can poison a later batch."""
    label = row.label
    if not isinstance(label, str) or not label:
        raise ValueError(f"prediction label must be a non-empty string, got {label!r}")
    probability = float(row.probability)
    created_at = float(row.created_at)
    if not (math.isfinite(probability) and math.isfinite(created_at)):
        raise ValueError("prediction probability and created_at must be finite numbers")
    return (
        int(row.message_id),
        _opt_int(row.guild_id),
        int(row.channel_id),
        int(row.author_id),
        label,
        probability,
        None if row.model_version is None else str(row.model_version),
        created_at,
    )


def _prediction_from_tuple(t: Sequence[Any]) -> PredictionRow:
    message_id, guild_id, channel_id, author_id, label, probability, version, created_at = t
    return PredictionRow(
        guild_id=guild_id,
        channel_id=channel_id,
        message_id=message_id,
        author_id=author_id,
        label=label,
        probability=probability,
        model_version=version,
        created_at=created_at,
    )


def _model_from_tuple(t: Sequence[Any]) -> ModelVersionRow:
    version, path, parent, base, metrics, examples, created_at, is_current = t
    return ModelVersionRow(
        version=version,
        path=path,
        parent=parent,
        base=base,
        metrics=json.loads(metrics),
        examples=examples,
        created_at=created_at,
        is_current=bool(is_current),
    )


def _json_safe(value: Any) -> Any:
    """Replace NaN/inf (common in eval metrics) with None: SQLite's JSON rejects them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{key} must be true or false, got {value!r}")


def _as_channels(key: str, value: Any) -> frozenset[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{key} must be a collection of channel ids, got {value!r}")
    try:
        return frozenset(int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{key} must contain channel ids (integers): {exc}") from None


def _validate_guild_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(changes) - set(_GUILD_SETTING_KEYS))
    if unknown:
        raise ValueError(
            f"Unknown guild setting(s): {', '.join(unknown)}. "
            f"Valid settings: {', '.join(_GUILD_SETTING_KEYS)}."
        )
    clean: dict[str, Any] = {}
    for key, value in changes.items():
        if key in ("enabled", "show_neutral", "reactions"):
            clean[key] = _as_bool(key, value)
        elif key in ("allowed_channels", "denied_channels"):
            clean[key] = _as_channels(key, value)
        else:  # threshold
            try:
                threshold = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"threshold must be a number, got {value!r}") from None
            if not 0.0 <= threshold <= 1.0:  # also rejects NaN
                raise ValueError(f"threshold must be between 0 and 1, got {value!r}")
            clean[key] = threshold
    return clean


def emotion_counts_query(
    *,
    guild_id: int,
    channel_id: int | None,
    author_id: int | None,
    since: float,
    until: float | None,
) -> tuple[str, list[Any]]:
    """SQL and parameters for :meth:`Store.emotion_counts` (exposed for query-plan tests)."""
    since = float(since)
    if not math.isfinite(since):
        raise ValueError(f"since must be a finite timestamp, got {since!r}")
    # floor(since / day) <= the day of every row at/after since: a safe, narrowing bound.
    extra = ""
    params: list[Any] = [int(guild_id), math.floor(since / _DAY), since]
    if until is not None:
        extra += " AND created_at < ?"
        params.append(float(until))
        if until >= 0:  # CAST truncates toward zero, so only bound non-negative times
            extra += f" AND {_DAY_EXPR} <= ?"
            params.append(math.floor(float(until) / _DAY))
    if channel_id is not None:
        extra += " AND channel_id = ?"
        params.append(int(channel_id))
    if author_id is not None:
        extra += " AND author_id = ?"
        params.append(int(author_id))
    narrower = channel_id is not None or author_id is not None
    return _EMOTION_COUNTS.format(guild="+guild_id" if narrower else "guild_id", extra=extra), params


# --------------------------------------------------------------------------- protocol


class StoreProtocol(Protocol):
    """The public surface of a store; a PostgreSQL backend would implement this."""

    async def close(self) -> None: ...
    async def refresh_if_changed(self) -> bool: ...
    async def flush(self) -> int: ...
    async def record_prediction(self, row: PredictionRow) -> None: ...
    async def get_prediction(self, message_id: int) -> PredictionRow | None: ...
    async def delete_prediction(self, message_id: int) -> bool: ...
    async def delete_predictions_for_author(self, user_id: int) -> int: ...
    async def delete_predictions_older_than(self, days: float, now: float | None = None) -> int: ...
    async def add_correction(self, c: Correction) -> None: ...
    async def add_examples(self, examples: Sequence[Correction]) -> int: ...
    async def corrections_for_training(
        self, *, since: float | None = None, guild_id: int | None = None
    ) -> list[tuple[str, str]]: ...
    async def count_corrections(
        self, *, since: float | None = None, guild_id: int | None = None
    ) -> int: ...
    async def emotion_counts(
        self,
        *,
        guild_id: int,
        channel_id: int | None = None,
        author_id: int | None = None,
        since: float,
        until: float | None = None,
    ) -> list[tuple[str, str, int]]: ...
    async def label_counts(self, guild_id: int | None = None) -> dict[str, int]: ...
    async def stats(self) -> dict[str, Any]: ...
    async def forget_user(self, user_id: int) -> dict[str, int]: ...
    async def set_opted_out(self, user_id: int, opted_out: bool) -> None: ...
    async def is_opted_out(self, user_id: int) -> bool: ...
    async def opted_out_users(self) -> set[int]: ...
    async def get_guild_settings(self, guild_id: int) -> GuildSettings: ...
    async def update_guild_settings(self, guild_id: int, **changes: Any) -> GuildSettings: ...
    async def add_model_version(
        self,
        version: str,
        path: str,
        *,
        parent: str | None = None,
        base: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        examples: int = 0,
        created_at: float | None = None,
        make_current: bool = False,
    ) -> ModelVersionRow: ...
    async def set_current_model_version(self, version: str) -> ModelVersionRow: ...
    async def current_model_version(self) -> ModelVersionRow | None: ...
    async def list_model_versions(self) -> list[ModelVersionRow]: ...


# --------------------------------------------------------------------------- store


class Store:
    """SQLite-backed store; create with :meth:`Store.open`, release with :meth:`close`."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        path: str,
        *,
        labels: Sequence[str] | None,
        flush_interval: float,
        batch_size: int,
        max_buffer: int,
        defaults: GuildSettings | None = None,
    ) -> None:
        """Private: use :meth:`open`, which also migrates and starts the flush task."""
        self._db: aiosqlite.Connection | None = db
        self.path = path
        self.labels: tuple[str, ...] | None = None if labels is None else tuple(labels)
        self._label_set = None if labels is None else frozenset(labels)
        self._flush_interval = flush_interval
        self._batch_size = batch_size
        self._max_buffer = max_buffer
        self._defaults = defaults or GuildSettings()
        self._lock = asyncio.Lock()
        # message_id -> coerced row tuple; dict keeps insertion order (oldest first)
        # and gives INSERT OR REPLACE semantics within a batch.
        self._buffer: dict[int, tuple[Any, ...]] = {}
        self._eager: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._flush_failing = False
        self._drop_warned = False
        self.dropped_predictions = 0
        """Predictions discarded because the buffer overflowed while the database failed."""
        self._opted_out: set[int] = set()
        self._data_version: int | None = None  # PRAGMA data_version at the last cache load
        self._cache_generation = 0  # bumped by refresh_caches
        self._guilds: dict[int, GuildSettings] = {}
        self._closed = False

    # ----------------------------------------------------------------- lifecycle

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        labels: Sequence[str] | None = None,
        flush_interval: float = 0.5,
        batch_size: int = 500,
        busy_timeout_ms: int = 5_000,
        max_buffer: int = 100_000,
        defaults: GuildSettings | None = None,
    ) -> Store:
        """Open (creating and migrating if needed) the database at ``path``.

        ``path`` may be a ``file:...`` URI (e.g. ``?mode=ro``) or ``:memory:``.
        ``labels`` restricts correction labels (None accepts any non-empty label).
        ``defaults`` are the settings of a guild that never changed any (the bot's EMOTION_THRESHOLD).
        """
        if flush_interval <= 0 or batch_size < 1 or max_buffer < batch_size:
            raise ValueError("need flush_interval > 0 and 1 <= batch_size <= max_buffer")
        if labels is not None and (not labels or not all(isinstance(x, str) and x for x in labels)):
            raise ValueError("labels must be a non-empty sequence of non-empty strings")
        path_str = os.fspath(path)
        uri = path_str.startswith("file:")
        if not uri and path_str != ":memory:":
            try:
                Path(path_str).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"Could not create the directory for the database {path_str}: "
                    f"{exc.strerror} ({exc.filename})",
                    path=path_str,
                    reason="cantopen",
                ) from exc
        try:
            db = await aiosqlite.connect(
                path_str, uri=uri, isolation_level=None, timeout=busy_timeout_ms / 1000
            )
        except sqlite3.Error as exc:
            raise _translate_error(exc, path_str, "open the database") from exc
        store = cls(
            db,
            path_str,
            labels=labels,
            flush_interval=flush_interval,
            batch_size=batch_size,
            max_buffer=max_buffer,
            defaults=defaults,
        )
        try:
            await store._setup(busy_timeout_ms)
        except BaseException:
            with contextlib.suppress(Exception):
                await db.close()
            raise
        return store

    async def _setup(self, busy_timeout_ms: int) -> None:
        db = self._conn()
        with self._guard("open the database"):
            await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = (await db.execute_fetchall("PRAGMA journal_mode = WAL"))[0][0]
            if mode.lower() not in ("wal", "memory"):
                log.warning("Database %s is in %s journal mode, not WAL", self.path, mode)
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
        await self._migrate()
        await self.refresh_caches()

    async def _migrate(self) -> None:
        """Apply pending migrations, each in its own transaction, forward only."""
        db = self._conn()
        with self._guard("read the schema version"):
            current = (await db.execute_fetchall("PRAGMA user_version"))[0][0]
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"The database {self.path} has schema version {current}, newer than this "
                f"version of Emotion Machine understands ({SCHEMA_VERSION}). Upgrade the bot; "
                "migrations only go forward.",
                path=self.path,
                reason="newer",
            )
        for version, name, sql in migrations():
            if version <= current:
                continue

            async def apply(db: aiosqlite.Connection, version: int = version, sql: str = sql) -> bool:
                # Re-check inside the write lock: another process may have migrated.
                if (await db.execute_fetchall("PRAGMA user_version"))[0][0] >= version:
                    return False
                for statement in split_sql(sql):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {version}")
                return True

            if await self._write(f"apply migration V{version}__{name}", apply):
                log.info("Applied migration V%d__%s to %s", version, name, self.path)

    async def refresh_caches(self) -> None:
        """Reload the in-memory opt-out and guild caches (after another process wrote)."""
        async with self._lock:  # read and swap in one step: an opt-out here can't slip between
            db = self._conn()
            with self._guard("load opted-out users"):
                rows = await db.execute_fetchall(_SELECT_OPTED_OUT)
                version = (await db.execute_fetchall("PRAGMA data_version"))[0][0]
            self._opted_out = {r[0] for r in rows}
            self._guilds.clear()
            self._cache_generation += 1
            self._data_version = version

    async def refresh_if_changed(self) -> bool:
        """Reload the caches if another connection committed since the last load.

        ``PRAGMA data_version`` changes only for other connections' commits, so this
        costs one tiny read when nothing changed. Lets a second bot process sharing
        the database (or an operator's edit) see opt-outs and guild settings.
        """
        rows = await self._read("check the database for changes", "PRAGMA data_version")
        if rows[0][0] == self._data_version:
            return False
        await self.refresh_caches()
        return True

    async def close(self) -> None:
        """Flush buffered predictions and close the connection; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        try:
            await self._flush_now()
        except Exception:
            log.exception(
                "Could not save %d buffered predictions to %s while closing; they are lost",
                len(self._buffer),
                self.path,
            )
        db, self._db = self._db, None
        if db is not None:
            async with self._lock:
                with contextlib.suppress(Exception):
                    # Refresh planner statistics cheaply (sampled, not a full ANALYZE).
                    await db.execute("PRAGMA analysis_limit = 1000")
                    await db.execute("PRAGMA optimize")
                try:
                    await db.close()
                except sqlite3.Error as exc:
                    log.warning("Error while closing %s: %s", self.path, exc)

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- plumbing

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError(f"The store for {self.path} is closed", path=self.path, reason="closed")
        return self._db

    def _require_open(self) -> None:
        if self._closed:
            raise StoreError(f"The store for {self.path} is closed", path=self.path, reason="closed")

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Translate sqlite3 errors raised inside the block into StoreError."""
        try:
            yield
        except sqlite3.Error as exc:
            raise _translate_error(exc, self.path, action) from exc

    async def _rollback(self, db: aiosqlite.Connection) -> None:
        try:
            await db.execute("ROLLBACK")
        except (sqlite3.Error, ValueError):
            pass  # no transaction left (SQLite already rolled back) or connection gone

    async def _transaction_locked(
        self, action: str, body: Callable[[aiosqlite.Connection], Awaitable[T]]
    ) -> T:
        """BEGIN IMMEDIATE; body; COMMIT - the caller must hold ``self._lock``."""
        db = self._conn()
        with self._guard(action):
            await db.execute("BEGIN IMMEDIATE")
            try:
                result = await body(db)
                await db.execute("COMMIT")
            except BaseException:
                await self._rollback(db)
                raise
        return result

    async def _write(
        self,
        action: str,
        body: Callable[[aiosqlite.Connection], Awaitable[T]],
        on_commit: Callable[[T], None] | None = None,
    ) -> T:
        """Run body in one write transaction; ``on_commit`` runs under the lock after COMMIT."""

        async def run() -> T:
            async with self._lock:
                result = await self._transaction_locked(action, body)
                if on_commit is not None:
                    on_commit(result)
                return result

        return await _shielded(run())

    async def _read(self, action: str, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        async with self._lock:
            db = self._conn()  # inside the lock: close() may have run while we waited
            with self._guard(action):
                return list(await db.execute_fetchall(sql, params))

    # ----------------------------------------------------------------- predictions

    async def record_prediction(self, row: PredictionRow) -> None:
        """Buffer a prediction; it is written with the next batch (or on close)."""
        self._require_open()
        t = _prediction_tuple(row)
        buffer = self._buffer
        buffer[t[0]] = t
        if len(buffer) > self._max_buffer:
            self._drop_oldest()
        if len(buffer) >= self._batch_size and (self._eager is None or self._eager.done()):
            # A full batch is written now rather than at the next tick.
            self._eager = asyncio.create_task(self._flush_quietly(), name=f"store-batch:{self.path}")
        self._ensure_flusher()

    def _drop_oldest(self) -> None:
        """Bound memory while the database is failing: forget the oldest predictions."""
        excess = len(self._buffer) - self._max_buffer
        if excess <= 0:
            return
        # Drop a chunk at a time: deleting dict heads one by one degrades to O(n).
        excess = max(excess, self._max_buffer // 10)
        for key in list(itertools.islice(self._buffer, excess)):
            del self._buffer[key]
        self.dropped_predictions += excess
        if not self._drop_warned:
            self._drop_warned = True
            log.warning(
                "Prediction buffer for %s is full (%d rows): the database has been failing, "
                "dropping the oldest predictions",
                self.path,
                self._max_buffer,
            )

    @property
    def buffered(self) -> int:
        """Number of predictions waiting to be written."""
        return len(self._buffer)

    async def flush(self) -> int:
        """Write all buffered predictions in one transaction; returns how many.

        On failure the rows stay buffered (a later flush retries) and StoreError is raised.
        """
        self._require_open()
        return await self._flush_now()

    async def _flush_now(self) -> int:
        if not self._buffer or self._db is None:
            return 0
        return await _shielded(self._flush_locked())

    async def _flush_locked(self) -> int:
        async with self._lock:
            if not self._buffer:
                return 0
            batch, self._buffer = self._buffer, {}

            async def insert(db: aiosqlite.Connection) -> None:
                # The dict view is iterated on aiosqlite's thread; nothing mutates `batch`.
                await db.executemany(_INSERT_PREDICTION, batch.values())

            try:
                await self._transaction_locked(f"save {len(batch)} predictions", insert)
            except BaseException as exc:
                if isinstance(exc, StoreError) and isinstance(exc.__cause__, sqlite3.IntegrityError):
                    log.error("Dropping %d predictions that the database refused: %s", len(batch), exc)
                    self.dropped_predictions += len(batch)
                    raise
                # Keep the rows for a retry; rows recorded meanwhile are newer and win.
                batch.update(self._buffer)
                self._buffer = batch
                self._drop_oldest()
                raise
        if self._flush_failing:
            log.info("Saving predictions to %s works again", self.path)
        self._flush_failing = False
        self._drop_warned = False
        return len(batch)

    def _ensure_flusher(self) -> None:
        """Start the flush task when rows are waiting; it ends once the buffer is empty.

        No task idles between bursts, so a quiet bot does no periodic wake-ups.
        """
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name=f"store-flush:{self.path}")

    async def _flush_loop(self) -> None:
        """Flush every ``flush_interval`` or when a batch is full, until nothing is buffered.

        Failures are logged once per outage (with traceback) and retried with
        backoff; the task itself never dies from a database error.
        """
        backoff = self._flush_interval
        while self._buffer:
            if len(self._buffer) < self._batch_size:
                await asyncio.sleep(self._flush_interval)
            try:
                await self._flush_now()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._flush_failing:
                    self._flush_failing = True
                    log.exception(
                        "Could not save predictions; keeping %d buffered and retrying: %s",
                        len(self._buffer),
                        exc,
                    )
                else:
                    log.debug("Prediction flush still failing: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            else:
                backoff = self._flush_interval

    async def _flush_quietly(self) -> None:
        """Flush before a read so it sees recent rows; a failing flush must not block reads."""
        try:
            await self._flush_now()
        except StoreError as exc:
            log.debug("Flush before read failed: %s", exc)

    async def get_prediction(self, message_id: int) -> PredictionRow | None:
        """The prediction for a message, including ones still in the buffer."""
        message_id = int(message_id)
        t = self._buffer.get(message_id)
        if t is None:
            rows = await self._read("read a prediction", _SELECT_PREDICTION, (message_id,))
            # A failed flush may have put the row back into the buffer meanwhile.
            t = rows[0] if rows else self._buffer.get(message_id)
        return None if t is None else _prediction_from_tuple(t)

    async def delete_prediction(self, message_id: int) -> bool:
        """Delete one message's prediction (e.g. the message was deleted)."""
        message_id = int(message_id)

        async def body(db: aiosqlite.Connection) -> bool:
            buffered = self._buffer.pop(message_id, None) is not None
            cursor = await db.execute(_DELETE_PREDICTION, (message_id,))
            return buffered or cursor.rowcount > 0

        self._require_open()
        return await self._write("delete a prediction", body)

    def _discard_buffered(self, keep: Callable[[tuple[Any, ...]], bool]) -> int:
        before = len(self._buffer)
        self._buffer = {k: t for k, t in self._buffer.items() if keep(t)}
        return before - len(self._buffer)

    async def delete_predictions_for_author(self, user_id: int) -> int:
        """Delete predictions about a user's messages; returns how many."""
        user_id = int(user_id)

        async def body(db: aiosqlite.Connection) -> int:
            n = self._discard_buffered(lambda t: t[3] != user_id)
            cursor = await db.execute(_DELETE_PREDICTIONS_BY_AUTHOR, (user_id,))
            return n + cursor.rowcount

        self._require_open()
        return await self._write("delete a user's predictions", body)

    async def delete_predictions_older_than(self, days: float, now: float | None = None) -> int:
        """Retention: delete predictions older than ``days``; returns how many.

        Deletes in chunks of separate transactions so that a large purge never
        holds the write lock long enough to stall the bot's other writes.
        """
        self._require_open()
        days = float(days)
        if not days >= 0:
            raise ValueError(f"days must be >= 0, got {days!r}")
        cutoff = (time.time() if now is None else float(now)) - days * _DAY
        total = 0

        async def chunk(db: aiosqlite.Connection) -> int:
            n = self._discard_buffered(lambda t: t[7] >= cutoff)
            cursor = await db.execute(_DELETE_OLD_PREDICTIONS, (cutoff, _RETENTION_CHUNK))
            return n + cursor.rowcount

        while True:
            deleted = await self._write("delete old predictions", chunk)
            total += deleted
            if deleted < _RETENTION_CHUNK:
                return total

    # ----------------------------------------------------------------- corrections

    def _correction_tuple(self, c: Correction, now: float) -> tuple[Any, ...]:
        if not isinstance(c.text, str) or not c.text.strip():
            raise ValueError("correction text is empty")
        label = c.label
        if not isinstance(label, str) or not label.strip():
            raise ValueError("correction label is empty")
        if self._label_set is not None and label not in self._label_set:
            raise UnknownLabel(label, self.labels or ())
        if c.source not in SOURCES:
            raise ValueError(f"correction source must be one of {', '.join(SOURCES)}, got {c.source!r}")
        created_at = now if c.created_at is None else float(c.created_at)
        return (
            _opt_int(c.guild_id),
            _opt_int(c.channel_id),
            _opt_int(c.message_id),
            _opt_int(c.author_id),
            _opt_int(c.corrector_id),
            c.predicted_label,
            label,
            c.text,
            c.model_version,
            c.source,
            created_at,
        )

    async def add_correction(self, c: Correction) -> None:
        """Save (or replace this user's earlier) correction; durable when this returns.

        Raises UnknownLabel / ValueError for bad input, StoreError if the database fails.
        """
        self._require_open()
        params = self._correction_tuple(c, time.time())

        async def body(db: aiosqlite.Connection) -> None:
            await db.execute(_UPSERT_CORRECTION, params)

        await self._write("save a correction", body)

    async def add_examples(self, examples: Sequence[Correction]) -> int:
        """Save many corrections (e.g. an import) all-or-nothing; returns how many were new.

        Every example is validated before anything is written. Imported examples
        (``source="import"``, no message) already present with the same text and
        label are skipped, so importing a file twice does not weight it twice.
        """
        self._require_open()
        now = time.time()
        params = [self._correction_tuple(c, now) for c in examples]
        if not params:
            return 0
        imported: list[tuple[Any, ...]] = []
        others: list[tuple[Any, ...]] = []
        for c, p in zip(examples, params):
            (imported if c.source == "import" and c.message_id is None else others).append(p)

        async def body(db: aiosqlite.Connection) -> int:
            added = 0
            if imported:  # rowcount sums over the batch; skipped repeats count 0
                added += (await db.executemany(_INSERT_IMPORTED, imported)).rowcount
            if others:
                added += (await db.executemany(_UPSERT_CORRECTION, others)).rowcount
            return added

        return await self._write(f"save {len(params)} examples", body)

    async def corrections_for_training(
        self, *, since: float | None = None, guild_id: int | None = None
    ) -> list[tuple[str, str]]:
        """``(text, label)`` training examples, one per corrected message (majority vote).

        With ``since``, only messages whose latest correction is at/after it (resolved
        over all their votes) and imports made since then.
        """
        rows = await self._read(
            "read training examples",
            _SELECT_TRAINING_EXAMPLES,
            {"since": since, "guild": _opt_int(guild_id)},
        )
        return [(text, label) for text, label in rows]

    async def count_corrections(
        self, *, since: float | None = None, guild_id: int | None = None
    ) -> int:
        """How many examples :meth:`corrections_for_training` would return."""
        rows = await self._read(
            "count training examples",
            _COUNT_TRAINING_EXAMPLES,
            {"since": since, "guild": _opt_int(guild_id)},
        )
        return int(rows[0][0])

    # ----------------------------------------------------------------- summaries

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
            guild_id=guild_id, channel_id=channel_id, author_id=author_id, since=since, until=until
        )
        self._require_open()
        await self._flush_quietly()
        rows = await self._read("count emotions", sql, params)
        return [(day, label, n) for day, label, n in rows]

    async def label_counts(self, guild_id: int | None = None) -> dict[str, int]:
        """Number of predictions per label (in one guild, or everywhere)."""
        self._require_open()
        await self._flush_quietly()
        if guild_id is None:
            rows = await self._read("count labels", _LABEL_COUNTS_ALL)
        else:
            rows = await self._read("count labels", _LABEL_COUNTS_GUILD, (int(guild_id),))
        return {label: n for label, n in rows}

    async def stats(self) -> dict[str, Any]:
        """Totals for an "about" command."""
        self._require_open()
        await self._flush_quietly()
        (predictions, corrections, opted_out, models, current), = await self._read("read stats", _STATS)
        return {
            "predictions": predictions,
            "corrections": corrections,
            "training_examples": await self.count_corrections(),
            "opted_out_users": opted_out,
            "model_versions": models,
            "current_model_version": current,
            "buffered_predictions": len(self._buffer),
        }

    # ----------------------------------------------------------------- users

    async def forget_user(self, user_id: int) -> dict[str, int]:
        """Delete everything about a user: their corrections (given or about their
        messages) and predictions about their messages. Returns counts deleted."""
        self._require_open()
        user_id = int(user_id)

        async def body(db: aiosqlite.Connection) -> dict[str, int]:
            buffered = self._discard_buffered(lambda t: t[3] != user_id)
            corrections = await db.execute(_DELETE_CORRECTIONS_OF_USER, (user_id, user_id))
            predictions = await db.execute(_DELETE_PREDICTIONS_BY_AUTHOR, (user_id,))
            return {"corrections": corrections.rowcount, "predictions": predictions.rowcount + buffered}

        return await self._write("forget a user", body)

    async def set_opted_out(self, user_id: int, opted_out: bool) -> None:
        """Opt a user out of (or back into) being tagged; the cache follows the commit."""
        self._require_open()
        user_id = int(user_id)

        async def body(db: aiosqlite.Connection) -> None:
            if opted_out:
                await db.execute(_INSERT_OPTED_OUT, (user_id, time.time()))
            else:
                await db.execute(_DELETE_OPTED_OUT, (user_id,))

        def update_cache(_: None) -> None:
            if opted_out:
                self._opted_out.add(user_id)
            else:
                self._opted_out.discard(user_id)

        await self._write("save an opt-out", body, update_cache)

    async def is_opted_out(self, user_id: int) -> bool:
        """Called for every message, so answered from memory."""
        return user_id in self._opted_out

    async def opted_out_users(self) -> set[int]:
        return set(self._opted_out)

    # ----------------------------------------------------------------- guild settings

    async def get_guild_settings(self, guild_id: int) -> GuildSettings:
        """Settings of a guild (defaults if never changed); cached after the first read."""
        guild_id = int(guild_id)
        cached = self._guilds.get(guild_id)
        if cached is not None:
            return cached
        generation = self._cache_generation
        rows = await self._read("read guild settings", _SELECT_GUILD_SETTINGS, (guild_id,))
        if rows:
            enabled, threshold, show_neutral, reactions, allowed, denied = rows[0]
            settings = GuildSettings(
                enabled=bool(enabled),
                allowed_channels=frozenset(json.loads(allowed)),
                denied_channels=frozenset(json.loads(denied)),
                threshold=float(threshold),
                show_neutral=bool(show_neutral),
                reactions=bool(reactions),
            )
        else:
            settings = self._defaults
        if generation != self._cache_generation:
            return settings  # the caches were reloaded meanwhile: don't cache what may be older
        # An update may have committed while we were reading: keep the newer value.
        return self._guilds.setdefault(guild_id, settings)

    async def update_guild_settings(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change some settings (validated) and return the new settings.

        Channel lists are replaced as a whole. Unknown keys, a threshold outside
        [0, 1] or non-boolean switches raise ValueError.
        """
        self._require_open()
        guild_id = int(guild_id)
        clean = _validate_guild_changes(changes)
        loaded = await self.get_guild_settings(guild_id)

        async def body(db: aiosqlite.Connection) -> GuildSettings:
            # Start from the cache under the lock so concurrent updates don't lose each other.
            new = dataclasses.replace(self._guilds.get(guild_id, loaded), **clean)
            await db.execute(
                _UPSERT_GUILD_SETTINGS,
                (guild_id, int(new.enabled), new.threshold, int(new.show_neutral),
                 int(new.reactions), time.time()),
            )
            await db.execute(_DELETE_GUILD_CHANNELS, (guild_id,))
            channels = [(guild_id, "allow", c) for c in sorted(new.allowed_channels)]
            channels += [(guild_id, "deny", c) for c in sorted(new.denied_channels)]
            if channels:
                await db.executemany(_INSERT_GUILD_CHANNEL, channels)
            return new

        def update_cache(new: GuildSettings) -> None:
            self._guilds[guild_id] = new

        return await self._write("save guild settings", body, update_cache)

    # ----------------------------------------------------------------- model versions

    async def add_model_version(
        self,
        version: str,
        path: str,
        *,
        parent: str | None = None,
        base: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        examples: int = 0,
        created_at: float | None = None,
        make_current: bool = False,
    ) -> ModelVersionRow:
        """Register a model; ValueError if the version already exists."""
        self._require_open()
        if not isinstance(version, str) or not version:
            raise ValueError("model version must be a non-empty string")
        row = ModelVersionRow(
            version=version,
            path=os.fspath(path),
            parent=parent,
            base=base,
            metrics=_json_safe(dict(metrics or {})),
            examples=int(examples),
            created_at=time.time() if created_at is None else float(created_at),
            is_current=bool(make_current),
        )
        params = (row.version, row.path, row.parent, row.base, json.dumps(row.metrics),
                  row.examples, row.created_at, int(row.is_current))

        async def body(db: aiosqlite.Connection) -> ModelVersionRow:
            if make_current:
                await db.execute(_CLEAR_CURRENT_MODEL)
            try:
                await db.execute(_INSERT_MODEL_VERSION, params)
            except sqlite3.IntegrityError:
                raise ValueError(f"model version {version!r} already exists") from None
            return row

        return await self._write("register a model version", body)

    async def set_current_model_version(self, version: str) -> ModelVersionRow:
        """Make ``version`` the (only) current model; ValueError if unknown."""
        self._require_open()

        async def body(db: aiosqlite.Connection) -> ModelVersionRow:
            await db.execute(_CLEAR_CURRENT_MODEL)
            cursor = await db.execute(_SET_CURRENT_MODEL, (version,))
            if cursor.rowcount == 0:
                raise ValueError(f"unknown model version {version!r}")
            rows = await db.execute_fetchall(_SELECT_MODEL_VERSION, (version,))
            return _model_from_tuple(list(rows)[0])

        return await self._write("set the current model version", body)

    async def current_model_version(self) -> ModelVersionRow | None:
        rows = await self._read("read the current model version", _SELECT_CURRENT_MODEL)
        return _model_from_tuple(rows[0]) if rows else None

    async def list_model_versions(self) -> list[ModelVersionRow]:
        """All model versions, oldest first."""
        rows = await self._read("list model versions", _SELECT_MODEL_VERSIONS)
        return [_model_from_tuple(r) for r in rows]


async def run_retention(store: Store, days: float) -> int:
    """One retention pass for a periodic task; never raises StoreError (logs instead),
    because an exception would stop a ``discord.ext.tasks`` loop for good."""
    try:
        deleted = await store.delete_predictions_older_than(days)
    except StoreError as exc:
        log.warning("Retention pass failed, will retry next time: %s", exc)
        return 0
    if deleted:
        log.info("Retention: deleted %d predictions older than %g days", deleted, days)
    return deleted
