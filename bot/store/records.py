"""The rows the store takes and gives back, and their validation.

Validation happens when a row is handed over (not when it is written), so that a
bad row fails its caller and can never poison a later batch. A checked row is the
same dataclass with its fields coerced; it becomes a tuple only at the SQL call.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from model.text import encodable

from .errors import UnknownLabel

SOURCES = ("discord", "import", "shell")
"""Allowed values of :attr:`Correction.source`."""


def storable(text: str) -> str:
    """``text`` as every backend stores it: UTF-8 encodable, and no NUL (PostgreSQL's text refuses it).

    Both become U+FFFD, on SQLite too, so a text reads back the same whichever database holds it.
    """
    text = encodable(text)
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


@dataclass(frozen=True, slots=True)
class PredictionRow:
    """What the model said about one message (never the message text).

    Field names are the ``predictions`` columns.
    """

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

    @property
    def imported(self) -> bool:
        """An example from a file: no message, and unique per (text, label) (V4)."""
        return self.source == "import" and self.message_id is None

    @property
    def by_author(self) -> bool | None:
        """Whether the corrector wrote the message (None: unknown, as for imports).

        Derived from the ids, so it cannot disagree with them; stored with the row (V6) because
        training prefers a writer's label to readers' (docs/learning.md).
        """
        if self.author_id is None or self.corrector_id is None:
            return None
        return int(self.author_id) == int(self.corrector_id)


@dataclass(frozen=True, slots=True)
class CorrectionRow:
    """A stored correction or imported example, as ``corrections list`` shows it; field names are columns."""

    id: int
    source: str
    guild_id: int | None
    channel_id: int | None
    message_id: int | None
    author_id: int | None
    corrector_id: int | None
    by_author: bool | None
    predicted_label: str | None
    label: str
    text: str
    model_version: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class RelabelCounts:
    """What a relabel did: rows given the new label, imported rows merged into an equal (text, label)
    example (V4 keeps one per pair), and rows that had the label already."""

    relabelled: int
    merged: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class GuildSettings:
    """Per-guild switches; the defaults apply to guilds that never changed anything."""

    enabled: bool = True
    allowed_channels: frozenset[int] = frozenset()
    denied_channels: frozenset[int] = frozenset()
    threshold: float = 0.5
    show_neutral: bool = False
    reactions: bool = True
    #: Queue the least-sure messages (with their text, at most 24 h) for moderators' ``/review``.
    review: bool = False
    #: Let this server's corrections improve the shared base model (the owner's retrain); off by default.
    share: bool = False

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


GUILD_SETTING_KEYS = tuple(f.name for f in dataclasses.fields(GuildSettings))


def opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _is_coerced(row: PredictionRow) -> bool:
    return (
        type(row.message_id) is int and type(row.channel_id) is int and type(row.author_id) is int
        and (row.guild_id is None or type(row.guild_id) is int)
        and type(row.probability) is float and type(row.created_at) is float
        and (row.model_version is None or type(row.model_version) is str)
    )


def check_prediction(row: PredictionRow) -> PredictionRow:
    """``row`` itself or a copy with coerced fields; ValueError/TypeError for a row SQLite would refuse."""
    label = row.label
    if not isinstance(label, str) or not label:
        raise ValueError(f"prediction label must be a non-empty string, got {label!r}")
    probability = float(row.probability)
    created_at = float(row.created_at)
    if not (math.isfinite(probability) and math.isfinite(created_at)):
        raise ValueError("prediction probability and created_at must be finite numbers")
    if _is_coerced(row):
        return row  # the usual case, once per message: skip the (slow, frozen) copy
    return PredictionRow(
        guild_id=opt_int(row.guild_id),
        channel_id=int(row.channel_id),
        message_id=int(row.message_id),
        author_id=int(row.author_id),
        label=label,
        probability=probability,
        model_version=None if row.model_version is None else str(row.model_version),
        created_at=created_at,
    )


_CORRECTION_IDS = ("guild_id", "channel_id", "message_id", "author_id", "corrector_id")
_correction_ids = operator.attrgetter(*_CORRECTION_IDS)
_OPT_INT_TYPES = frozenset({int, type(None)})


def check_label(label: Any, labels: tuple[str, ...] | None) -> str:
    """``label``, if a correction may carry it; ValueError if empty, UnknownLabel if not in ``labels``."""
    if not isinstance(label, str) or not label.strip():
        raise ValueError("correction label is empty")
    if labels is not None and label not in labels:
        raise UnknownLabel(label, labels)
    return label


def check_correction(c: Correction, labels: tuple[str, ...] | None) -> Correction:
    """``c`` itself, or a copy with coerced ids and ``created_at``; UnknownLabel/ValueError if bad.

    ``labels`` restricts the label (None: any non-empty label). ``created_at`` may stay
    None (now, when it is written).
    """
    if not isinstance(c.text, str) or not c.text.strip():
        raise ValueError("correction text is empty")
    if storable(c.text) is not c.text:  # a lone surrogate or a NUL: a database cannot store it as it is
        c = dataclasses.replace(c, text=storable(c.text))
    check_label(c.label, labels)
    if c.source not in SOURCES:
        raise ValueError(f"correction source must be one of {', '.join(SOURCES)}, got {c.source!r}")
    ids = _correction_ids(c)
    if (c.created_at is None or type(c.created_at) is float) and _OPT_INT_TYPES.issuperset(map(type, ids)):
        return c  # nothing to coerce: skip the copy (imports check many rows on the event loop)
    return dataclasses.replace(
        c,
        **{name: opt_int(v) for name, v in zip(_CORRECTION_IDS, ids)},
        created_at=None if c.created_at is None else float(c.created_at),
    )


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


def _as_threshold(value: Any) -> float:
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number, got {value!r}") from None
    if not 0.0 <= threshold <= 1.0:  # also rejects NaN
        raise ValueError(f"threshold must be between 0 and 1, got {value!r}")
    return threshold


def check_guild_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Validated and coerced ``GuildSettings`` field changes; ValueError for anything else."""
    unknown = sorted(set(changes) - set(GUILD_SETTING_KEYS))
    if unknown:
        raise ValueError(
            f"Unknown guild setting(s): {', '.join(unknown)}. "
            f"Valid settings: {', '.join(GUILD_SETTING_KEYS)}."
        )
    clean: dict[str, Any] = {}
    for key, value in changes.items():
        if key in ("enabled", "show_neutral", "reactions", "review", "share"):
            clean[key] = _as_bool(key, value)
        elif key in ("allowed_channels", "denied_channels"):
            clean[key] = _as_channels(key, value)
        else:
            clean[key] = _as_threshold(value)
    return clean
