"""A seed-13 model scored on each labelled set in that set's own labels (``eval --sources``, ``train``'s card,
``benchmarks/loso.py``).

How a prediction becomes the set's label: the label the bot would show is the one furthest above its
threshold (:func:`model.metrics.relative_scores`); here that choice is made among the set's own
labels (its scope), because a set with no ``neutral`` cannot score a ``neutral`` answer. A set with
a catch-all class (EmoContext's ``others``) gets the catch-all whenever the model's overall choice is
outside the scope: that is the set's own meaning of ``others``. A yes/no set (sarcasm) is scored by the
F1 of its label against its threshold, as iSarcasmEval's task A is.

Scores: ``accuracy`` (the chosen label is a gold label of the row) and ``macro_f1`` over the set's
labels; yes/no sets report the positive class's F1 as ``macro_f1`` too (and ``f1``). GoEmotions adds
the Ekman grouping (max over members, thresholds tuned on its dev split), the paper's comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from model.labels import EKMAN, SEED13_TO_EKMAN
from model.metrics import accuracy_macro_f1, multi_label_scores, relative_scores, tune_thresholds
from model.sources import Source


def _threshold_list(thresholds: dict[str, float] | None, labels: Sequence[str]) -> np.ndarray:
    return np.array([(thresholds or {}).get(lb, 0.5) for lb in labels], dtype=np.float64)


def score(source: Source, probs: np.ndarray, gold: Sequence[Sequence[str]], labels: Sequence[str],
          thresholds: dict[str, float] | None) -> dict[str, Any]:
    """``source``'s figures for these (rows × model labels) probabilities and gold seed labels."""
    labels = list(labels)
    t = _threshold_list(thresholds, labels)
    index = {lb: j for j, lb in enumerate(labels)}
    scope = [lb for lb in source.scope if lb in index]
    if not scope:
        return {"examples": len(gold), "accuracy": None, "macro_f1": None, "note": "none of its labels in the model"}
    cols = [index[lb] for lb in scope]
    if source.binary:
        j = cols[0]
        predicted = probs[:, j] >= t[j]
        truth = np.array([scope[0] in row for row in gold])
        tp = int((predicted & truth).sum())
        f1 = 2 * tp / max(2 * tp + int((predicted & ~truth).sum()) + int((~predicted & truth).sum()), 1)
        return {"examples": len(gold), "accuracy": round(float((predicted == truth).mean()), 4),
                "macro_f1": round(f1, 4), "f1": round(f1, 4), "positives": int(truth.sum())}
    rel = relative_scores(probs, t)
    in_scope = [scope[k] for k in rel[:, cols].argmax(axis=1)]
    if source.rest:
        overall = [labels[j] for j in rel.argmax(axis=1)]
        predicted = [lb if lb in scope else source.rest for lb in overall]
        truth = [row[0] if row else source.rest for row in gold]
        return {"examples": len(gold), **_rounded(accuracy_macro_f1(truth, predicted))}
    if source.multi_label:
        have = [i for i, row in enumerate(gold) if row]
        accuracy = float(np.mean([in_scope[i] in gold[i] for i in have])) if have else 0.0
        y = np.array([[1 if lb in row else 0 for lb in scope] for row in gold])
        f1 = multi_label_scores(y, probs[:, cols] >= t[cols], scope)["macro_f1"]
        return {"examples": len(gold), "accuracy": round(accuracy, 4), "macro_f1": f1}
    return {"examples": len(gold), **_rounded(accuracy_macro_f1([row[0] for row in gold], in_scope))}


def ekman(test_probs: np.ndarray, test_gold: Sequence[Sequence[str]], dev_probs: np.ndarray,
          dev_gold: Sequence[Sequence[str]], labels: Sequence[str]) -> dict[str, Any]:
    """Macro-F1 over Ekman + neutral of seed-label probabilities grouped by max (thresholds tuned on dev)."""
    groups = [g for g in EKMAN if any(SEED13_TO_EKMAN.get(lb) == g for lb in labels)]

    def grouped(probs: np.ndarray) -> np.ndarray:
        return np.stack([probs[:, [j for j, lb in enumerate(labels) if SEED13_TO_EKMAN.get(lb) == g]].max(axis=1)
                         for g in groups], axis=1)

    def gold(rows: Sequence[Sequence[str]]) -> np.ndarray:
        return np.array([[1 if any(SEED13_TO_EKMAN.get(lb) == g for lb in row) else 0 for g in groups]
                         for row in rows])

    thresholds = tune_thresholds(grouped(dev_probs), gold(dev_gold), groups)
    scores = multi_label_scores(gold(test_gold), grouped(test_probs) >= _threshold_list(thresholds, groups), groups)
    return {"macro_f1": scores["macro_f1"], "labels": groups}


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in scores.items()}


def table(results: dict[str, dict[str, Any]]) -> str:
    """A markdown table of :func:`score` results by source (what ``eval --sources`` prints)."""
    lines = ["| source | rows | accuracy | macro-F1 |", "|---|---:|---:|---:|"]
    for name, r in results.items():
        acc = "" if r.get("accuracy") is None else f"{r['accuracy']:.3f}"
        f1 = "" if r.get("macro_f1") is None else f"{r['macro_f1']:.3f}"
        extra = f" (sarcasm F1, {r['positives']} sarcastic)" if "positives" in r else ""
        extra += f" (Ekman macro-F1 {r['ekman']['macro_f1']:.3f})" if "ekman" in r else ""
        lines.append(f"| {name} | {r['examples']} | {acc} | {f1}{extra} |")
    return "\n".join(lines)
