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


# --------------------------------------------------------------------------- every labelled set, tiny

#: Texts of the tiny vocabulary, by the seed label they carry; every set writes its own labels for them.
SOURCE_WORDS = {"happiness": "happy", "sadness": "sad", "anger": "angry", "fear": "scared", "surprise": "wow",
                "love": "love", "disgust": "gross", "neutral": "ok", "shame": "sorry", "guilt": "not"}
_FILLERS = ["i am so {}", "{} today", "really {} feeling", "totally {}", "feel {} today", "{} lol", "oh {}",
            "so {} yeah", "{} the phone", "my {} day", "very {} right", "{} it is"]


def _texts(label: str) -> list[str]:
    return [f.format(SOURCE_WORDS[label]) for f in _FILLERS]


def write_sources(root: Path) -> Path:
    """A folder holding every set of ``model.sources.SOURCES``, a dozen rows a label, each in its own file format.

    Sarcastic rows read ``sure great ...`` (sarcasm is ``sure great`` here); ISEAR gets a bracketed non-answer and
    a text with a ``|`` in it; XED a trust-only row (no seed label) and a neutral file; EmoContext ``others``.
    """
    import csv as _csv

    write_goemotions(root / "goemotions")
    dair = root / "dair-emotion"
    dair.mkdir(parents=True)
    names = {"happiness": "joy", "sadness": "sadness", "anger": "anger", "fear": "fear", "surprise": "surprise",
             "love": "love"}
    lines = [f"{t};{name}" for lb, name in names.items() for t in _texts(lb)]
    (dair / "train.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (dair / "val.txt").write_text("\n".join(f"i feel {line}" for line in lines) + "\n", encoding="utf-8")

    emo = root / "emocontext"
    emo.mkdir()
    rows = [(t, name) for lb, name in (("happiness", "happy"), ("sadness", "sad"), ("anger", "angry"),
                                       ("neutral", "others"), ("love", "others")) for t in _texts(lb)]
    for split in ("train", "dev", "test"):
        (emo / f"{split}.txt").write_text("".join(f"{i}\thi\thello\t{t}\t{lb}\n" for i, (t, lb) in enumerate(rows)),
                                          encoding="utf-8")
    meld = root / "meld"
    meld.mkdir()
    names = {"neutral": "neutral", "happiness": "joy", "surprise": "surprise", "anger": "anger", "sadness": "sadness",
             "disgust": "disgust", "fear": "fear"}
    for split in ("train", "dev", "test"):
        with (meld / f"{split}_sent_emo.csv").open("w", encoding="utf-8", newline="") as f:
            w = _csv.writer(f)
            w.writerow(["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID"])
            for i, (lb, name) in enumerate((lb, name) for lb, name in names.items() for _ in range(1)):
                for j, t in enumerate(_texts(lb)):
                    w.writerow([i * 100 + j, t.replace("i am", "i\u2019m"), "Ross", name, "neutral", i, j])
    xed = root / "xed_en"
    xed.mkdir()
    numbers = {"anger": 1, "disgust": 3, "fear": 4, "happiness": 5, "sadness": 6, "surprise": 7}
    lines = [f"{t.replace('today', 'today .')}\t{n}" for lb, n in numbers.items() for t in _texts(lb)]
    lines += [f"{t} ok\t{numbers['happiness']}, {numbers['surprise']}" for t in _texts("happiness")[:4]]
    lines += ["thanks you , my love\t8"]  # trust only: no seed label
    (xed / "en-annotated.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (xed / "neu_en.txt").write_text("".join(f"9\t{t}\n" for t in _texts("neutral")) + "malformed\n", encoding="utf-8")

    isear = root / "isear"
    isear.mkdir()
    header = "|".join(f"C{i}" for i in range(42)) + "|"
    names = {"happiness": "joy", "fear": "fear", "anger": "anger", "sadness": "sadness", "disgust": "disgust",
             "shame": "shame", "guilt": "guilt"}

    def isear_line(label: str, text: str) -> str:
        fields = ["1"] * 42
        fields[36], fields[40], fields[41] = label, text, "1"
        return "|".join(fields) + "|"

    lines = [header] + [isear_line(name, f"when {t}") for lb, name in names.items() for t in _texts(lb)]
    lines += [isear_line("shame", "[ Same as in anger.]"), isear_line("guilt", "when i was sorry | not  \u00e1 fine")]
    (isear / "isear.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    sarcastic = [f"sure great {t}" for t in _texts("happiness")] + [f"sure great {t}" for t in _texts("love")]
    plain = _texts("neutral") + _texts("sadness")
    sarc = root / "isarcasmeval_en"
    (sarc / "train").mkdir(parents=True)
    (sarc / "test").mkdir()
    with (sarc / "train" / "train.En.csv").open("w", encoding="utf-8", newline="") as f:
        w = _csv.writer(f)
        w.writerow(["", "tweet", "sarcastic", "rephrase", "sarcasm"])
        for i, t in enumerate(sarcastic):
            w.writerow([i, t, 1, f"i am not {t.split()[-1]}", 1])
        for i, t in enumerate(plain):
            w.writerow([100 + i, t, 0, "", ""])
    with (sarc / "test" / "task_A_En_test.csv").open("w", encoding="utf-8", newline="") as f:
        w = _csv.writer(f)
        w.writerow(["text", "sarcastic"])
        for t in sarcastic[:6]:
            w.writerow([t + " lol", 1])
        for t in plain[:6]:
            w.writerow([t + " lol", 0])
    mustard = root / "mustard"
    mustard.mkdir()
    rows = {f"m{i}": {"utterance": t, "sarcasm": s, "speaker": "SHELDON", "context": []}
            for i, (t, s) in enumerate([(t, True) for t in sarcastic] + [(t, False) for t in plain])}
    (mustard / "sarcasm_data.json").write_text(json.dumps(rows), encoding="utf-8")
    return root
