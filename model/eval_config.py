"""The knobs of ``emotion-machine eval``: light (no torch), so the CLI builds its options from them fast."""

from __future__ import annotations

from dataclasses import dataclass

from model.defaults import option
from model.labels import LABEL_SETS, MAPPINGS


@dataclass
class EvalConfig:
    """Every knob of ``emotion-machine eval``."""

    model: str = option(None, "model folder (a registry version folder) or hub id", required=True)
    data: str | None = option(None, "GoEmotions folder, the hub name, a .csv or a .jsonl (or give --sources)")
    sources: str = option("", "a seed13 model instead: score each labelled set's --split in its own labels "
                              "('all', 'commercial' or names, comma-separated; model/source_scores.py)")
    data_root: str = option("", "folder holding the --sources sets (default: EMOTION_DATA_ROOT, else ../shared/data)")
    split: str = option("test", "split of a GoEmotions source")
    labels: str | None = option(None, "how GoEmotions labels map onto the model's: goemotions, ekman, seed13 "
                                      "(default: from the model's labels)", choices=sorted(LABEL_SETS))
    group: str | None = option(None, "also score a 28-label GoEmotions model's probabilities grouped into this "
                                     "set (max over members)", choices=sorted(MAPPINGS))
    group_how: str = option("max", "how member probabilities combine into a group's", choices=["max", "noisy-or"])
    thresholds: str = option("tune", "multi-label: tune per-label thresholds on dev (and save them with the model), "
                                     "or use the stored ones (0.5 where none)", choices=["tune", "stored"])
    save_thresholds: bool = option(True, "write tuned thresholds into the model's config (--no-save-thresholds: "
                                         "don't)")
    out: str | None = option(None, "report folder for report.json, report.txt, confusion.png, confusion.txt "
                                   "(default: data/eval/<model>-<split>)")
    batch_size: int = option(128, "examples per inference batch")
    max_length: int = option(64, "tokens per text")
    limit: int = option(0, "> 0 scores only the first N rows (smoke runs)")
    torch_threads: int | None = option(None, "torch threads (default: every core)", aliases=["--threads"])
    device: str = option("auto", "auto (CUDA when present), cpu or cuda")
