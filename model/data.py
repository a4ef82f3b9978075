"""Training data in → one shape out: a ``datasets.Dataset`` with columns ``text`` and ``label``.

Every source (users' corrections, CSV, JSONL, the GoEmotions folder or its hub copy) ends up
as label *names*, not ids, so data can be checked against, and mapped onto, whichever model
is being trained: ids belong to a model's ``config.id2label``, names are shared.

GoEmotions is multi-label; this project trains single-label models. A GoEmotions row is kept
when its labels, after mapping to the target set, name exactly one label (``joy,amusement``
→ ``happiness`` in seed13 is kept); rows whose labels map to several different targets, or
to none, are dropped: 87% of the rater-agreement train split survives with ``seed13``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from datasets import Dataset, Features, Value, concatenate_datasets

from model.labels import LABEL_SETS, map_label

log = logging.getLogger(__name__)

FEATURES = Features({"text": Value("string"), "label": Value("string")})

#: The hub copy of the GoEmotions split in ``../shared/data/goemotions`` (needs internet).
GOEMOTIONS_HUB_ID = "google-research-datasets/go_emotions"
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


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file" + (" (it is a folder)" if path.is_dir() else ""))
    return path


# --------------------------------------------------------------------------- files


def load_csv(path: str | os.PathLike) -> Dataset:
    """A CSV with a header naming ``text`` and ``label`` columns (others are ignored)."""
    path = _existing_file(path)
    texts: list[str] = []
    labels: list[str] = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        if "text" not in header or "label" not in header:
            raise DataError(f"{path}:1: the header must name the columns 'text' and 'label' (found {reader.fieldnames})")
        reader.fieldnames = header
        try:
            for row in reader:
                text, label = _clean(row.get("text")), _clean(row.get("label"))
                if not text or not label:
                    what = "text" if not text else "label"
                    raise DataError(f"{path}:{reader.line_num}: empty or missing {what}")
                texts.append(text)
                labels.append(label)
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: {exc}") from None
    return _dataset(texts, labels)


def load_jsonl(path: str | os.PathLike) -> Dataset:
    """One JSON object per line with string ``text`` and ``label``; blank lines are skipped."""
    path = _existing_file(path)
    texts: list[str] = []
    labels: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{line_no}: expected an object with 'text' and 'label'")
            text, label = _clean(row.get("text")), _clean(row.get("label"))
            if not text or not label:
                what = "text" if not text else "label"
                raise DataError(f"{path}:{line_no}: missing or empty string {what!r}")
            texts.append(text)
            labels.append(label)
    return _dataset(texts, labels)


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
    names = [ln.strip() for ln in _existing_file(folder / "labels.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
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
                raise DataError(f"{path}:{line_no}: label ids {parts[1]!r} are not ids 0..{len(names) - 1} of labels.txt") from None
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


def _single_label_rows(rows: Iterable[tuple[str, list[str]]], target: str, where: str) -> Dataset:
    texts: list[str] = []
    labels: list[str] = []
    dropped = 0
    for text, row_names in rows:
        label = _single_label(row_names, target)
        if label is None:
            dropped += 1
            continue
        texts.append(text)
        labels.append(label)
    log.info("%s: %d rows kept, %d dropped (not exactly one %s label)", where, len(texts), dropped, target)
    return _dataset(texts, labels)


def load_goemotions_hub(split: str = "train", *, target: str = "goemotions") -> Dataset:
    """The same split from the Hugging Face hub (``go_emotions``, config ``simplified``)."""
    _check_target(target)
    return _single_label_rows(goemotions_hub_rows(split), target, f"{GOEMOTIONS_HUB_ID} ({split})")


def is_hub_source(source: str) -> bool:
    """True for ``hub:go_emotions``-style names that mean the hub copy of GoEmotions."""
    source = str(source)
    if source.startswith("hub:"):
        return "go_emotions" in source
    return source in (GOEMOTIONS_HUB_ID, "go_emotions") and not Path(source).exists()  # a local folder wins


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
        outputs = set(LABEL_SETS[target]) if target == "goemotions" else {map_label(g, target) for g in LABEL_SETS["goemotions"]}
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
