"""Training on tiny models: fast configs, a tiny GoEmotions folder, fine-tune corrections, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from model import train
from model.finetune_config import FinetuneConfig
from model.labels import GOEMOTIONS, GOEMOTIONS_TO_EKMAN

# --------------------------------------------------------------------------- configs


def fast_train_config(base: Path, data_dir: Path, tmp_path: Path, **changes) -> train.TrainConfig:
    """A `train` config that fits the tiny model to the tiny data in a few seconds, on one thread."""
    values = dict(base=str(base), data=str(data_dir), models_dir=str(tmp_path / "models"), epochs=30,
                  learning_rate=3e-3, batch_size=8, eval_batch_size=64, warmup=0.0, torch_threads=1,
                  progress_interval=0.0)
    values.update(changes)
    return train.TrainConfig(**values)


def fast_finetune_config(tmp_path: Path, model_dir: Path, **changes) -> FinetuneConfig:
    """A fine-tune config that overfits the tiny model in about a second, on one thread (the fine-tune
    unmixed, so a test sees what training did; ``mix`` has its own test)."""
    values = dict(base=str(model_dir), models_dir=str(tmp_path / "models"), epochs=40, learning_rate=5e-3,
                  batch_size=4, warmup=0.0, torch_threads=1, progress_interval=0.0, mix=1.0)
    values.update(changes)
    return FinetuneConfig(**values)


def cli(*argv: str) -> int:
    """``emotion-machine *argv``, in this process."""
    from bot.cli import main

    return main(list(argv))


# --------------------------------------------------------------------------- fine-tune corrections

# Word-level texts the tiny vocabulary knows, three labels.
# One keyword per label, so a model trained on some of these gets the held-out ones right too.
TEXTS = {
    "happiness": ["i am so happy", "happy happy today", "so happy lol", "happy thanks"],
    "sadness": ["i am so sad", "sad sad today", "so sad sorry", "sad ugh"],
    "anger": ["i am so angry", "angry angry today", "so angry why", "angry hate"],
}


def corrections() -> list[tuple[str, str]]:
    """The 12 (text, label) pairs of :data:`TEXTS`."""
    return [(t, label) for label, texts in TEXTS.items() for t in texts]


# --------------------------------------------------------------------------- a tiny GoEmotions folder

#: One keyword per GoEmotions label (all in tiny.WORDS); rows are keyword + filler.
KEYWORDS = {"joy": "happy", "sadness": "sad", "anger": "angry", "fear": "scared", "surprise": "wow",
            "love": "love", "neutral": "ok"}
TRAIN_TEMPLATES = ["i am so {}", "{} today", "really {} feeling", "{} {} lol", "totally {}", "feel {} today"]
DEV_TEMPLATES = ["so {} today", "i am {} lol"]
TEST_TEMPLATES = ["really {}", "i feel {}"]
#: Rows with two labels: kept whole by multi-label loading, kept by single-label only when they map to one label.
PAIRS = [("joy", "love"), ("sadness", "fear")]


def goemotions_rows(templates: list[str]) -> list[tuple[str, list[str]]]:
    rows = [(t.format(w, w), [lb]) for lb, w in KEYWORDS.items() for t in templates]
    rows += [(t.format(f"{KEYWORDS[a]} {KEYWORDS[b]}", ""), [a, b]) for a, b in PAIRS for t in templates]
    return rows


def write_goemotions(folder: Path) -> Path:
    """labels.txt, ekman_mapping.json and train/dev/test.tsv in GoEmotions' format."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.txt").write_text("\n".join(GOEMOTIONS) + "\n", encoding="utf-8")
    groups: dict[str, list[str]] = {}
    for label, group in GOEMOTIONS_TO_EKMAN.items():
        if group != "neutral":
            groups.setdefault(group, []).append(label)
    (folder / "ekman_mapping.json").write_text(json.dumps(groups), encoding="utf-8")
    for split, templates in (("train", TRAIN_TEMPLATES), ("dev", DEV_TEMPLATES), ("test", TEST_TEMPLATES)):
        lines = [f"{text}\t{','.join(str(GOEMOTIONS.index(lb)) for lb in labels)}\tid{i}"
                 for i, (text, labels) in enumerate(goemotions_rows(templates))]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder
