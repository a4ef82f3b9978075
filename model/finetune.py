"""Fine-tune the current model on users' corrections, gate it, and save it as a new version.

Straight-line steps, in the order :func:`run` calls them (after Hugging Face's
``run_classification.py``): resolve the base → examples to a Dataset → stratified hold-out of
the corrections → replay train/validation → tokenize (dynamic padding) → evaluate the current
model → ``Trainer.train`` → evaluate the candidate on the same data → gate → save to the
registry, and point ``current`` at it only when the gate (or ``force``) says so.

Why a gate: a handful of corrections can teach a model one thing and make it forget three;
deploying only a candidate that is not worse on data neither model trained on keeps the bot
from getting worse one retrain at a time.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset
from transformers import TrainerCallback

from model import data
from model.classifier import Classifier
from model.finetune_config import FinetuneConfig, FinetuneResult
from model.hf import ProgressEvents, make_trainer, predict_logits, prepare_run, tokenize
from model.losses import LossError, default_loss, make_loss
from model.metrics import accuracy_macro_f1
from model.progress import EventSink, TrainingEvent
from model.registry import META_FILE, Registry

log = logging.getLogger(__name__)

#: Two metrics closer than this count as equal (float noise must not decide a deploy).
_EPS = 1e-9


class FinetuneError(RuntimeError):
    """Training cannot start as configured; the message says what to change."""


class FinetuneCancelled(RuntimeError):
    """``should_stop`` asked training to stop; nothing was deployed."""


# --------------------------------------------------------------------------- steps


def resolve_base(config: FinetuneConfig, registry: Registry) -> tuple[str, str | None]:
    """(model source, parent version): an explicit base, else the current version, else the fallback."""
    if config.base:
        if re.fullmatch(r"v\d+", config.base.strip()):
            version = registry.get(config.base.strip())
            return str(version.path), version.name
        path = Path(config.base).expanduser()
        if path.is_dir() and path.resolve().parent == registry.root.resolve() and re.fullmatch(r"v\d+", path.name):
            return str(path), path.name
        return config.base, None
    current = registry.current()
    if current is not None:
        return str(current.path), current.name
    return config.fallback_base, None


def to_dataset(examples: Dataset | Iterable[tuple[str, str]]) -> Dataset:
    """Corrections as a text/label Dataset (a Dataset passes through)."""
    return examples if isinstance(examples, Dataset) else data.from_pairs(examples)


def split_holdout(ds: Dataset, fraction: float, min_texts: int, seed: int) -> tuple[Dataset, Dataset | None, str]:
    """Stratified hold-out by *distinct text*, so a repeated text never sits on both sides.

    Each label keeps at least one text for training; the hold-out has one row per text with
    its most frequent label. Returns (train, hold-out or None, a sentence saying what was done).
    """
    votes: dict[str, Counter] = defaultdict(Counter)
    for text, label in zip(ds["text"], ds["label"]):
        votes[text][label] += 1
    if len(votes) < min_texts or fraction <= 0:
        return ds, None, f"no hold-out: {len(votes)} distinct corrected texts (a hold-out needs {min_texts})"
    majority = {text: c.most_common(1)[0][0] for text, c in votes.items()}
    by_label: dict[str, list[str]] = defaultdict(list)
    for text in sorted(majority):
        by_label[majority[text]].append(text)
    rng = np.random.default_rng(seed)
    held: list[str] = []
    for label in sorted(by_label):
        texts = by_label[label]
        k = min(len(texts) - 1, round(len(texts) * fraction))
        if k > 0:
            held.extend(texts[i] for i in rng.permutation(len(texts))[:k])
    if not held:
        return ds, None, f"no hold-out: no label has enough distinct texts ({len(votes)} texts)"
    held_set = set(held)
    train = ds.filter(lambda b: [t not in held_set for t in b["text"]], batched=True)
    holdout = data.from_pairs((t, majority[t]) for t in sorted(held_set))
    return train, holdout, f"hold-out: {len(held)} of {len(votes)} distinct corrected texts, stratified by label"


def load_replay(config: FinetuneConfig, labels: Sequence[str]) -> tuple[Dataset, Dataset]:
    """(training pool, validation) from ``config.replay``, checked against the model's labels.

    A GoEmotions source has its own dev split for validation; a single file is split here.
    """
    source = str(config.replay)
    target = config.replay_map
    goemotions = data.has_split(source, "train")
    if goemotions and target == "auto":
        target = data.target_for(labels)
    target = target if goemotions else "goemotions"
    pool = data.load_examples(source, split="train", target=target)
    if data.has_split(source, "dev"):
        validation = data.load_examples(source, split="dev", target=target)
    else:
        pool = pool.shuffle(seed=config.seed)
        n_val = min(config.replay_validation, len(pool) // 5)
        validation, pool = pool.select(range(n_val)), pool.select(range(n_val, len(pool)))
    validation = validation.shuffle(seed=config.seed).select(range(min(len(validation), config.replay_validation)))
    data.check_labels(pool, labels, what=f"replay data {source}")
    data.check_labels(validation, labels, what=f"replay data {source}")
    return pool, validation


def predict_labels(model, tokenizer, ds: Dataset, config: FinetuneConfig, output_dir: str,
                   callbacks: Sequence[TrainerCallback] = ()) -> list[str]:
    """Label names the model predicts for ``ds["text"]``, in order (the top label: what the gate compares)."""
    logits = predict_logits(model, tokenizer, ds["text"], config, output_dir, callbacks)
    id2label = model.config.id2label
    return [id2label[int(i)] for i in logits.argmax(-1)]


def evaluate(model, tokenizer, eval_sets: dict[str, Dataset], config: FinetuneConfig, output_dir: str,
             callbacks: Sequence[TrainerCallback] = ()) -> dict[str, Any]:
    """Metrics on each named eval set, flat: ``{"accuracy", "macro_f1", "replay_accuracy", …}``.

    The first set is the gate's and its metrics carry no prefix.
    """
    out: dict[str, Any] = {}
    for i, (name, ds) in enumerate(eval_sets.items()):
        scores = accuracy_macro_f1(ds["label"], predict_labels(model, tokenizer, ds, config, output_dir, callbacks))
        prefix = "" if i == 0 else f"{name}_"
        out.update({f"{prefix}{k}": round(v, 6) for k, v in scores.items()})
        out[f"{prefix}examples"] = len(ds)
        if i == 0:
            out["eval_set"] = name
    return out


def gate(before: dict[str, Any], after: dict[str, Any], *, force: bool = False) -> tuple[bool, str]:
    """Deploy only a candidate not worse than the current model: macro-F1 first, accuracy breaks ties."""
    if not before or not after:
        return (True, "forced: deployed without evaluation") if force else (False, "no evaluation data")
    where = f"on the {before.get('eval_set', 'eval')} set ({before.get('examples', '?')} examples)"
    f1_b, f1_a = before["macro_f1"], after["macro_f1"]
    acc_b, acc_a = before["accuracy"], after["accuracy"]
    figures = f"macro-F1 {f1_b:.3f} → {f1_a:.3f}, accuracy {acc_b:.3f} → {acc_a:.3f} {where}"
    if f1_a > f1_b + _EPS:
        return True, f"candidate is better: {figures}"
    if abs(f1_a - f1_b) <= _EPS and acc_a >= acc_b - _EPS:
        return True, f"candidate is not worse: {figures}"
    if force:
        return True, f"forced although the candidate is worse: {figures}"
    return False, f"candidate is worse, kept the current model: {figures}"


def base_loss(base: str, labels: Sequence[str], multi_label: bool) -> tuple[str, np.ndarray | None, str]:
    """(loss kind, positive-class weights or None, where they came from) for fine-tuning ``base``.

    The loss the base was trained with, as ``train`` (``recipe.loss``, ``pos_weight``) or an earlier
    fine-tune (``loss``, ``pos_weight``) recorded it in the folder's metadata; else the model
    head's own loss for its problem type.
    """
    try:
        meta = json.loads((Path(base).expanduser() / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        return default_loss(multi_label), None, "the model type's default (no training record)"
    recipe = meta.get("recipe") if isinstance(meta.get("recipe"), dict) else {}
    kind = meta.get("loss") or recipe.get("loss") or default_loss(multi_label)
    weights = meta.get("pos_weight") if isinstance(meta.get("pos_weight"), dict) else None
    try:
        make_loss(str(kind), multi_label=multi_label)
    except LossError:
        log.warning("%s records loss %r, which does not fit it; using %s", base, kind, default_loss(multi_label))
        return default_loss(multi_label), None, "the model type's default (recorded loss does not fit)"
    pos_weight = None
    if kind == "weighted-bce" and weights:
        pos_weight = np.array([float(weights.get(lb, 1.0)) for lb in labels], dtype=np.float32)
    return str(kind), pos_weight, "the base's training record"


# --------------------------------------------------------------------------- the pipeline


def run(examples: Dataset | Iterable[tuple[str, str]], config: FinetuneConfig | None = None, *,
        on_event: EventSink | None = None,
        should_stop: Callable[[], bool] | None = None) -> FinetuneResult:
    """Fine-tune on ``examples`` (``(text, label)`` corrections) and maybe deploy; see the module docstring.

    ``on_event`` receives :class:`~model.progress.TrainingEvent` s (stages and steps);
    ``should_stop`` is polled every step and raises :class:`FinetuneCancelled` before anything
    is deployed.
    """
    config = config or FinetuneConfig()
    emit = on_event or (lambda event: None)
    started = time.monotonic()

    def check_stop() -> None:
        if should_stop is not None and should_stop():
            raise FinetuneCancelled("training was cancelled")

    prepare_run(config)
    registry = Registry(config.models_dir)

    # 1. base model and its labels
    base, parent = resolve_base(config, registry)
    current = registry.current()
    reference = str(current.path) if current is not None else base
    log.info("fine-tuning %s (parent %s); comparing against %s", base, parent, reference)
    clf = Classifier.load(base, device="cpu", quantize="none", max_length=config.max_length)
    model, tokenizer, labels = clf.model, clf.tokenizer, list(clf.labels)
    label2id = {lb: i for i, lb in enumerate(labels)}
    multi_label = clf.multi_label
    loss_kind, pos_weight, loss_source = base_loss(base, labels, multi_label)
    loss_fn = make_loss(loss_kind, multi_label=multi_label, pos_weight=pos_weight)
    log.info("%s-label model: loss %s (from %s)%s", "multi" if multi_label else "single", loss_kind, loss_source,
             "; per-label thresholds kept from the base" if multi_label else "")

    # 2. corrections → Dataset, checked against the model's labels
    corrections = to_dataset(examples)
    if len(corrections) == 0:
        raise FinetuneError("no corrections to train on: collect some with /correct first")
    data.check_labels(corrections, labels, what="corrections")

    # 3. hold-out of corrections
    train, holdout, holdout_note = split_holdout(corrections, config.holdout, config.min_holdout, config.seed)
    log.info(holdout_note)

    # 4. replay: training rows and validation
    replay_train = replay_val = None
    if config.replay:
        pool, replay_val = load_replay(config, labels)
        replay_train = data.replay_sample(pool, len(train), config.replay_ratio, seed=config.seed)
    train_all = data.concat([train, replay_train] if replay_train is not None else [train])
    eval_sets = {name: ds for name, ds in (("holdout", holdout), ("replay", replay_val)) if ds is not None and len(ds)}

    summary = dict(examples=len(corrections), holdout=len(holdout) if holdout is not None else 0,
                   train_examples=len(train_all), replay_examples=len(replay_train) if replay_train is not None else 0,
                   eval_set=next(iter(eval_sets), None), base=base, parent=parent)
    if not eval_sets and not config.force:
        return FinetuneResult(
            None, False,
            f"refused before training: nothing to evaluate a candidate on ({holdout_note}; no replay data). "
            f"Collect at least {config.min_holdout} distinct corrections, add replay data, or force it.",
            seconds=round(time.monotonic() - started, 2), **summary)

    with tempfile.TemporaryDirectory(prefix="emotion-finetune-") as workdir:
        progress = ProgressEvents(emit, check_stop, config.progress_interval)

        # 5. tokenize
        emit(TrainingEvent.stage_started("tokenize"))
        train_tok = tokenize(train_all, tokenizer, max_length=config.max_length, label2id=label2id,
                             multi_label=multi_label)
        check_stop()

        # 6. the current model on the eval data (before training changes the base in place)
        before: dict[str, Any] = {}
        if eval_sets:
            emit(TrainingEvent.stage_started("evaluate", "current"))
            if reference == base:
                before = evaluate(model, tokenizer, eval_sets, config, workdir, [progress])
            else:
                ref = Classifier.load(reference, device="cpu", quantize="none", max_length=config.max_length)
                before = evaluate(ref.model, ref.tokenizer, eval_sets, config, workdir, [progress])
                del ref
        check_stop()

        # 7. train
        emit(TrainingEvent.stage_started("train"))
        trainer = make_trainer(model, tokenizer, config, workdir, train=train_tok, callbacks=[progress],
                               loss_fn=loss_fn)
        train_output = trainer.train()
        model = trainer.model
        check_stop()

        # 8. the candidate on the same data
        after: dict[str, Any] = {}
        if eval_sets:
            emit(TrainingEvent.stage_started("evaluate", "candidate"))
            after = evaluate(model, tokenizer, eval_sets, config, workdir, [progress])
        deployed, reason = gate(before, after, force=config.force)
        if multi_label:  # a correction set is too small to re-tune 28 thresholds on; say what the bot will use
            reason = f"{reason}; per-label thresholds kept from the base"
        if deployed and not config.deploy:
            deployed, reason = False, f"{reason}; saved without deploying (deploy=False)"
        log.info("gate: %s", reason)
        check_stop()

        # 9. save (and deploy)
        version = path = None
        if deployed or config.save_refused or not config.deploy:
            emit(TrainingEvent.stage_started("save"))
            name, tmp = registry.allocate()
            try:
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                saved = registry.commit(tmp, {
                    "base": base, "parent": parent,
                    "examples": {"corrections": len(corrections), "train": len(train_all),
                                 "holdout": summary["holdout"], "replay": summary["replay_examples"],
                                 "replay_validation": len(replay_val) if replay_val is not None else 0},
                    "hyperparameters": _hyperparameters(config),
                    "metrics": {"before": before, "after": after,
                                "train_loss": round(float(train_output.training_loss), 6),
                                "deployed": deployed, "reason": reason},
                    "labels": labels, "multi_label": multi_label, "loss": loss_kind,
                    **({"pos_weight": {lb: round(float(w), 4) for lb, w in zip(labels, pos_weight)}}
                       if pos_weight is not None else {}),
                    "label_thresholds": dict(getattr(model.config, "label_thresholds", None) or {}),
                    **({"thresholds": "kept from the base"} if multi_label else {}),
                })
            except BaseException:
                registry.discard(tmp)
                raise
            version, path = saved.name, str(saved.path)
            check_stop()
            if deployed:
                registry.set_current(saved.name, reason="finetune")

    return FinetuneResult(version, deployed, reason, before, after, seconds=round(time.monotonic() - started, 2),
                          path=path, **summary)


def _hyperparameters(config: FinetuneConfig) -> dict[str, Any]:
    keep = ("epochs", "learning_rate", "batch_size", "max_length", "seed", "weight_decay", "warmup", "max_steps",
            "replay", "replay_map", "replay_ratio", "holdout", "min_holdout", "force", "group_by_length")
    values = asdict(config)
    return {k: values[k] for k in keep}



