"""The store's errors, and the translation of raw SQLite failures into them.

Callers catch :class:`StoreError` (and show its message) instead of sqlite3's
exceptions, so the bot stays up and the operator learns which file is in trouble.
"""

from __future__ import annotations

import shlex
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path


class StoreError(RuntimeError):
    """The database could not be used (disk full, read-only, locked, corrupt...).

    ``reason`` is a short machine-readable code ("full", "readonly", "locked", "cantopen",
    "unavailable", "io", "corrupt", "constraint", "newer", "old", "closed", "error") so callers can pick a
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


def translate_error(exc: sqlite3.Error, path: str, action: str) -> StoreError:
    """Turn a raw sqlite3 error into a StoreError with a sentence a human can act on."""
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, sqlite3.IntegrityError):
        return StoreError(f"Could not {action} ({path}): the database refused the data, which breaks one of its "
                          f"constraints. [SQLite: {text}]", path=path, reason="constraint")
    reason, explanation = next(
        ((reason, explanation) for needle, reason, explanation in _ERROR_KINDS if needle in lowered),
        ("error", "SQLite reported an error"),
    )
    if reason == "corrupt":
        explanation += f"; recover what is left with: {recovery_command(path)}"
    return StoreError(
        f"Could not {action} ({path}): {explanation}. [SQLite: {text}]",
        path=path,
        reason=reason,
    )


def recovery_command(path: str) -> str:
    """The shell command that copies what SQLite can still read of ``path`` into a new file beside it."""
    file = Path(path)
    fixed = file.with_name(f"{file.stem}-recovered{file.suffix or '.db'}")
    return f'sqlite3 {shlex.quote(path)} ".recover" | sqlite3 {shlex.quote(str(fixed))}'


def damaged_error(path: str, problems: Sequence[str]) -> StoreError:
    """What ``PRAGMA quick_check`` found, and how to get the data back."""
    found = "; ".join(problems)[:300]
    return StoreError(
        f"The database {path} is damaged (PRAGMA quick_check: {found}); nothing will be written to it. "
        f"Stop the bot, keep a copy of the file, recover what is left with: {recovery_command(path)} "
        "and move the recovered file into place (or point EMOTION_DB at it). "
        "`emotion-machine export` can still read the damaged file.",
        path=path,
        reason="corrupt",
    )


def closed_error(path: str) -> StoreError:
    """The error for any use of a store after :meth:`close`."""
    return StoreError(f"The store for {path} is closed", path=path, reason="closed")
