"""Export training examples to, and import them from, CSV / JSONL files.

The formats are the plainest ones Hugging Face ``datasets`` loads directly
(``load_dataset("csv"|"json", data_files=...)``): a ``text,label`` CSV with a
header, or one ``{"text": ..., "label": ...}`` object per line.

Parsing and writing are plain functions run in a thread (``asyncio.to_thread``),
so a large file never stalls the bot's event loop. An import streams the file and
writes it in chunks of :data:`IMPORT_CHUNK_ROWS`, each its own short transaction, so
memory stays bounded and a bot sharing the database never waits past its busy timeout.

A file labelled in another set than the model's (``--labels goemotions`` for a seed-13 model) is
checked against that set, then each label is stored as the model's equivalent
(:func:`model.labels.translate`); a row whose label has none is a bad row, reported by line.

A CSV export defuses spreadsheet formulas (OWASP): a cell starting with ``= + - @``, TAB
or CR, after any leading quotes, gets one more leading ``'``; importing takes exactly that
quote off again, so an export round-trips. A hand-made CSV whose text starts with quotes
before such a character loses one quote on import.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bot.store import Correction, Store, StoreError
from model.labels import translate

log = logging.getLogger(__name__)

FORMATS = ("csv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}

#: Rows written per transaction: the write lock is held for milliseconds, and 200,000 rows still take seconds.
IMPORT_CHUNK_ROWS = 2_000
#: The longest text an import accepts (Discord allows 4,000 characters); CSV fields are read up to it.
MAX_TEXT_CHARS = 1_000_000
#: A physical line or JSON array item longer than this is refused unread (a text at the limit, every char escaped).
_MAX_LINE_CHARS = 6 * MAX_TEXT_CHARS + 1_024
_READ_CHARS = 1 << 16
csv.field_size_limit(max(csv.field_size_limit(), MAX_TEXT_CHARS + 1))  # + the defusing quote

#: A cell a spreadsheet would run as a formula, after the quotes that defused it (see the module docstring).
_FORMULA = re.compile(r"'*[=+\-@\t\r]")
_DEFUSED = re.compile(r"'+[=+\-@\t\r]")
_UNDECODABLE = re.compile(r"[\udc80-\udcff]")  # what surrogateescape makes of bytes that are not UTF-8

__all__ = [
    "FORMATS",
    "ImportReport",
    "export_examples",
    "format_for",
    "import_examples",
    "iter_examples",
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
    #: ``(file label, model label) → good rows``: labels of another set taken as the model's equivalent.
    mapped: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.errors

    def mapping_summary(self) -> str:
        """``annoyance→anger ×12, joy→happiness ×3`` (by file label), or ``""`` when nothing was mapped."""
        return ", ".join(f"{old}→{new} ×{n}" for (old, new), n in sorted(self.mapped.items()))


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
            writer.writerow((_defuse(text), _defuse(label)))
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


def _defuse(cell: str) -> str:
    """One more leading quote for a cell a spreadsheet would run as a formula (OWASP CSV injection)."""
    return f"'{cell}" if _FORMULA.match(cell) else cell


def _restore(cell: str) -> str:
    """The inverse of :func:`_defuse`, for importing an export."""
    return cell[1:] if _DEFUSED.match(cell) else cell


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
"""``(line, text, label)``: a good row."""
Problem = tuple[int, str]
"""``(line, problem)``: a bad row, or why reading stopped there."""


class _Labels:
    """Label check that accepts any case/surrounding spaces and returns the canonical name.

    With ``model_labels``, a valid label is then stored as its equivalent among them
    (:func:`model.labels.translate`), counted in :attr:`mapped`; one without is a problem.
    """

    def __init__(self, labels: Sequence[str] | None, model_labels: Sequence[str] | None = None) -> None:
        self.valid = None if labels is None else tuple(labels)
        self._canonical = None if labels is None else {lab.lower(): lab for lab in labels}
        self.model_labels = None if model_labels is None else tuple(model_labels)
        self.mapped: Counter[tuple[str, str]] = Counter()
        self._translated: dict[str, str | None] = {}

    def check(self, value: Any) -> tuple[str | None, str | None]:
        """``(label to store, None)`` if valid, else ``(None, problem)``."""
        label, problem = self._in_file_set(value)
        if label is None or self.model_labels is None:
            return label, problem
        if label not in self._translated:
            self._translated[label] = translate(label, self.model_labels)
        stored = self._translated[label]
        if stored is None:
            return None, f"{label!r} has no equivalent among the model's labels ({', '.join(self.model_labels)})"
        if stored != label:
            self.mapped[label, stored] += 1
        return stored, None

    def _in_file_set(self, value: Any) -> tuple[str | None, str | None]:
        if value is None:
            return None, "missing label"
        if not isinstance(value, str):
            return None, f"label must be a string, got {type(value).__name__}"
        cleaned = value.strip()
        if not cleaned:
            return None, "empty label"
        if _unstorable(cleaned):
            return None, "label is not valid UTF-8 text"
        if self._canonical is None:
            return cleaned, None
        canonical = self._canonical.get(cleaned.lower())
        if canonical is None:
            return None, f"unknown label {cleaned!r} (valid: {', '.join(self.valid or ())})"
        return canonical, None


def _unstorable(value: str) -> bool:
    """True for a lone surrogate (a JSON ``\\ud800`` escape, an undecodable byte): SQLite cannot store it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_text(value: Any) -> str | None:
    if value is None:
        return "missing text"
    if not isinstance(value, str):
        return f"text must be a string, got {type(value).__name__}"
    if not value.strip():
        return "empty text"
    if len(value) > MAX_TEXT_CHARS:
        return f"text is {len(value):,} characters, longer than {MAX_TEXT_CHARS:,} characters"
    if _unstorable(value):
        return "text is not valid UTF-8 (an undecodable byte, or a lone surrogate escape such as \\ud800)"
    return None


def _row(line: int, text: Any, label: Any, labels: _Labels) -> ParsedRow | Problem:
    problem = _check_text(text)
    if problem is None:
        label, problem = labels.check(label)
    return (line, problem) if problem is not None else (line, text, label)


class _Lines:
    """The physical lines of a text file read with ``surrogateescape``, one at a time.

    A line that is not UTF-8, or longer than :data:`_MAX_LINE_CHARS` (replaced by an empty
    line, its rest skipped unread), is noted in :meth:`problem`, so the record that spans it
    is reported instead of the whole file failing to decode.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.number = 0
        self._bad: dict[int, str] = {}

    def __iter__(self) -> Iterator[str]:
        while line := self.stream.readline(_MAX_LINE_CHARS):
            self.number += 1
            if len(line) == _MAX_LINE_CHARS and not line.endswith(("\n", "\r")):
                while (rest := self.stream.readline(_MAX_LINE_CHARS)) and not rest.endswith(("\n", "\r")):
                    pass
                self._bad[self.number] = f"line is longer than {_MAX_LINE_CHARS:,} characters"
                line = "\n"
            elif bad := _UNDECODABLE.search(line):
                self._bad[self.number] = (f"not valid UTF-8 text (column {bad.start() + 1}); "
                                          "save the file as UTF-8")
            yield line

    def problem(self, first: int, last: int) -> str | None:
        """The first problem noted on lines ``first..last`` (forgetting them all), or None."""
        found = [n for n in self._bad if first <= n <= last]
        problems = [self._bad.pop(n) for n in sorted(found)]
        return problems[0] if problems else None


def _span(start: int, end: int) -> str:
    return f" (this record runs over lines {start}-{end}: is a closing quote missing on line {start}?)" \
        if end - start >= 2 else ""


def _csv_error(start: int, end: int, exc: csv.Error) -> tuple[Problem, bool]:
    """The report for a malformed record, and whether reading must stop (nothing after it can be trusted)."""
    message = str(exc)
    if "unexpected end of data" in message:
        return (start, f"a quote opened on line {start} is never closed, so lines {start}-{end} were not "
                       'imported: close it (a quote inside a text is written "") and import the file again'), True
    if "field limit" in message:
        return (start, f"a field starting on line {start} is longer than {MAX_TEXT_CHARS:,} characters: is a "
                       f"closing quote missing? Reading stopped at line {end}."), True
    if "expected after" in message:
        message = ("a closing quote must be followed by a comma or the end of the line "
                   '(a quote inside a quoted text is written "")')
    return (start, f"malformed CSV: {message}{_span(start, end)}"), False


def _csv_rows(stream: IO[str], labels: _Labels) -> Iterator[ParsedRow | Problem]:
    lines = _Lines(stream)
    reader = csv.reader(iter(lines), strict=True)  # strict: an unclosed quote is an error, not the rest of the file
    try:
        header = next(reader)
    except StopIteration:
        yield 1, "empty file: expected a header with 'text' and 'label' columns"
        return
    except csv.Error as exc:
        yield 1, f"malformed CSV header: {exc}"
        return
    names = [h.strip().lower() for h in header]
    if "text" not in names or "label" not in names or lines.problem(1, reader.line_num):
        yield 1, f"header must have 'text' and 'label' columns, found {header!r}"
        return
    ti, li = names.index("text"), names.index("label")
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problem, stop = _csv_error(start, reader.line_num, exc)
            lines.problem(start, reader.line_num)
            yield problem
            if stop:
                return
            continue
        end = reader.line_num
        if undecodable := lines.problem(start, end):
            yield start, undecodable
        elif row and any(cell.strip() for cell in row):  # else a blank line
            text = _restore(row[ti]) if ti < len(row) else None
            label = _restore(row[li]) if li < len(row) else None
            checked = _row(start, text, label, labels)
            yield checked if len(checked) == 3 else (start, f"{checked[1]}{_span(start, end)}")


def _object_row(number: int, obj: Any, labels: _Labels) -> ParsedRow | Problem:
    if not isinstance(obj, dict):
        return number, f"expected a JSON object with text and label, got {type(obj).__name__}"
    return _row(number, obj.get("text"), obj.get("label"), labels)


def _jsonl_rows(stream: IO[str], labels: _Labels) -> Iterator[ParsedRow | Problem]:
    lines = _Lines(stream)  # the stream splits on "\n" only: U+2028 and a lone "\r" may sit inside a text
    for line in lines:
        number = lines.number
        if problem := lines.problem(number, number):
            yield number, problem
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"invalid JSON: {exc.msg} (column {exc.colno})"
            continue
        except RecursionError:
            yield number, "invalid JSON: nested too deeply"
            continue
        yield _object_row(number, obj, labels)


class _JsonArray:
    """The items of one JSON array, decoded one at a time from a text stream (never the whole file)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.decoder = json.JSONDecoder()
        self.buf, self.pos, self.eof = "", 0, False

    def _more(self) -> None:
        if self.pos > _READ_CHARS:  # drop what was decoded
            self.buf, self.pos = self.buf[self.pos:], 0
        chunk = self.stream.read(_READ_CHARS)
        self.eof = not chunk
        self.buf += chunk

    def _next_char(self) -> str:
        """The next character that is not JSON whitespace ("" at the end of the file), not consumed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf) or self.eof:
                return self.buf[self.pos:self.pos + 1]
            self._more()

    def _value(self) -> Any:
        """Decode the value at ``pos``; reads more until it is complete (a number may go on past the buffer)."""
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:
                    self.pos = end
                    return value
            except json.JSONDecodeError as exc:
                if self.eof or len(self.buf) - self.pos > _MAX_LINE_CHARS:
                    raise ValueError(f"invalid JSON: {exc.msg}") from None
            except RecursionError:
                raise ValueError("invalid JSON: nested too deeply") from None
            self._more()

    def items(self) -> Iterator[tuple[int, Any]]:
        """``(position, value)`` per item; ValueError (with its position) ends the array."""
        self._next_char()
        self.pos += 1  # the "["
        number = 0
        while True:
            char = self._next_char()
            if number and char == ",":
                self.pos += 1
                char = self._next_char()
            elif number and char not in ("]", ""):
                raise _ArrayError(number + 1, f"invalid JSON: expected ',' or ']' after item {number}")
            if char == "]":
                return
            if char == "":
                raise _ArrayError(number + 1, "invalid JSON: the array is not closed with ']'")
            number += 1
            try:
                yield number, self._value()
            except ValueError as exc:
                raise _ArrayError(number, str(exc)) from None


class _ArrayError(ValueError):
    def __init__(self, number: int, problem: str) -> None:
        super().__init__(problem)
        self.number = number


def _json_array_rows(stream: IO[str], labels: _Labels) -> Iterator[ParsedRow | Problem]:
    try:
        for number, obj in _JsonArray(stream).items():
            yield _object_row(number, obj, labels)
    except _ArrayError as exc:
        yield exc.number, f"{exc}; the rest of the array was not read"


def _starts_an_array(stream: IO[str]) -> bool:
    while (char := stream.read(1)) and char in " \t\r\n":
        pass
    stream.seek(0)
    return char == "["


def iter_examples(path: str | os.PathLike[str], labels: Sequence[str] | None, *,
                  checker: _Labels | None = None) -> Iterator[ParsedRow | Problem]:
    """Stream a CSV/JSONL file's rows, checked: a :data:`ParsedRow` per good row, a :data:`Problem` per bad one.

    Blocking, and lazy: the file is opened on the first ``next()``. Labels are matched
    case-insensitively and returned in their canonical spelling (or, with a ``checker``
    mapping into a model's labels, as it says).
    """
    fmt = format_for(path)
    checker = checker or _Labels(labels)
    # surrogateescape: a byte that is not UTF-8 fails its own line, not the whole file
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="" if fmt == "csv" else "\n") as f:
        if fmt == "csv":
            yield from _csv_rows(f, checker)
        elif _starts_an_array(f):  # a .json file holding one array
            yield from _json_array_rows(f, checker)
        else:
            yield from _jsonl_rows(f, checker)


def parse_examples(
    path: str | os.PathLike[str], labels: Sequence[str] | None
) -> tuple[list[ParsedRow], list[Problem]]:
    """Read and validate a whole CSV/JSONL file: ``([(line, text, label)], [(line, problem)])``.

    For small files; :func:`import_examples` streams instead.
    """
    format_for(path)
    good: list[ParsedRow] = []
    errors: list[Problem] = []
    for item in iter_examples(path, labels):
        (good if len(item) == 3 else errors).append(item)  # type: ignore[arg-type]
    return good, errors


def _take(items: Iterator[ParsedRow | Problem], n: int) -> tuple[list[ParsedRow], list[Problem], bool]:
    """Up to ``n`` more rows, good and bad apart, and whether the file is done (runs in a thread)."""
    good: list[ParsedRow] = []
    errors: list[Problem] = []
    for item in items:
        (good if len(item) == 3 else errors).append(item)  # type: ignore[arg-type]
        if len(good) + len(errors) >= n:
            return good, errors, False
    return good, errors, True


async def import_examples(
    store: Store,
    path: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    model_labels: Sequence[str] | None = None,
    source: str = "import",
) -> ImportReport:
    """Validate a file and add its good rows, :data:`IMPORT_CHUNK_ROWS` a transaction.

    ``labels`` (the file's label set) defaults to the store's labels. With ``model_labels``,
    each label is then stored as the model's equivalent (GoEmotions' annoyance as the seed's
    anger); a row with none is a bad row, so no label the model cannot learn is stored.
    Bad rows are skipped and reported by line number; a missing or unreadable file raises
    OSError, an unsupported extension ValueError, a database failure StoreError. The chunks
    before a failure stay stored; importing the file again adds the rest, nothing twice.
    """
    if labels is None:
        labels = store.labels
    format_for(path)
    checker = _Labels(labels, model_labels)
    items = iter_examples(path, labels, checker=checker)
    report = ImportReport(added=0, mapped=checker.mapped)
    try:
        done = False
        while not done:
            good, errors, done = await asyncio.to_thread(_take, items, IMPORT_CHUNK_ROWS)
            report.errors.extend(errors)
            if good:
                await _add_chunk(store, good, source, report, path)
    finally:
        items.close()
    log.info(
        "Imported %d examples from %s (%d already present, %d rows rejected)",
        report.added, os.fspath(path), report.duplicates, len(report.errors),
    )
    return report


async def _add_chunk(store: Store, good: list[ParsedRow], source: str, report: ImportReport,
                     path: str | os.PathLike[str]) -> None:
    """One transaction; between two, other writers (a member's /correct) get the database."""
    now = time.time()
    try:
        added = await store.add_examples(
            [Correction(text=text, label=label, source=source, created_at=now) for _, text, label in good])
    except StoreError as exc:
        raise StoreError(f"{exc} ({report.added} examples from {os.fspath(path)} were saved before this; importing "
                         "the file again adds the rest, nothing twice)", path=exc.path, reason=exc.reason) from exc
    report.added += added
    report.duplicates += len(good) - added
