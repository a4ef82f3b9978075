"""Measure a model on a labelled split (``emotion-machine eval``): figures, report files, thresholds.

Straight-line steps, in the order :func:`run` calls them: load the model → load the split with
labels mapped onto the model's set → probabilities (Trainer.predict, as train does) → for a
multi-label model, per-label thresholds tuned on the dev split (maximum F1 per label over a
grid) and saved into the model's ``config.label_thresholds``, which :class:`Classifier` applies
→ scores (accuracy, macro-F1; micro-F1 for multi-label; per-label precision/recall/F1) →
confusion matrix as text and PNG → optionally the same for probabilities grouped into a
coarser set (``--group ekman``: the max over each group's members) → report.json/report.txt.

Why tune thresholds on dev, not test: a threshold chosen on the data it is scored on flatters
the figure; dev is the split the paper tunes on too.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from model import data
from model.data import load_rows, multi_hot
from model.defaults import TrainerKnobs
from model.eval_config import EvalConfig
from model.hf import predict_logits, prepare_run
from model.labels import GOEMOTIONS, LABEL_SETS, MAPPINGS
from model.metrics import (
    above_thresholds,
    multi_label_scores,
    probabilities,
    single_label_scores,
    tune_thresholds,
)

log = logging.getLogger(__name__)

NONE_COLUMN = "(none)"


class EvalError(RuntimeError):
    """Evaluation cannot run as asked; the message says what to change."""


# --------------------------------------------------------------------------- predictions


def predict_probabilities(model, tokenizer, texts: Sequence[str], batch_size: int, max_length: int,
                          workdir: str, *, device: str = "auto") -> np.ndarray:
    """(rows × labels) probabilities: sigmoid for a multi-label model, softmax otherwise.

    Trainer.predict (:func:`model.hf.predict_logits`: rows in order) batches with dynamic
    padding and uses CUDA + bf16/fp16 where present.
    """
    knobs = TrainerKnobs(eval_batch_size=batch_size, max_length=max_length, device=device)
    logits = predict_logits(model, tokenizer, texts, knobs, workdir)
    return probabilities(logits, getattr(model.config, "problem_type", None) == "multi_label_classification")


def group_probabilities(probs: np.ndarray, labels: Sequence[str], group: str,
                        how: str = "max") -> tuple[np.ndarray, list[str]]:
    """Probabilities over ``group``'s labels from its members among ``labels``.

    ``max``: the most likely member; ``noisy-or``: 1 - prod(1 - p), the chance that any member
    applies if they were independent (several weak members add up).
    """
    mapping = MAPPINGS[group]
    groups = [g for g in LABEL_SETS[group] if any(mapping.get(lb) == g for lb in labels)]
    out = np.zeros((len(probs), len(groups)), dtype=np.float32)
    for k, g in enumerate(groups):
        members = [j for j, lb in enumerate(labels) if mapping.get(lb) == g]
        member_probs = probs[:, members]
        out[:, k] = member_probs.max(axis=1) if how == "max" else 1.0 - np.prod(1.0 - member_probs, axis=1)
    return out, groups


def group_rows(rows: Sequence[Sequence[str]], group: str) -> list[list[str]]:
    """Each row's labels mapped into ``group``, deduplicated."""
    mapping = MAPPINGS[group]
    return [sorted({mapping[lb] for lb in names if lb in mapping}) for names in rows]


# --------------------------------------------------------------------------- scores


def confusion_single(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """(gold × predicted) counts over ``labels``."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(gold, predicted, labels=list(labels))


def confusion_multi(gold: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(gold label × predicted label, plus a ``(none)`` column) co-occurrence counts.

    A multi-label row adds one count for every (gold, predicted) pair it holds, and one in
    ``(none)`` per gold label when nothing passed its threshold: the diagonal is hits, the
    rest is what each emotion gets mistaken for (or left out as).
    """
    gold = gold.astype(np.int64)
    predicted = predicted.astype(np.int64)
    pairs = gold.T @ predicted
    none = gold[predicted.sum(1) == 0].sum(0)
    return np.concatenate([pairs, none[:, None]], axis=1)


def confusion_text(matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str]) -> str:
    """A plain-text table; columns are numbered (labels are listed with their number on each row)."""
    width = max(4, len(str(int(matrix.max()) if matrix.size else 0)) + 1)
    header = "gold \\ predicted"
    name_w = max(max(len(r) for r in rows) + 4, len(header) + 1)
    index = {c: i for i, c in enumerate(cols)}
    lines = [header.ljust(name_w) + "".join(str(i).rjust(width) for i in range(len(cols)))]
    for i, r in enumerate(rows):
        num = index.get(r, "")
        lines.append(f"{num!s:>2} {r}".ljust(name_w) + "".join(str(int(v)).rjust(width) for v in matrix[i]))
    extra = [f"{i:>2} {c}" for i, c in enumerate(cols) if c not in rows]
    if extra:
        lines.append("columns not in the rows: " + ", ".join(s.strip() for s in extra))
    return "\n".join(lines) + "\n"


def plot_confusion(matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], path: str | Path,
                   title: str) -> Path:
    """Row-normalised heatmap with counts (when small enough to read), via a bare Figure + Agg.

    No pyplot: it keeps global state and picks a GUI backend, neither of which a server wants.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(len(rows), len(cols))
    size = max(5.0, 0.36 * n + 2.5)
    fig = Figure(figsize=(size + 1.2, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    totals = matrix.sum(axis=1, keepdims=True)
    share = matrix / np.maximum(totals, 1)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=list(cols), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), labels=list(rows), fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title, fontsize=10)
    if n <= 16:
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                if matrix[i, j]:
                    ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.6 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the gold row")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def _per_label_text(per_label: dict[str, dict[str, Any]]) -> str:
    width = max([len(lb) for lb in per_label] + [5])
    lines = [f"{'label':<{width}}  precision  recall     f1  support"]
    for lb, m in per_label.items():
        lines.append(f"{lb:<{width}}  {m['precision']:>9.3f}  {m['recall']:>6.3f}  {m['f1']:>5.3f}  {m['support']:>7}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the pipeline


def save_config(config, folder: Path) -> None:
    """Rewrite ``folder/config.json`` atomically, as ``save_pretrained`` would write it.

    In place (``save_pretrained``), a kill between truncating and writing left an empty config.json
    and a model nobody could load.
    """
    from model.registry import write_atomic

    if "transformers_weights" in config:  # what save_pretrained drops: known on load, not saved
        delattr(config, "transformers_weights")
    if hasattr(config, "validate"):
        config.validate()
    write_atomic(folder / "config.json", config.to_json_string(use_diff=True))


def default_out(model: str, split: str) -> Path:
    return Path("data/eval") / f"{Path(model).name or 'model'}-{split}"


def _score(probs: np.ndarray, rows: list[list[str]], labels: list[str], multi_label: bool,
           thresholds: dict[str, float] | None) -> tuple[dict[str, Any], np.ndarray, list[str], list[str]]:
    """(scores, confusion matrix, its row labels, its column labels) for these probabilities."""
    if multi_label:
        gold = multi_hot(rows, labels)
        predicted = above_thresholds(probs, thresholds, labels)
        return (multi_label_scores(gold, predicted, labels), confusion_multi(gold, predicted),
                labels, [*labels, NONE_COLUMN])
    gold_names = [names[0] for names in rows]
    predicted_names = [labels[i] for i in probs.argmax(-1)]
    return (single_label_scores(gold_names, predicted_names, labels),
            confusion_single(gold_names, predicted_names, labels), labels, labels)


def run_sources(config: EvalConfig) -> dict[str, Any]:
    """``eval --sources``: the model on each set's ``split`` in that set's labels, with the model's stored
    thresholds (tuned on the mixed dev split by ``train``); report.json and report.txt hold the table."""
    from model import source_scores, sources
    from model.classifier import Classifier

    started = time.monotonic()
    prepare_run(TrainerKnobs(torch_threads=config.torch_threads))
    clf = Classifier.load(config.model, device="cpu", quantize="none", max_length=config.max_length)
    labels = list(clf.labels)
    if not clf.multi_label:
        raise EvalError("--sources scores a multi-label model (train --sources makes one); this one is single-label")
    root = Path(config.data_root).expanduser() if config.data_root else sources.default_root()
    thresholds = dict(getattr(clf.model.config, "label_thresholds", None) or {})
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="emotion-eval-") as workdir:
        def probs_of(ds: Dataset) -> np.ndarray:
            return predict_probabilities(clf.model, clf.tokenizer, ds["text"], config.batch_size, config.max_length,
                                         workdir, device=config.device)

        for source in sources.choose(config.sources):
            rows = sources.dataset(source, config.split, root, limit=config.limit)
            probs = probs_of(rows)
            results[source.name] = source_scores.score(source, probs, list(rows["labels"]), labels, thresholds)
            if source.name == "goemotions":
                dev = sources.dataset(source, "dev", root, limit=config.limit)
                results[source.name]["ekman"] = source_scores.ekman(probs, list(rows["labels"]), probs_of(dev),
                                                                     list(dev["labels"]), labels)
    out_dir = Path(config.out).expanduser() if config.out else default_out(config.model, f"sources-{config.split}")
    out_dir.mkdir(parents=True, exist_ok=True)
    scored = [r["accuracy"] for r in results.values() if r.get("accuracy") is not None]
    report = {"model": str(config.model), "version": clf.version, "split": config.split, "sources": results,
              "mean_accuracy": round(float(np.mean(scored)), 4) if scored else None,
              "thresholds": thresholds, "config": asdict(config), "seconds": round(time.monotonic() - started, 2)}
    text = source_scores.table(results) + f"\n\nmean accuracy {report['mean_accuracy']}\n"
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / "report.txt").write_text(text, encoding="utf-8")
    report["files"] = {"report_json": str(out_dir / "report.json"), "report_txt": str(out_dir / "report.txt")}
    report["table"] = text
    return report


def run(config: EvalConfig) -> dict[str, Any]:
    """Evaluate, write the report files, save tuned thresholds; returns the report (also report.json)."""
    from model.classifier import Classifier

    if config.sources:
        return run_sources(config)
    if not config.data:
        raise EvalError("give --data (a GoEmotions folder, .csv or .jsonl) or --sources")
    started = time.monotonic()
    prepare_run(TrainerKnobs(torch_threads=config.torch_threads))
    if config.thresholds not in ("tune", "stored"):
        raise EvalError(f"thresholds must be 'tune' or 'stored', not {config.thresholds!r}")

    # 1. model
    clf = Classifier.load(config.model, device="cpu", quantize="none", max_length=config.max_length)
    model, tokenizer, labels, multi_label = clf.model, clf.tokenizer, list(clf.labels), clf.multi_label
    folder = Path(config.model).expanduser()
    if config.group:
        if config.group not in MAPPINGS:
            raise EvalError(f"--group {config.group!r}: use one of {', '.join(MAPPINGS)}")
        if set(labels) != set(GOEMOTIONS):
            raise EvalError(f"--group {config.group} groups a 28-label GoEmotions model's probabilities; "
                            f"this model has {len(labels)} labels")

    # 2. data, mapped onto the model's label set
    target = config.labels or data.target_for(labels)

    def rows_of(split: str) -> Dataset:
        ds = load_rows(config.data, split, target, multi_label=multi_label)
        data.check_labels(Dataset.from_dict({"label": [lb for r in ds["labels"] for lb in r]}), labels,
                          what=f"{config.data} ({split}, mapped to {target})")
        return ds.select(range(config.limit)) if 0 < config.limit < len(ds) else ds

    rows = rows_of(config.split)
    out_dir = Path(config.out).expanduser() if config.out else default_out(config.model, config.split)
    out_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="emotion-eval-") as workdir:
        def probabilities(ds: Dataset) -> np.ndarray:
            return predict_probabilities(model, tokenizer, ds["text"], config.batch_size, config.max_length,
                                         workdir, device=config.device)

        # 3. probabilities; 4. thresholds from dev for a multi-label model
        probs = probabilities(rows)
        thresholds: dict[str, float] | None = None
        note = "single-label: argmax"
        dev_rows = dev_probs = None
        tune = (multi_label and config.thresholds == "tune" and config.split != "dev"
                and data.has_split(config.data, "dev"))
        if multi_label:
            stored = dict(getattr(model.config, "label_thresholds", None) or {})
            thresholds, note = {lb: float(stored.get(lb, 0.5)) for lb in labels}, \
                ("stored with the model" if stored else "0.5 (none stored)")
            if tune:
                dev_rows = rows_of("dev")
                dev_probs = probabilities(dev_rows)
                thresholds = tune_thresholds(dev_probs, multi_hot(dev_rows["labels"], labels), labels)
                note = f"tuned on dev ({len(dev_rows)} rows)"
                model.config.label_thresholds = thresholds
                if config.save_thresholds and folder.is_dir():
                    save_config(model.config, folder)
                    note += f", saved to {folder / 'config.json'}"
            elif config.thresholds == "tune":
                note += (" (no dev split to tune on)" if config.split != "dev"
                         else " (not tuned on the split being scored)")

        # 5. scores and confusion matrix
        scores, matrix, row_names, col_names = _score(probs, rows["labels"], labels, multi_label, thresholds)
        files = {"confusion_png": str(plot_confusion(
                     matrix, row_names, col_names, out_dir / "confusion.png",
                     f"{Path(config.model).name}: {config.split} ({len(rows)} rows)"))}
        (out_dir / "confusion.txt").write_text(confusion_text(matrix, row_names, col_names), encoding="utf-8")
        files["confusion_txt"] = str(out_dir / "confusion.txt")

        # 6. grouped probabilities (28 → Ekman + neutral)
        group: dict[str, Any] | None = None
        if config.group:
            g_probs, g_labels = group_probabilities(probs, labels, config.group, config.group_how)
            g_rows = group_rows(rows["labels"], config.group)
            g_thresholds, g_note = None, "argmax of the grouped probabilities"
            if multi_label:
                g_thresholds, g_note = dict.fromkeys(g_labels, 0.5), "0.5 (no dev split to tune on)"
                if dev_rows is not None:
                    g_dev, _ = group_probabilities(dev_probs, labels, config.group, config.group_how)
                    g_thresholds = tune_thresholds(g_dev, multi_hot(group_rows(dev_rows["labels"], config.group),
                                                                    g_labels), g_labels)
                    g_note = f"tuned on dev ({len(dev_rows)} rows)"
            g_scores, g_matrix, g_r, g_c = _score(g_probs, g_rows, g_labels, multi_label, g_thresholds)
            files["group_confusion_png"] = str(plot_confusion(
                g_matrix, g_r, g_c, out_dir / f"confusion_{config.group}.png",
                f"{Path(config.model).name}: {config.split}, grouped into {config.group}"))
            (out_dir / f"confusion_{config.group}.txt").write_text(confusion_text(g_matrix, g_r, g_c), encoding="utf-8")
            files["group_confusion_txt"] = str(out_dir / f"confusion_{config.group}.txt")
            group = {"set": config.group, "labels": g_labels,
                     "how": f"{config.group_how} over each group's member probabilities",
                     "thresholds": g_thresholds, "thresholds_source": g_note,
                     "metrics": {k: v for k, v in g_scores.items() if k != "per_label"},
                     "per_label": g_scores["per_label"], "confusion": g_matrix.tolist()}

    report: dict[str, Any] = {
        "model": str(config.model), "version": clf.version, "data": str(config.data), "split": config.split,
        "mapping": target, "labels": labels, "multi_label": multi_label, "examples": len(rows),
        "metrics": {k: v for k, v in scores.items() if k != "per_label"},
        "per_label": scores["per_label"],
        "thresholds": thresholds, "thresholds_source": note,
        "confusion": {"rows": row_names, "columns": col_names, "matrix": matrix.tolist()},
        "group": group, "config": asdict(config), "seconds": round(time.monotonic() - started, 2),
    }
    files["report_json"] = str(out_dir / "report.json")
    files["report_txt"] = str(out_dir / "report.txt")
    report["files"] = files
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / "report.txt").write_text(report_text(report), encoding="utf-8")
    return report


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The headline figures, a line each (what the CLI prints)."""
    if "sources" in report:
        return [f"{report['model']} on each source's {report['split']} split, in its own labels:",
                report["table"].rstrip()]
    m = report["metrics"]
    kind = "multi-label" if report["multi_label"] else "single-label"
    head = f"{report['model']} on {report['data']} [{report['split']}], {report['examples']} rows, {kind}, " \
           f"{len(report['labels'])} labels"
    figures = f"  accuracy {m['accuracy']:.3f}   macro-F1 {m['macro_f1']:.3f}"
    if "micro_f1" in m:
        figures += f"   micro-F1 {m['micro_f1']:.3f}"
    lines = [head, figures + f"   ({m['labels_scored']} labels scored)"]
    if report["multi_label"]:
        lines.append(f"  thresholds: {report['thresholds_source']}")
    if report.get("group"):
        g = report["group"]["metrics"]
        micro = f"   micro-F1 {g['micro_f1']:.3f}" if "micro_f1" in g else ""
        lines.append(f"  grouped into {report['group']['set']} ({len(report['group']['labels'])} labels): "
                     f"accuracy {g['accuracy']:.3f}   macro-F1 {g['macro_f1']:.3f}{micro}")
    return lines


def report_text(report: dict[str, Any]) -> str:
    """report.txt: headline, per-label table, confusion matrix (the group's too)."""
    parts = ["\n".join(summary_lines(report)), "", _per_label_text(report["per_label"]),
             "confusion (gold rows × predicted columns)",
             confusion_text(np.array(report["confusion"]["matrix"]), report["confusion"]["rows"],
                            report["confusion"]["columns"])]
    if report.get("group"):
        g = report["group"]
        cols = g["labels"] + ([NONE_COLUMN] if report["multi_label"] else [])
        parts += [f"grouped into {g['set']} ({g['how']}; thresholds {g['thresholds_source']})",
                  _per_label_text(g["per_label"]), confusion_text(np.array(g["confusion"]), g["labels"], cols)]
    return "\n".join(parts)


__all__ = [
    "EvalConfig",
    "EvalError",
    "group_probabilities",
    "multi_label_scores",
    "plot_confusion",
    "predict_probabilities",
    "run",
    "single_label_scores",
    "tune_thresholds",
]
