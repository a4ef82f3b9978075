"""Export training examples to, and import them from, CSV / JSONL files.

The formats are the plainest ones Hugging Face ``datasets`` loads directly
(``load_dataset("csv"|"json", data_files=...)``): a ``text,label`` CSV with a
header, or one ``{"text": ..., "label": ...}`` object per line.

Parsing and writing are plain functions run in a thread (``asyncio.to_thread``),
so a large file never stalls the bot's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bot.store import Correction, Store

log = logging.getLogger(__name__)

FORMATS = ("csv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}

__all__ = [
    "FORMATS",
    "ImportReport",
    "export_examples",
    "format_for",
    "import_examples",
    "parse_examples",
    "write_examples",
]


@dataclass
class ImportReport:
    """What an import did: rows added, repeats skipped, and ``(line number, problem)`` for bad rows.

    ``duplicates`` counts good rows whose text and label were already stored (or
    appeared earlier in the same file): they add nothing, so a re-import is harmless.

    Line numbers are 1-based physical lines (the header is line 1 in a CSV; a
    multi-line CSV record is reported at its first line). For a ``.json`` file
    holding a JSON array, the number is the item's position in the array.
    """

    added: int
    errors: list[tuple[int, str]] = field(default_factory=list)
    duplicates: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def format_for(path: str | os.PathLike[str]) -> str:
    """The format implied by a file name: ``csv`` or ``jsonl`` (``.json`` too)."""
    suffix = Path(path).suffix.lower()
    try:
        return _EXTENSIONS[suffix]
    except KeyError:
        raise ValueError(
            f"Cannot tell the format of {os.fspath(path)!r}: use a .csv, .jsonl or .json file"
        ) from None


# --------------------------------------------------------------------------- export


def write_examples(stream: IO[str], rows: Iterable[tuple[str, str]], fmt: str) -> int:
    """Write ``(text, label)`` rows to a text stream; returns how many."""
    n = 0
    if fmt == "csv":
        writer = csv.writer(stream)
        writer.writerow(("text", "label"))
        for text, label in rows:
            writer.writerow((text, label))
            n += 1
    elif fmt == "jsonl":
        for text, label in rows:
            # ensure_ascii=False keeps emoji/RTL readable; json still escapes \n, \r, NUL.
            stream.write(json.dumps({"text": text, "label": label}, ensure_ascii=False))
            stream.write("\n")
            n += 1
    else:
        raise ValueError(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    return n


def _write_file(path: Path, rows: list[tuple[str, str]], fmt: str) -> int:
    """Write to a temporary file and rename, so a failed export never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, "w", encoding="utf-8", newline="") as f:
            n = write_examples(f, rows, fmt)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return n


async def export_examples(
    store: Store,
    path_or_stream: str | os.PathLike[str] | IO[Any],
    fmt: str | None = None,
    since: float | None = None,
) -> int:
    """Write the store's training examples (majority-resolved) as CSV or JSONL.

    ``fmt`` defaults to the file's extension; it is required for a stream.
    A binary stream gets UTF-8. Returns the number of examples written.
    """
    if isinstance(path_or_stream, (str, os.PathLike)):
        path = Path(path_or_stream)
        fmt = fmt or format_for(path)
        if fmt not in FORMATS:
            raise ValueError(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
        rows = await store.corrections_for_training(since=since)
        n = await asyncio.to_thread(_write_file, path, rows, fmt)
    else:
        if fmt not in FORMATS:
            raise ValueError(f"Export to a stream needs fmt, one of {', '.join(FORMATS)}")
        rows = await store.corrections_for_training(since=since)
        stream = path_or_stream
        if isinstance(stream, (io.RawIOBase, io.BufferedIOBase)) or "b" in getattr(stream, "mode", ""):
            wrapper = io.TextIOWrapper(stream, encoding="utf-8", newline="")
            try:
                n = write_examples(wrapper, rows, fmt)
                wrapper.flush()
            finally:
                wrapper.detach()  # leave the caller's stream open
        else:
            n = write_examples(stream, rows, fmt)
    log.info("Exported %d examples as %s", n, fmt)
    return n


# --------------------------------------------------------------------------- import

ParsedRow = tuple[int, str, str]


class _Labels:
    """Label check that accepts any case/surrounding spaces and returns the canonical name."""

    def __init__(self, labels: Sequence[str] | None) -> None:
        self.valid = None if labels is None else tuple(labels)
        self._canonical = None if labels is None else {lab.lower(): lab for lab in labels}

    def check(self, value: Any) -> tuple[str | None, str | None]:
        """``(label, None)`` if valid, else ``(None, problem)``."""
        if value is None:
            return None, "missing label"
        if not isinstance(value, str):
            return None, f"label must be a string, got {type(value).__name__}"
        cleaned = value.strip()
        if not cleaned:
            return None, "empty label"
        if self._canonical is None:
            return cleaned, None
        canonical = self._canonical.get(cleaned.lower())
        if canonical is None:
            return None, f"unknown label {cleaned!r} (valid: {', '.join(self.valid or ())})"
        return canonical, None


def _check_text(value: Any) -> str | None:
    if value is None:
        return "missing text"
    if not isinstance(value, str):
        return f"text must be a string, got {type(value).__name__}"
    if not value.strip():
        return "empty text"
    return None


def _decode(data: bytes) -> tuple[str | None, tuple[int, str] | None]:
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return None, (line, f"not valid UTF-8 text (byte {exc.start}); save the file as UTF-8")


def _parse_csv(text: str, labels: _Labels) -> tuple[list[ParsedRow], list[tuple[int, str]]]:
    good: list[ParsedRow] = []
    errors: list[tuple[int, str]] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return good, [(1, "empty file: expected a header with 'text' and 'label' columns")]
    except csv.Error as exc:
        return good, [(1, f"malformed CSV header: {exc}")]
    names = [h.strip().lower() for h in header]
    if "text" not in names or "label" not in names:
        return good, [(1, f"header must have 'text' and 'label' columns, found {header!r}")]
    ti, li = names.index("text"), names.index("label")
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append((line, f"malformed CSV: {exc}"))
            continue
        if not row or all(not cell.strip() for cell in row):
            continue  # blank line
        text_value = row[ti] if ti < len(row) else None
        problem = _check_text(text_value)
        if problem is None:
            label, problem = labels.check(row[li] if li < len(row) else None)
        if problem is not None:
            errors.append((line, problem))
        else:
            assert text_value is not None and label is not None
            good.append((line, text_value, label))
    return good, errors


def _check_object(number: int, obj: Any, labels: _Labels, good: list[ParsedRow],
                  errors: list[tuple[int, str]]) -> None:
    if not isinstance(obj, dict):
        errors.append((number, f"expected a JSON object with text and label, got {type(obj).__name__}"))
        return
    text_value = obj.get("text")
    problem = _check_text(text_value)
    label = None
    if problem is None:
        label, problem = labels.check(obj.get("label"))
    if problem is not None:
        errors.append((number, problem))
    else:
        good.append((number, text_value, label))  # type: ignore[arg-type]


def _parse_json(text: str, labels: _Labels) -> tuple[list[ParsedRow], list[tuple[int, str]]]:
    good: list[ParsedRow] = []
    errors: list[tuple[int, str]] = []
    if text.lstrip().startswith("["):  # a .json file holding one array
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            return good, [(exc.lineno, f"invalid JSON: {exc.msg}")]
        for number, obj in enumerate(items, 1):
            _check_object(number, obj, labels, good, errors)
        return good, errors
    # Split on "\n" only: str.splitlines() would also break on U+2028 etc. inside texts.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append((number, f"invalid JSON: {exc.msg} (column {exc.colno})"))
            continue
        _check_object(number, obj, labels, good, errors)
    return good, errors


def parse_examples(
    path: str | os.PathLike[str], labels: Sequence[str] | None
) -> tuple[list[ParsedRow], list[tuple[int, str]]]:
    """Read and validate a CSV/JSONL file: ``([(line, text, label)], [(line, problem)])``.

    Blocking; :func:`import_examples` runs it in a thread. Labels are matched
    case-insensitively and returned in their canonical spelling.
    """
    fmt = format_for(path)
    data = Path(path).read_bytes()
    text, problem = _decode(data)
    if text is None:
        assert problem is not None
        return [], [problem]
    checker = _Labels(labels)
    return _parse_csv(text, checker) if fmt == "csv" else _parse_json(text, checker)


async def import_examples(
    store: Store,
    path: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    source: str = "import",
) -> ImportReport:
    """Validate a file and add its good rows as corrections, all in one transaction.

    ``labels`` defaults to the store's labels. Bad rows are skipped and reported
    by line number; a missing or unreadable file raises OSError, an unsupported
    extension ValueError, a database failure StoreError (nothing is added then).
    """
    if labels is None:
        labels = store.labels
    good, errors = await asyncio.to_thread(parse_examples, path, labels)
    now = time.time()
    added = await store.add_examples(
        [Correction(text=text, label=label, source=source, created_at=now) for _, text, label in good]
    )
    duplicates = len(good) - added
    log.info(
        "Imported %d examples from %s (%d already present, %d rows rejected)",
        added, os.fspath(path), duplicates, len(errors),
    )
    return ImportReport(added=added, errors=errors, duplicates=duplicates)
