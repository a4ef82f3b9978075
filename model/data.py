"""Training data in → one shape out: a ``datasets.Dataset`` with columns ``text`` and ``label``.

Every source (users' corrections, CSV, JSONL, the GoEmotions folder or its hub copy) ends up
as label *names*, not ids, so data can be checked against, and mapped onto, whichever model
is being trained: ids belong to a model's ``config.id2label``, names are shared.

GoEmotions is multi-label. For a single-label model a GoEmotions row is kept when its labels,
after mapping to the target set, name exactly one label (``joy,amusement`` → ``happiness`` in
seed13 is kept); rows whose labels map to several different targets, or to none, are dropped:
87% of the rater-agreement train split survives with ``seed13``. :func:`load_rows` is the
shape ``train`` and ``eval`` use (``text`` + a list of ``labels``), which keeps every label
of a row for a multi-label model.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from datasets import Dataset, Features, Value, concatenate_datasets
from datasets import Sequence as SequenceFeature

from model.defaults import GOEMOTIONS_HUB_ID, is_hub_source
from model.labels import LABEL_SETS, map_label

log = logging.getLogger(__name__)

FEATURES = Features({"text": Value("string"), "label": Value("string")})
#: :func:`load_rows`' shape: the text and its label names (one for single-label).
ROW_FEATURES = Features({"text": Value("string"), "labels": SequenceFeature(Value("string"))})

#: The hub copy of the GoEmotions split in ``../shared/data/goemotions`` (needs internet).
GOEMOTIONS_HUB_CONFIG = "simplified"
#: Split names of the hub copy, by the file names of the local folder.
_HUB_SPLITS = {"train": "train", "dev": "validation", "validation": "validation", "test": "test"}


class DataError(ValueError):
    """Training data is missing or malformed; the message names the file, line and fix."""


# --------------------------------------------------------------------------- building blocks


def from_pairs(pairs: Iterable[tuple[str, str]]) -> Dataset:
    """``(text, label)`` pairs (the store's corrections) → Dataset; blank texts/labels are refused."""
    texts: list[str] = []
    labels: list[str] = []
    for i, pair in enumerate(pairs):
        try:
            text, label = pair
        except (TypeError, ValueError):
            raise DataError(f"example {i}: expected a (text, label) pair, got {pair!r}") from None
        text, label = _clean(text), _clean(label)
        if not text or not label:
            raise DataError(f"example {i}: empty {'text' if not text else 'label'} in {pair!r}")
        texts.append(text)
        labels.append(label)
    return _dataset(texts, labels)


def _dataset(texts: list[str], labels: list[str]) -> Dataset:
    return Dataset.from_dict({"text": texts, "label": labels}, features=FEATURES)


def _clean(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _collect(rows: Iterable[tuple[str, object, object]]) -> Dataset:
    """(where, text, label) per row → Dataset; a missing, blank or non-string text or label names its line."""
    texts: list[str] = []
    labels: list[str] = []
    for where, raw_text, raw_label in rows:
        text, label = _clean(raw_text), _clean(raw_label)
        if not text or not label:
            what, raw = ("text", raw_text) if not text else ("label", raw_label)
            kind = " (not a string)" if raw is not None and not isinstance(raw, str) else ""
            raise DataError(f"{where}: empty or missing {what}{kind}")
        texts.append(text)
        labels.append(label)
    return _dataset(texts, labels)


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file" + (" (it is a folder)" if path.is_dir() else ""))
    return path


# --------------------------------------------------------------------------- files


def load_csv(path: str | os.PathLike) -> Dataset:
    """A CSV with a header naming ``text`` and ``label`` columns (others are ignored)."""
    path = _existing_file(path)
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        if "text" not in header or "label" not in header:
            raise DataError(f"{path}:1: the header must name the columns 'text' and 'label' "
                            f"(found {reader.fieldnames})")
        reader.fieldnames = header
        try:
            return _collect((f"{path}:{reader.line_num}", row.get("text"), row.get("label")) for row in reader)
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: {exc}") from None


def load_jsonl(path: str | os.PathLike) -> Dataset:
    """One JSON object per line with string ``text`` and ``label``; blank lines are skipped."""
    path = _existing_file(path)
    with path.open(encoding="utf-8") as f:
        return _collect(_jsonl_rows(path, f))


def _jsonl_rows(path: Path, lines: Iterable[str]) -> Iterator[tuple[str, object, object]]:
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{line_no}: expected an object with 'text' and 'label'")
        yield f"{path}:{line_no}", row.get("text"), row.get("label")


# --------------------------------------------------------------------------- GoEmotions


def _single_label(names: Sequence[str], target: str) -> str | None:
    """The one target label these GoEmotions labels map to, or None (none, or several)."""
    mapped = {m for m in (map_label(n, target) for n in names) if m is not None}
    return mapped.pop() if len(mapped) == 1 else None


def _check_target(target: str) -> None:
    if target not in LABEL_SETS:
        raise DataError(f"unknown label set {target!r}: use one of {sorted(LABEL_SETS)}")


def goemotions_rows(folder: str | os.PathLike, split: str = "train") -> Iterator[tuple[str, list[str]]]:
    """(text, label names) for each row of ``{folder}/{split}.tsv``; a bad row names its line."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (expected the GoEmotions folder with labels.txt and {split}.tsv)")
    label_lines = _existing_file(folder / "labels.txt").read_text(encoding="utf-8").splitlines()
    names = [ln.strip() for ln in label_lines if ln.strip()]
    path = _existing_file(folder / f"{split}.tsv")
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.rsplit("\t", 2)
            if len(parts) < 2 or not parts[0].strip():
                raise DataError(f"{path}:{line_no}: expected 'text<TAB>label ids<TAB>id'")
            try:
                row_names = [names[int(x)] for x in parts[1].split(",") if x.strip()]
            except (ValueError, IndexError):
                raise DataError(f"{path}:{line_no}: label ids {parts[1]!r} "
                                f"are not ids 0..{len(names) - 1} of labels.txt") from None
            yield parts[0].strip(), row_names


def goemotions_hub_rows(split: str = "train") -> Iterator[tuple[str, list[str]]]:
    """(text, label names) for each row of the hub copy (``go_emotions``, config ``simplified``).

    Needs internet (or a populated HF cache); offline, point at the local folder instead.
    """
    from datasets import load_dataset

    try:
        raw = load_dataset(GOEMOTIONS_HUB_ID, GOEMOTIONS_HUB_CONFIG, split=_HUB_SPLITS.get(split, split))
    except Exception as exc:  # noqa: BLE001 - network/cache failures come in many types
        raise DataError(
            f"could not load {GOEMOTIONS_HUB_ID} ({GOEMOTIONS_HUB_CONFIG}) from the hub: {type(exc).__name__}: {exc}. "
            "Offline, use the local GoEmotions folder instead (e.g. ../shared/data/goemotions).") from None
    names = raw.features["labels"].feature.names
    for text, ids in zip(raw["text"], raw["labels"]):
        if text.strip():
            yield text.strip(), [names[i] for i in ids]


def load_goemotions(folder: str | os.PathLike, split: str = "train", *, target: str = "goemotions") -> Dataset:
    """``{folder}/{split}.tsv`` (``text<TAB>ids<TAB>comment id``) with names from ``labels.txt``.

    ``target`` maps the labels ('goemotions' keeps them, 'ekman' or 'seed13' map them); see the
    module docstring for which multi-label rows are kept.
    """
    _check_target(target)
    return _single_label_rows(goemotions_rows(folder, split), target, f"{folder}/{split}.tsv")


def _mapped_rows(rows: Iterable[tuple[str, list[str]]], mapped: Callable[[list[str]], object],
                 where: str, dropped_why: str) -> tuple[list[str], list]:
    """(texts, mapped labels) of the rows whose ``mapped(label names)`` is not empty; logs what was dropped."""
    texts: list[str] = []
    labels: list = []
    dropped = 0
    for text, row_names in rows:
        value = mapped(row_names)
        if not value:
            dropped += 1
            continue
        texts.append(text)
        labels.append(value)
    log.info("%s: %d rows kept, %d dropped (%s)", where, len(texts), dropped, dropped_why)
    return texts, labels


def _single_label_rows(rows: Iterable[tuple[str, list[str]]], target: str, where: str) -> Dataset:
    texts, labels = _mapped_rows(rows, lambda names: _single_label(names, target), where,
                                 f"not exactly one {target} label")
    return _dataset(texts, labels)


def load_goemotions_hub(split: str = "train", *, target: str = "goemotions") -> Dataset:
    """The same split from the Hugging Face hub (``go_emotions``, config ``simplified``)."""
    _check_target(target)
    return _single_label_rows(goemotions_hub_rows(split), target, f"{GOEMOTIONS_HUB_ID} ({split})")


def load_examples(source: str | os.PathLike, *, split: str = "train", target: str = "goemotions") -> Dataset:
    """Any source by its shape: a GoEmotions folder, a ``.csv``, a ``.jsonl``/``.json``, or the hub name.

    ``split`` and ``target`` only apply to GoEmotions (files hold one split, already named).
    """
    if is_hub_source(str(source)):
        return load_goemotions_hub(split, target=target)
    path = Path(source).expanduser()
    if path.is_dir():
        return load_goemotions(path, split, target=target)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return load_csv(path)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return load_jsonl(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    raise DataError(f"{path}: unknown data format: use a .csv (text,label), a .jsonl, or the GoEmotions folder")


def has_split(source: str | os.PathLike, split: str) -> bool:
    """Whether ``source`` holds a separate ``split`` (GoEmotions folder or hub); files hold one."""
    if is_hub_source(str(source)):
        return True
    path = Path(source).expanduser()
    return path.is_dir() and (path / f"{split}.tsv").is_file()


def target_for(labels: Sequence[str]) -> str:
    """The GoEmotions mapping whose every output is one of ``labels`` (a model's label set).

    Tried in order goemotions, seed13, ekman; a model whose labels fit none gets a DataError.
    """
    have = set(labels)
    for target in ("goemotions", "seed13", "ekman"):
        outputs = (set(LABEL_SETS[target]) if target == "goemotions"
                   else {map_label(g, target) for g in LABEL_SETS["goemotions"]})
        if outputs <= have:
            return target
    raise DataError(
        f"no GoEmotions mapping fits this model's labels {list(labels)}: "
        "use a CSV/JSONL replay file labelled with the model's own labels")


# --------------------------------------------------------------------------- checks and sampling


def check_labels(ds: Dataset, labels: Sequence[str], *, what: str = "examples") -> None:
    """Refuse labels the model cannot learn, naming each with its count and the valid set."""
    valid = set(labels)
    unknown = Counter(lb for lb in ds["label"] if lb not in valid)
    if unknown:
        listed = ", ".join(f"{lb!r} ({n}x)" for lb, n in unknown.most_common(10))
        raise DataError(
            f"{what} use labels the model does not have: {listed}. "
            f"The model's labels are: {', '.join(labels)}. Fix or drop those rows, or train a model with those labels.")


def replay_sample(replay: Dataset, n_new: int, ratio: float, *, seed: int = 42) -> Dataset:
    """``round(n_new * ratio)`` random rows of ``replay`` (all of it if smaller).

    Mixing old data back in keeps a fine-tune on a few corrections from forgetting everything
    else; ``ratio`` is replay rows per new example.
    """
    if ratio < 0:
        raise DataError(f"replay ratio must be >= 0, not {ratio}")
    n = min(len(replay), round(n_new * ratio))
    if n <= 0:
        return replay.select([])
    return replay.shuffle(seed=seed).select(range(n))


def concat(parts: Sequence[Dataset]) -> Dataset:
    """Concatenate text/label datasets, skipping empty ones."""
    parts = [p for p in parts if len(p)]
    return concatenate_datasets(parts) if parts else _dataset([], [])


# --------------------------------------------------------------------------- rows with every label (train, eval)


def _rows(texts: list[str], labels: list[list[str]]) -> Dataset:
    return Dataset.from_dict({"text": texts, "labels": labels}, features=ROW_FEATURES)


def _file_label(name: str, target: str) -> str:
    """A file's label name in ``target``: kept when it is in the set, else mapped if it is a GoEmotions name."""
    if name in LABEL_SETS[target]:
        return name
    return (map_label(name, target) if name in LABEL_SETS["goemotions"] else None) or name


def load_rows(source: str, split: str, target: str, *, multi_label: bool) -> Dataset:
    """``text`` + ``labels`` (label names in ``target``) from any source :func:`load_examples` reads.

    Multi-label: a GoEmotions row keeps all its labels, mapped and deduplicated in target order;
    a CSV/JSONL label may name several, comma-separated. Single-label: the rows
    :func:`load_examples` keeps (exactly one target label). Labels outside ``target`` are
    refused with their counts.
    """
    _check_target(target)
    order = {lb: i for i, lb in enumerate(LABEL_SETS[target])}
    goemotions = has_split(source, split) or is_hub_source(str(source))
    if multi_label and goemotions:
        hub = is_hub_source(str(source))
        raw = goemotions_hub_rows(split) if hub else goemotions_rows(source, split)
        texts, labels = _mapped_rows(
            raw,
            lambda names: sorted({m for m in (map_label(n, target) for n in names) if m is not None}, key=order.get),
            f"{source} ({split})", f"no {target} label")
        ds = _rows(texts, labels)
    elif goemotions or not multi_label:
        flat = load_examples(source, split=split, target=target)
        ds = _rows(list(flat["text"]), [[_file_label(lb, target)] for lb in flat["label"]])
    else:
        flat = load_examples(source, split=split, target=target)
        labels = [sorted({_file_label(p.strip(), target) for p in lb.split(",") if p.strip()},
                         key=lambda x: order.get(x, len(order))) for lb in flat["label"]]
        ds = _rows(list(flat["text"]), labels)
    check_labels(Dataset.from_dict({"label": [lb for row in ds["labels"] for lb in row]}),
                 LABEL_SETS[target], what=f"{source} ({split})")
    if len(ds) == 0:
        raise DataError(f"{source} ({split}): no usable rows for the {target} labels")
    return ds


def multi_hot(rows: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    """(rows × labels) float32 0/1 matrix: the targets of BCE, and the gold of multi-label scores."""
    index = {lb: i for i, lb in enumerate(labels)}
    out = np.zeros((len(rows), len(labels)), dtype=np.float32)
    for r, names in enumerate(rows):
        for name in names:
            out[r, index[name]] = 1.0
    return out
