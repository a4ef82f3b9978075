"""Replay data against forgetting: where it comes from, and the frozen sets the gate judges on.

A fine-tune mixes old labelled data in with the corrections (replay) and judges the candidate on
rows of that data neither model trained on. By default the data is what the base records it was
trained on (``train`` writes it in the model folder's metadata, fine-tunes carry it forward), so
guarding against forgetting needs no setting. docs/learning.md says how the sets are chosen.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from datasets import Dataset, concatenate_datasets

from model import data
from model.defaults import is_hub_source
from model.finetune_config import FinetuneConfig
from model.registry import META_FILE

#: The reference set's shuffle: fixed, so that every fine-tune of every version is judged on the same rows.
REFERENCE_SEED = 0
#: ``replay`` that switches replay off.
NO_REPLAY = "none"
#: :func:`replay_source`'s answer when the replay comes from the base's training record.
RECORDED = "the base's training record"


def replay_source(config: FinetuneConfig, base: str) -> tuple[str | None, str]:
    """(replay data or None, where that choice came from): the configured source, else the base's record.

    ``train`` records its data (``data``) and a fine-tune the replay it used (``replay_source``) in
    the model folder's metadata, so a chain of fine-tunes keeps replaying the base's data.
    """
    if config.replay:
        if config.replay.strip().lower() == NO_REPLAY:
            return None, "replay is switched off (replay: none)"
        return config.replay, "configured"
    meta = training_record(base)
    recorded = meta.get("replay_source") or meta.get("data")
    if not recorded:
        return None, "the base records no training data and no replay data is configured (EMOTION_REPLAY_PATH)"
    recorded = str(recorded)
    if not is_hub_source(recorded) and not Path(recorded).expanduser().exists():
        return None, (f"the base was trained on {recorded}, which is not on this machine; "
                      "point EMOTION_REPLAY_PATH at a copy")
    return recorded, RECORDED


class ReplaySets(NamedTuple):
    """What :func:`load_replay` gives: rows to train on, and held-out rows of the same source."""

    pool: Dataset
    #: Frozen: the same rows every run, never trained on; the gate's measure of forgetting.
    reference: Dataset
    #: The rows after the reference set: both sides' thresholds for the gate are tuned on them.
    calibration: Dataset | None
    #: The whole held-out split (reference, calibration and the rest): a multi-label candidate's
    #: thresholds are re-tuned on it, as ``train`` tuned the base's on GoEmotions dev.
    held_out: Dataset


def load_replay(source: str, config: FinetuneConfig, labels: Sequence[str], multi_label: bool) -> ReplaySets:
    """The training pool, frozen reference set, calibration and held-out rows of ``source``, in the model's labels.

    The reference set keeps every label of a row (``text``, ``labels``), so a multi-label model is
    scored as ``eval`` scores it. So does a multi-label model's pool: replay then teaches what the
    base was trained on, every label of a GoEmotions row, not a one-label reading of it. A
    single-label model's pool has one label a row (``text``, ``label``). A GoEmotions source gives
    its dev split as the reference; a single file gives a fixed slice of itself, which the pool then
    leaves out. Either way the same rows every run (:data:`REFERENCE_SEED`). The dev rows after the
    reference set (as many again, at most) are the calibration rows the gate tunes each side's thresholds on.
    """
    target = config.replay_map
    calibration = None
    goemotions = data.has_split(source, "train")
    if goemotions and target == "auto":
        target = data.target_for(labels)
    if goemotions:
        pool = (data.load_rows(source, "train", target, multi_label=True) if multi_label
                else data.load_examples(source, split="train", target=target))
        if data.has_split(source, "dev"):
            reference = data.load_rows(source, "dev", target, multi_label=multi_label).shuffle(seed=REFERENCE_SEED)
            held_out = reference
        else:
            pool, reference, calibration = _slice_reference(pool, config)
            held_out = concatenate_datasets([reference, calibration])
    else:
        pool, reference, calibration = _slice_reference(data.load_examples(source), config)
        held_out = concatenate_datasets([reference, calibration])
        pool = as_rows(pool) if multi_label else pool
    if config.reference_size > 0 and len(reference) > config.reference_size:
        if goemotions and data.has_split(source, "dev"):
            calibration = reference.select(range(config.reference_size,
                                                 min(len(reference), 2 * config.reference_size)))
        reference = reference.select(range(config.reference_size))
    for part in (pool, reference):
        data.check_labels(_flat_labels(part), labels, what=f"replay data {source}")
    return ReplaySets(pool, reference, calibration, held_out)


def as_rows(ds: Dataset) -> Dataset:
    """``text`` + ``label`` → ``text`` + ``labels`` (a list of one): the shape multi-label training mixes."""
    return Dataset.from_dict({"text": ds["text"], "labels": [[lb] for lb in ds["label"]]}, features=data.ROW_FEATURES)


def _flat_labels(ds: Dataset) -> Dataset:
    """Every label name of ``ds`` as a ``label`` column, for :func:`model.data.check_labels`."""
    if "label" in ds.column_names:
        return ds
    return Dataset.from_dict({"label": [lb for row in ds["labels"] for lb in row]})


def _slice_reference(rows: Dataset, config: FinetuneConfig) -> tuple[Dataset, Dataset, Dataset]:
    """(the rest, reference, calibration) of a one-split source: two fixed fifths, at most ``reference_size`` rows."""
    rows = rows.shuffle(seed=REFERENCE_SEED)
    n = len(rows) // 5 if config.reference_size <= 0 else min(config.reference_size, len(rows) // 5)
    parts = [rows.select(range(i * n, (i + 1) * n)) for i in (0, 1)]
    reference, calibration = (part if "labels" in part.column_names else as_rows(part) for part in parts)
    return rows.select(range(2 * n, len(rows))), reference, calibration


def training_record(base: str) -> dict[str, Any]:
    """The training record in a model folder (``{}`` for a hub id or a folder without one)."""
    try:
        meta = json.loads((Path(base).expanduser() / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}
