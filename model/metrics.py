"""Scores and per-label thresholds, shared by ``train`` (dev, checkpoint selection), ``finetune`` (the gate)
and ``eval``.

One place, so that the figure a run records, the one it picks a checkpoint by and the one
``emotion-machine eval`` reports are computed the same way. numpy and scikit-learn only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Candidate thresholds for tuning: 0.01 … 0.99.
GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)


def probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """(rows × labels) probabilities from logits: a sigmoid per label, or a softmax over them."""
    logits = np.asarray(logits, dtype=np.float32)
    if multi_label:
        return 1.0 / (1.0 + np.exp(-logits))
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def accuracy_macro_f1(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 over the labels present in ``gold`` (by name, so any two models compare)."""
    from sklearn.metrics import accuracy_score, f1_score

    present = sorted(set(gold))
    return {"accuracy": float(accuracy_score(gold, predicted)),
            "macro_f1": float(f1_score(gold, predicted, labels=present, average="macro", zero_division=0))}


def tune_thresholds(probs: np.ndarray, gold: np.ndarray, labels: Sequence[str],
                    grid: np.ndarray = GRID) -> dict[str, float]:
    """Per label, the grid threshold with the best F1 on (probs, gold); ties go to the one nearest 0.5.

    A label with no positive row gets 0.5: nothing to tune it on. A gold entry below 0 is unknown
    (:data:`model.sources.UNKNOWN`) and counts neither way.
    """
    known = gold >= 0
    gold = gold > 0
    f1 = np.zeros((len(grid), len(labels)))
    for g, t in enumerate(grid):
        pred = (probs >= t) & known
        tp = (pred & gold).sum(0)
        fp = (pred & ~gold).sum(0)
        fn = (~pred & gold).sum(0)
        f1[g] = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    out: dict[str, float] = {}
    for j, label in enumerate(labels):
        if not gold[:, j].any():
            out[label] = 0.5
            continue
        best = np.flatnonzero(f1[:, j] >= f1[:, j].max() - 1e-12)
        out[label] = float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]])
    return out


def above_thresholds(probs: np.ndarray, thresholds: dict[str, float] | None, labels: Sequence[str]) -> np.ndarray:
    """(rows × labels) booleans: each label's probability against its threshold (0.5 where none).

    Thresholds in float32, as :class:`model.classifier.Classifier` holds them, so a score is the bot's.
    """
    return probs >= np.array([(thresholds or {}).get(lb, 0.5) for lb in labels], dtype=np.float32)


def relative_scores(probs: np.ndarray, thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """(rows × labels) how far each probability is above its label's threshold, in log-odds.

    The label a multi-label model shows is the one furthest above its own threshold: with thresholds
    tuned per label (and positive-class weights that raise rare labels' probabilities), a raw argmax
    over sigmoids compares numbers that do not mean the same. 0 is "exactly at the threshold".
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-6, 1 - 1e-6)
    t = np.clip(np.asarray(thresholds, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)) - np.log(t / (1 - t))


def single_label_scores(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy and macro-F1 over the labels present in ``gold`` (:func:`accuracy_macro_f1`), plus per-label figures."""
    from sklearn.metrics import classification_report

    present = [lb for lb in labels if lb in set(gold)]
    report = classification_report(gold, predicted, labels=present, output_dict=True, zero_division=0)
    per_label = {lb: {"precision": round(report[lb]["precision"], 4), "recall": round(report[lb]["recall"], 4),
                      "f1": round(report[lb]["f1-score"], 4), "support": int(report[lb]["support"])} for lb in present}
    scores = {k: round(v, 4) for k, v in accuracy_macro_f1(gold, predicted).items()}
    return {**scores, "labels_scored": len(present), "per_label": per_label}


def multi_label_scores(gold: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Subset accuracy, micro-F1 and macro-F1 (over labels with a positive row in ``gold``), per-label figures.

    A gold entry below 0 is unknown (a mixed set's row says nothing about that label): it is left
    out of every figure, and a row matches exactly when its known entries do.
    """
    known = gold >= 0
    gold = (gold > 0).astype(int)
    predicted = predicted.astype(int) * known
    present = [j for j in range(len(labels)) if gold[:, j].any()]
    tp = (gold & predicted).sum(0)
    fp = ((1 - gold) & predicted).sum(0)
    fn = (gold & (1 - predicted)).sum(0)
    p = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
    r = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
    f = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    per_label = {labels[j]: {"precision": round(float(p[j]), 4), "recall": round(float(r[j]), 4),
                             "f1": round(float(f[j]), 4), "support": int(gold[:, j].sum())} for j in present}
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
    return {
        "accuracy": round(float(((gold == predicted) | ~known).all(axis=1).mean()) if len(gold) else 0.0, 4),
        "micro_f1": round(float(micro), 4),
        "macro_f1": round(float(np.mean(f[present])) if present else 0.0, 4),
        "labels_scored": len(present),
        "per_label": per_label,
    }


def dev_scores(probs: np.ndarray, gold: np.ndarray, labels: Sequence[str], *,
               multi_label: bool) -> tuple[dict[str, Any], dict[str, float]]:
    """(scores, thresholds) on a dev split; multi-label thresholds are tuned on these same rows.

    ``gold`` is multi-hot (rows × labels) for a multi-label model, class ids otherwise; a
    single-label model has no thresholds (``{}``): it takes the argmax.
    """
    if multi_label:
        thresholds = tune_thresholds(probs, gold, labels)
        return multi_label_scores(gold, above_thresholds(probs, thresholds, labels), labels), thresholds
    gold_names = [labels[int(i)] for i in gold]
    return single_label_scores(gold_names, [labels[i] for i in probs.argmax(-1)], labels), {}
