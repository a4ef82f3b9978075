"""The labelled sets under ``../shared/data``, each mapped onto the seed's 13 labels, and their mix.

One :class:`Source` per set: where its files are, its terms, which of the 13 labels it can speak
for (its *scope*), and a reader that yields ``(text, labels)`` per split with the labels already
mapped (the reasoning for each mapping is in ``docs/labels.md``). ``train --sources`` mixes them.

Why a scope: a source says nothing about the labels it does not annotate. A tweet of dair-emotion
labelled ``joy`` is not known to be "not neutral" (the set has no neutral), an EmoContext
``others`` turn is not neutral (it holds every other emotion too), and an iSarcasmEval tweet that
is not sarcastic is not neutral either. So a row's targets outside its source's scope are marked
unknown (:data:`UNKNOWN`) and the loss skips them (:func:`model.losses.make_loss`): no source
teaches a label by accident. A row with no label inside its scope (``others``, a non-sarcastic
tweet) is a negative for every label of the scope, and for nothing else.

Splits: a source's own train/dev/test files where it has them; otherwise a fixed carve by a hash of
the text (:func:`bucket`: a tenth each for dev and test), so the same text is always in the same
split, on every machine, and never in two.

Mixing (:func:`mix`): each source is sampled in proportion to ``n ** temperature`` (0.5 by
default, as multilingual models sample languages), so GoEmotions' 43k rows do not swamp MUStARD's
550 and the small sets are not repeated into memorisation (at most :data:`MAX_REPEAT` passes).
"""

from __future__ import annotations

import csv
import json
import os
import random
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import Dataset, Features, Value
from datasets import Sequence as SequenceFeature

from model.data import DataError, goemotions_rows
from model.labels import GOEMOTIONS_TO_SEED13, SEED13

#: A target the loss skips: the row's source does not annotate that label.
UNKNOWN = -1.0
SPLITS = ("train", "dev", "test")
#: The largest number of times :func:`mix` repeats a small source's rows in one epoch.
MAX_REPEAT = 3
#: ``train --sources`` shorthands.
ALL = "all"
COMMERCIAL = "commercial"
#: Rows a source contributes to the mixed dev split at most (threshold tuning and checkpoint scores).
DEV_ROWS_PER_SOURCE = 1000

MIX_FEATURES = Features({"text": Value("string"), "labels": SequenceFeature(Value("string")),
                         "source": Value("string")})

Reader = Callable[[Path, str], Iterator[tuple[str, list[str]]]]


@dataclass(frozen=True)
class Source:
    """One labelled set: its files, terms and how its labels map onto the 13."""

    name: str
    #: What the texts are, for the model card.
    text: str
    #: The terms as its README states them.
    terms: str
    #: Whether those terms allow a business to train a model it uses.
    commercial: bool
    #: The seed labels this set annotates (targets outside it are :data:`UNKNOWN`).
    scope: tuple[str, ...]
    read: Reader
    #: Labels with one label a row (scored by the best label in scope) or several (dev/test F1).
    multi_label: bool = False
    #: The source's name for "none of the scope" (EmoContext's ``others``), if its rows can have no label.
    rest: str | None = None

    @property
    def binary(self) -> bool:
        """A yes/no set of one label (the sarcasm sets): scored by that label's F1."""
        return len(self.scope) == 1


# --------------------------------------------------------------------------- helpers


def bucket(text: str) -> str:
    """The carved split of ``text`` in a source without its own: ``test``, ``dev`` (a tenth each) or ``train``."""
    b = zlib.crc32(" ".join(text.lower().split()).encode("utf-8")) % 10
    return "test" if b == 0 else "dev" if b == 1 else "train"


def _file(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise DataError(f"{path}: no such file (is {folder} the right folder?)")
    return path


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")


# --------------------------------------------------------------------------- readers (text, seed labels)


def _goemotions(folder: Path, split: str) -> Iterator[tuple[str, list[str]]]:
    order = {lb: i for i, lb in enumerate(SEED13)}
    for text, names in goemotions_rows(folder, split):
        yield text, sorted({GOEMOTIONS_TO_SEED13[n] for n in names if n in GOEMOTIONS_TO_SEED13}, key=order.get)


_DAIR = {"sadness": "sadness", "joy": "happiness", "love": "love", "anger": "anger", "fear": "fear",
         "surprise": "surprise"}


def _dair(folder: Path, split: str) -> Iterator[tuple[str, list[str]]]:
    # train.txt is carved into train and dev; val.txt (the published validation split) is the test
    name = "val.txt" if split == "test" else "train.txt"
    with _file(folder, name).open(encoding="utf-8") as f:
        for line in f:
            text, _, label = line.strip().rpartition(";")
            if text and label in _DAIR and (split == "test" or (bucket(text) == "dev") == (split == "dev")):
                yield text, [_DAIR[label]]


_EMOCONTEXT = {"happy": "happiness", "sad": "sadness", "angry": "anger", "others": None}


def _emocontext(folder: Path, split: str) -> Iterator[tuple[str, list[str]]]:
    # the label belongs to turn 3, the user's reply; the bot reads one message, so turn 3 alone
    with _file(folder, f"{split}.txt").open(encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) == 5 and parts[3].strip() and parts[4] in _EMOCONTEXT:
                label = _EMOCONTEXT[parts[4]]
                yield parts[3].strip(), [label] if label else []


_MELD = {"neutral": "neutral", "joy": "happiness", "surprise": "surprise", "anger": "anger",
         "sadness": "sadness", "disgust": "disgust", "fear": "fear"}


def _meld(folder: Path, split: str) -> Iterator[tuple[str, list[str]]]:
    with _file(folder, f"{split}_sent_emo.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            text = (row.get("Utterance") or "").replace("\u2019", "'").replace("\u2018", "'").strip()
            label = _MELD.get((row.get("Emotion") or "").strip())
            if text and label:
                yield text, [label]


#: XED's numbers (its README): anticipation (2) and trust (8) have no seed label and are dropped.
_XED = {1: "anger", 3: "disgust", 4: "fear", 5: "happiness", 6: "sadness", 7: "surprise"}


def _detok(text: str) -> str:
    """XED's tokenised subtitles (``court in three weeks .``) written as people type them."""
    for a, b in ((" .", "."), (" ,", ","), (" ?", "?"), (" !", "!"), (" '", "'"), (" n't", "n't"), (" :", ":")):
        text = text.replace(a, b)
    return text.strip()


def _xed(folder: Path, split: str) -> Iterator[tuple[str, list[str]]]:
    order = {lb: i for i, lb in enumerate(SEED13)}
    seen: set[str] = set()
    with _file(folder, "en-annotated.tsv").open(encoding="utf-8") as f:
        for line in f:
            text, _, numbers = line.rstrip("\r\n").rpartition("\t")
            text = _detok(text)
            try:
                ids = {int(x) for x in numbers.split(",") if x.strip()}
            except ValueError:
                continue
            if text and bucket(text) == split:
                seen.add(text)
                yield text, sorted({_XED[i] for i in ids if i in _XED}, key=order.get)
    with _file(folder, "neu_en.txt").open(encoding="utf-8") as f:
        for line in f:
            label, tab, text = line.rstrip("\r\n").partition("\t")
            text = _detok(text)
            if tab and label.strip() == "9" and text and text not in seen and bucket(text) == split:
                seen.add(text)
                yield text, ["neutral"]


_ISEAR = {"joy": "happiness", "fear": "fear", "anger": "anger", "sadness": "sadness", "disgust": "disgust",
          "shame": "shame", "guilt": "guilt"}


def _isear(folder: Path, split: str) -> Iterator[tuple[str, list[str]]]:
    with _file(folder, "isear.csv").open(encoding="utf-8", errors="replace") as f:
        next(f, None)  # header
        for line in f:
            fields = line.rstrip("\r\n").split("|")
            if len(fields) < 42:
                continue
            label = _ISEAR.get(fields[36].strip())
            # a text holding '|' spans fields 40 .. len-2 (its README's parsing notes)
            text = "|".join(fields[40:len(fields) - 2]).replace(" á ", " ").replace("á", " ").replace('\\"', '"')
            text = " ".join(text.split())
            if not label or not text or text.startswith("["):
                continue  # bracketed non-answers: "[ No response.]"
            if bucket(text) == split:
                yield text, [label]


def _isarcasmeval(folder: Path, split: str) -> Iterator[tuple[str, list[str]]]:
    if split == "test":
        with _file(folder, "test/task_A_En_test.csv").open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                text = (row.get("text") or "").strip()
                if text and row.get("sarcastic") in ("0", "1"):
                    yield text, ["sarcasm"] if row["sarcastic"] == "1" else []
        return
    with _file(folder, "train/train.En.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            text = (row.get("tweet") or "").strip()
            if not text or row.get("sarcastic") not in ("0", "1") or (bucket(text) == "dev") != (split == "dev"):
                continue
            yield text, ["sarcasm"] if row["sarcastic"] == "1" else []
            rephrase = (row.get("rephrase") or "").strip()
            if rephrase and split == "train":
                yield rephrase, []  # the author's own plain wording: not sarcastic


def _mustard(folder: Path, split: str) -> Iterator[tuple[str, list[str]]]:
    try:
        rows = json.loads(_file(folder, "sarcasm_data.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{folder / 'sarcasm_data.json'}: not valid JSON ({exc})") from None
    for value in rows.values():
        text = str(value.get("utterance") or "").strip()
        if text and bucket(text) == split:
            yield text, ["sarcasm"] if value.get("sarcasm") else []


_EMOTIONS = tuple(lb for lb in SEED13 if lb != "sarcasm")
_EKMAN_SEED = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")

#: Every set this project knows, by folder name under the data root.
SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("goemotions", "Reddit comments", "Apache-2.0", True, _EMOTIONS, _goemotions, multi_label=True),
    Source("dair-emotion", 'tweets ("i feel ...")', "educational and research use (dataset card)", False,
           ("sadness", "happiness", "love", "anger", "fear", "surprise"), _dair),
    Source("emocontext", "3-turn user/chatbot chat (turn 3)", "unknown: research use", False,
           ("happiness", "sadness", "anger"), _emocontext, rest="others"),
    Source("meld", "Friends dialogue turns", "GPL-3.0 (dialogue owned by the show)", False, _EKMAN_SEED, _meld),
    Source("xed_en", "film subtitles", "CC BY 4.0", True, _EKMAN_SEED, _xed, multi_label=True),
    Source("isear", "first-person situation reports", "unknown: research use", False,
           ("happiness", "fear", "anger", "sadness", "disgust", "shame", "guilt"), _isear),
    Source("isarcasmeval_en", "tweets, sarcasm labelled by their authors", "MIT", True, ("sarcasm",),
           _isarcasmeval),
    Source("mustard", "TV dialogue lines", "MIT", True, ("sarcasm",), _mustard),
)}


# --------------------------------------------------------------------------- choosing and loading


def default_root() -> Path:
    """Where the sets are: ``EMOTION_DATA_ROOT``, else ``../shared/data`` from the working directory."""
    return Path(os.environ.get("EMOTION_DATA_ROOT") or "../shared/data").expanduser()


def choose(spec: str | Sequence[str]) -> list[Source]:
    """``all``, ``commercial`` (terms allow a business's use), or comma-separated names; ``-name`` leaves one out."""
    parts = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    chosen: list[str] = []
    for part in parts:
        if part.startswith("-"):
            if part[1:] not in SOURCES:
                raise DataError(f"unknown source {part[1:]!r}: the sources are {', '.join(SOURCES)}")
            chosen = [n for n in chosen if n != part[1:]]
        elif part in (ALL, COMMERCIAL):
            chosen += [n for n, s in SOURCES.items() if (part == ALL or s.commercial) and n not in chosen]
        elif part in SOURCES:
            chosen += [part] if part not in chosen else []
        else:
            raise DataError(f"unknown source {part!r}: use all, commercial, or names from {', '.join(SOURCES)}")
    if not chosen:
        raise DataError(f"no sources chosen from {spec!r}")
    return [SOURCES[n] for n in chosen]


def rows(source: Source, split: str, root: str | os.PathLike | None = None) -> list[tuple[str, list[str]]]:
    """Every ``(text, seed labels)`` of ``source``'s ``split``; a missing folder or file names itself."""
    _check_split(split)
    folder = Path(root if root is not None else default_root()).expanduser() / source.name
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (source {source.name}; set --data-root or EMOTION_DATA_ROOT)")
    out = list(source.read(folder, split))
    if not out:
        raise DataError(f"{folder}: no usable {split} rows for source {source.name}")
    return out


def dataset(source: Source, split: str, root: str | os.PathLike | None = None, *, limit: int = 0,
            seed: int = 0) -> Dataset:
    """:func:`rows` as a Dataset (``text``, ``labels``, ``source``); ``limit`` > 0 keeps a seeded sample."""
    found = rows(source, split, root)
    if 0 < limit < len(found):
        found = random.Random(seed).sample(found, limit)
    return Dataset.from_dict({"text": [t for t, _ in found], "labels": [lb for _, lb in found],
                              "source": [source.name] * len(found)}, features=MIX_FEATURES)


def mix(sources: Sequence[Source], size: int, root: str | os.PathLike | None = None, *,
        temperature: float = 0.5, seed: int = 42) -> tuple[Dataset, dict[str, dict[str, int]]]:
    """(the shuffled training mix of ``size`` rows, rows per source: available and taken).

    Each source gets ``size · n^t / Σ n^t`` rows (``t`` = ``temperature``: 1 is plain
    concatenation, 0 equal shares), at most :data:`MAX_REPEAT` times its own rows.
    """
    if size <= 0:
        raise DataError(f"the mix needs a positive size, not {size}")
    rng = random.Random(seed)
    found = {s.name: rows(s, "train", root) for s in sources}
    weight = {n: len(r) ** temperature for n, r in found.items()}
    total = sum(weight.values())
    texts: list[str] = []
    labels: list[list[str]] = []
    names: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    for name, have in found.items():
        take = min(round(size * weight[name] / total), MAX_REPEAT * len(have))
        if take > len(have):
            rng.shuffle(have)
            picked = [have[i % len(have)] for i in range(take)]
        else:
            picked = rng.sample(have, take)
        counts[name] = {"available": len(have), "taken": take}
        texts += [t for t, _ in picked]
        labels += [lb for _, lb in picked]
        names += [name] * take
    order = list(range(len(texts)))
    rng.shuffle(order)
    ds = Dataset.from_dict({"text": [texts[i] for i in order], "labels": [labels[i] for i in order],
                            "source": [names[i] for i in order]}, features=MIX_FEATURES)
    return ds, counts


def dev_mix(sources: Sequence[Source], root: str | os.PathLike | None = None, *,
            per_source: int = DEV_ROWS_PER_SOURCE) -> Dataset:
    """Every source's dev split, at most ``per_source`` rows each (a fixed sample)."""
    from datasets import concatenate_datasets

    return concatenate_datasets([dataset(s, "dev", root, limit=per_source) for s in sources])


def targets(labels: Sequence[Sequence[str]], sources: Sequence[str], model_labels: Sequence[str]) -> np.ndarray:
    """(rows × model labels) float32: 1 for a row's labels, 0 for the rest of its source's scope, else UNKNOWN.

    A row of no known source (a correction, a CSV) has every label in scope.
    """
    index = {lb: j for j, lb in enumerate(model_labels)}
    out = np.zeros((len(labels), len(model_labels)), dtype=np.float32)
    masks: dict[str, np.ndarray] = {}
    for name, source in SOURCES.items():
        mask = np.full(len(model_labels), UNKNOWN, dtype=np.float32)
        mask[[index[lb] for lb in source.scope if lb in index]] = 0.0
        masks[name] = mask
    for r, (names, src) in enumerate(zip(labels, sources)):
        if src in masks:
            out[r] = masks[src]
        for name in names:
            out[r, index[name]] = 1.0
    return out


def known(y: np.ndarray) -> np.ndarray:
    """Which entries of a :func:`targets` matrix are annotated."""
    return y != UNKNOWN
