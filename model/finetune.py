"""Fine-tune the current model on users' corrections, gate it, and save it as a new version.

Straight-line steps, in the order :func:`run` calls them (after Hugging Face's
``run_classification.py``): resolve the base → corrections to a Dataset, mapped into the
model's label set → stratified hold-out of the corrections → replay rows and the frozen
reference set → tokenize (dynamic padding) → evaluate the current model → ``Trainer.train`` →
mix the fine-tuned weights with the base's (``mix``) → evaluate the candidate on the same data
→ gate → save to the registry, and point ``current`` at it only when the gate (or ``force``)
says so.

Why a gate: a handful of corrections can teach a model one thing and make it forget three;
deploying only a candidate that is not worse on the held-out corrections and loses at most
``max_forgetting`` macro-F1 on a frozen reference set of the base's own data keeps the bot
from getting worse one retrain at a time. Replay comes from the data the base records it was
trained on, without being asked (docs/learning.md).
"""

from __future__ import annotations

import dataclasses
import functools
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
from model.chat_text import text_form
from model.classifier import Classifier
from model.finetune_config import FinetuneConfig, FinetuneResult, metric_sets
from model.heads import Head, HeadError, freeze_encoder, load_into, save_head
from model.hf import ProgressEvents, make_trainer, predict_logits, prepare_run, tokenize
from model.labels import translate
from model.losses import LossError, default_loss, make_loss
from model.metrics import above_thresholds, accuracy_macro_f1, multi_label_scores, probabilities, tune_thresholds
from model.progress import EventSink, TrainingEvent
from model.registry import Registry, server_root
from model.replay import RECORDED, as_rows, load_replay, replay_source, training_record

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


def start_server_line(clf: Classifier, line: Registry) -> tuple[str | None, str | None]:
    """Put the server's current head into ``clf``'s model (a run continues its line); (parent version, warning).

    A head that does not fit this base (trained on another one, other labels) is not used: the run
    then starts from the base's own head, and says so.
    """
    current = line.current()
    if current is None:
        return None, None
    try:
        load_into(clf.model, clf.prepare_head(Head.load(current.path)))
    except HeadError as exc:
        return current.name, (f"this server's {current.name} cannot be continued ({exc}), so this run starts "
                              "again from the base's own head")
    return current.name, None


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


def map_labels(ds: Dataset, labels: Sequence[str]) -> tuple[Dataset, dict[str, int], dict[str, int]]:
    """(rows in the model's labels, ``{"old→new": n}`` mapped, ``{label: n}`` left out).

    Corrections stored under another label set (the bot served a GoEmotions model, now an
    Ekman one) still teach where :func:`model.labels.translate` knows the mapping; a label it
    cannot map is left out and named, never guessed.
    """
    mapped: Counter = Counter()
    unmapped: Counter = Counter()
    keep: list[int] = []
    new_labels: list[str] = []
    for i, label in enumerate(ds["label"]):
        target = translate(label, labels)
        if target is None:
            unmapped[label] += 1
            continue
        if target != label:
            mapped[f"{label}→{target}"] += 1
        keep.append(i)
        new_labels.append(target)
    if not mapped and not unmapped:
        return ds, {}, {}
    out = data.from_pairs(zip((ds["text"][i] for i in keep), new_labels))
    return out, dict(mapped.most_common()), dict(unmapped.most_common())


def mix_weights(model, base_state: dict[str, Any], tuned_state: dict[str, Any], alpha: float) -> None:
    """Load ``alpha`` × the fine-tuned weights + (1 − alpha) × the base's into ``model``.

    WiSE-FT (Wortsman et al., 2022): the weighted mean of a base and its fine-tune keeps most of
    what the fine-tune learned and most of what the base knew. On 200 dair-emotion corrections of
    the GoEmotions model (docs/learning.md): the pure fine-tune lost 1.8 points of GoEmotions test
    macro-F1 for +35 points of community accuracy; half and half lost 0.1 for +19.
    """
    model.load_state_dict({k: (alpha * v + (1 - alpha) * base_state[k]) if v.is_floating_point() else v
                           for k, v in tuned_state.items()})


def retune_thresholds(model, tokenizer, rows: Dataset, config: FinetuneConfig, output_dir: str,
                      callbacks: Sequence[TrainerCallback] = ()) -> dict[str, float]:
    """A multi-label candidate's per-label thresholds, tuned on held-out rows of the base's data as ``train`` tunes.

    Fine-tuning moves the probabilities, rare labels' most; the base's thresholds then cost the
    candidate about a point of GoEmotions test macro-F1 (0.499 with them, 0.510 re-tuned on dev,
    for 200 dair-emotion corrections; the base: 0.506).
    """
    labels = [model.config.id2label[i] for i in range(len(model.config.id2label))]
    probs = probabilities(predict_logits(model, tokenizer, rows["text"], config, output_dir, callbacks), True)
    return tune_thresholds(probs, data.multi_hot(rows["labels"], labels), labels)


def predict_labels(model, tokenizer, ds: Dataset, config: FinetuneConfig, output_dir: str,
                   callbacks: Sequence[TrainerCallback] = ()) -> list[str]:
    """Label names the model predicts for ``ds["text"]``, in order (the top label: what the gate compares)."""
    logits = predict_logits(model, tokenizer, ds["text"], config, output_dir, callbacks)
    id2label = model.config.id2label
    return [id2label[int(i)] for i in logits.argmax(-1)]


def holdout_scores(model, tokenizer, ds: Dataset, config: FinetuneConfig, output_dir: str,
                   callbacks: Sequence[TrainerCallback] = ()) -> dict[str, Any]:
    """Accuracy and macro-F1 of the top label on held-out corrections (one label each: what the bot reacts with)."""
    scores = accuracy_macro_f1(ds["label"], predict_labels(model, tokenizer, ds, config, output_dir, callbacks))
    return {**{k: round(v, 6) for k, v in scores.items()}, "examples": len(ds)}


def reference_scores(model, tokenizer, ds: Dataset, config: FinetuneConfig, output_dir: str,
                     callbacks: Sequence[TrainerCallback] = (), *, tune_on: Dataset | None = None) -> dict[str, Any]:
    """Macro-F1 and accuracy on the reference set as ``eval`` computes them.

    Multi-label: every label of a row, with per-label thresholds tuned on ``tune_on`` (the
    calibration rows) for this model, else its own stored ones; single-label: the argmax. Why
    tune: a ``train``-made model's stored thresholds were tuned on GoEmotions dev, the very rows
    the reference set is drawn from, so with them the current model scores 4 points above what it
    scores on unseen data (0.546 dev, 0.506 test) and any candidate looks like it forgot; thresholds
    tuned on the same other rows for both models compare what they know.
    """
    labels = [model.config.id2label[i] for i in range(len(model.config.id2label))]
    multi_label = getattr(model.config, "problem_type", None) == "multi_label_classification"

    def probs_of(rows: Dataset) -> np.ndarray:
        logits = predict_logits(model, tokenizer, rows["text"], config, output_dir, callbacks)
        return probabilities(logits, multi_label)

    probs = probs_of(ds)
    if multi_label:
        if tune_on is not None:
            thresholds = retune_thresholds(model, tokenizer, tune_on, config, output_dir, callbacks)
        else:
            thresholds = dict(getattr(model.config, "label_thresholds", None) or {})
        scores = multi_label_scores(data.multi_hot(ds["labels"], labels),
                                    above_thresholds(probs, thresholds, labels), labels)
        scores = {k: scores[k] for k in ("accuracy", "macro_f1", "micro_f1")}
    else:
        scores = accuracy_macro_f1([row[0] for row in ds["labels"]], [labels[int(i)] for i in probs.argmax(-1)])
    return {**{k: round(float(v), 6) for k, v in scores.items()}, "examples": len(ds)}


def evaluate(model, tokenizer, eval_sets: dict[str, Dataset], config: FinetuneConfig, output_dir: str,
             callbacks: Sequence[TrainerCallback] = (), *,
             calibration: Dataset | None = None) -> dict[str, dict[str, Any]]:
    """``{"holdout": {...}, "reference": {...}}``: each eval set scored its own way."""
    scorers = {"holdout": holdout_scores, "reference": functools.partial(reference_scores, tune_on=calibration)}
    return {name: scorers[name](model, tokenizer, ds, config, output_dir, callbacks) for name, ds in eval_sets.items()}


def gate(before: dict[str, Any], after: dict[str, Any], *, force: bool = False, min_verdict: int = 20,
         max_forgetting: float = 0.01) -> tuple[bool, str]:
    """Deploy a candidate only if (a) it is not worse on the held-out corrections and (b) it loses at most
    ``max_forgetting`` macro-F1 on the frozen reference set.

    (a) macro-F1 first, accuracy breaks ties; a hold-out under ``min_verdict`` texts is reported but
    decides nothing. Without a usable hold-out the reference set decides alone; with neither,
    nothing is deployed unless forced.
    """
    before, after = metric_sets(before), metric_sets(after)
    figures: list[str] = []
    refusals: list[str] = []
    judged: list[str] = []
    holdout_b, holdout_a = before.get("holdout"), after.get("holdout")
    if holdout_b and holdout_a:
        n = holdout_b.get("examples", 0)
        f1_b, f1_a = holdout_b["macro_f1"], holdout_a["macro_f1"]
        acc_b, acc_a = holdout_b["accuracy"], holdout_a["accuracy"]
        line = f"held-out corrections ({n}): macro-F1 {f1_b:.3f} → {f1_a:.3f}, accuracy {acc_b:.3f} → {acc_a:.3f}"
        if n < min_verdict:
            line += (f" (too few for a verdict: one text moves accuracy by {100 / max(n, 1):.0f} points; "
                     f"a verdict needs {min_verdict})")
        else:
            judged.append("holdout")
            if not (f1_a > f1_b + _EPS or (abs(f1_a - f1_b) <= _EPS and acc_a >= acc_b - _EPS)):
                refusals.append("worse on the held-out corrections")
        figures.append(line)
    ref_b, ref_a = before.get("reference"), after.get("reference")
    if ref_b and ref_a:
        f1_b, f1_a = ref_b["macro_f1"], ref_a["macro_f1"]
        lost = f1_b - f1_a
        figures.append(f"reference set ({ref_b.get('examples', '?')} rows of the base's data): "
                       f"macro-F1 {f1_b:.3f} → {f1_a:.3f} ({-lost * 100:+.1f} points)")
        judged.append("reference")
        if lost > max_forgetting + _EPS:
            refusals.append(f"forgets: loses {lost * 100:.1f} points of macro-F1 on the reference set "
                            f"(at most {max_forgetting * 100:g} allowed)")
    detail = "; ".join(figures)
    if not judged:
        if force:
            return True, "forced: deployed without a verdict" + (f" ({detail})" if detail else "")
        return False, "no verdict possible" + (f": {detail}" if detail else ": no evaluation data")
    if refusals:
        if force:
            return True, f"forced although the candidate {' and '.join(refusals)}: {detail}"
        return False, f"kept the current model: the candidate {' and '.join(refusals)}: {detail}"
    return True, f"candidate passed the gate: {detail}"


def base_loss(base: str, labels: Sequence[str], multi_label: bool) -> tuple[str, np.ndarray | None, str]:
    """(loss kind, positive-class weights or None, where they came from) for fine-tuning ``base``.

    The loss the base was trained with, as ``train`` (``recipe.loss``, ``pos_weight``) or an earlier
    fine-tune (``loss``, ``pos_weight``) recorded it in the folder's metadata; else the model
    head's own loss for its problem type.
    """
    meta = training_record(base)
    if not meta:
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


def _model_and_tokenizer(source: str, config: FinetuneConfig):
    clf = Classifier.load(source, device="cpu", quantize="none", max_length=config.max_length)
    return clf.model, clf.tokenizer


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Log a warning the first time it comes up in this process (every retrain's answer says it anyway)."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


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
    server = config.guild_id is not None
    if server and config.base:
        raise FinetuneError("a server's line is always trained on the current base; drop --base, or train the base")

    # 1. base model and its labels; a server's run: its current head on the base, only the head trainable
    base, parent = resolve_base(config, registry)
    current = registry.current()
    compare_with = str(current.path) if current is not None and not server else base
    log.info("fine-tuning %s (parent %s); comparing against %s", base, parent, compare_with)
    clf = Classifier.load(base, device="cpu", quantize="none", max_length=config.max_length)
    model, tokenizer, labels = clf.model, clf.tokenizer, list(clf.labels)
    warnings: list[str] = []
    target, knobs = registry, config
    if server:
        target = Registry(server_root(config.models_dir, config.guild_id))
        parent, note = start_server_line(clf, target)
        if note:
            warnings.append(note)
        trainable = freeze_encoder(model)
        knobs = dataclasses.replace(config, learning_rate=config.head_learning_rate)
        log.info("server %s: training its head (%d parameters) on base %s", config.guild_id, trainable, clf.version)
    label2id = {lb: i for i, lb in enumerate(labels)}
    multi_label = clf.multi_label
    loss_kind, pos_weight, loss_source = base_loss(base, labels, multi_label)
    loss_fn = make_loss(loss_kind, multi_label=multi_label, pos_weight=pos_weight)
    log.info("%s-label model: loss %s (from %s)%s", "multi" if multi_label else "single", loss_kind, loss_source,
             "" )

    # 2. corrections → Dataset, in the model's labels (mapped where the project knows how)
    corrections = to_dataset(examples)
    if len(corrections) == 0:
        raise FinetuneError("no corrections to train on: collect some with /correct first")
    corrections, mapped, unmapped = map_labels(corrections, labels)
    if unmapped:
        listed = ", ".join(f"{lb!r} ({n}x)" for lb, n in unmapped.items())
        if len(corrections) == 0:
            raise data.DataError(
                f"corrections use labels the model does not have: {listed}; none of them maps onto the model's "
                f"labels ({', '.join(labels)}). Relabel or delete them (emotion-machine corrections), or train a "
                "model with those labels.")
        warnings.append(f"left out {sum(unmapped.values())} corrections whose label this model does not have: "
                        f"{listed} (relabel or delete them: emotion-machine corrections list --label …)")
    if mapped:
        log.info("mapped corrections into the model's labels: %s", mapped)

    # 3. hold-out of corrections
    train, holdout, holdout_note = split_holdout(corrections, config.holdout, config.min_holdout, config.seed)
    log.info(holdout_note)
    if holdout is None or len(holdout) < config.min_verdict:
        held = len(holdout) if holdout is not None else 0
        warnings.append(f"the hold-out is too small for a verdict ({held} held-out texts; "
                        f"{holdout_note}; a verdict needs {config.min_verdict} held-out texts, "
                        f"about {-(-config.min_verdict // max(config.holdout, 1e-9)):.0f} distinct corrected texts)")

    # 4. replay: training rows and the frozen reference set
    source, why = replay_source(config, base)
    replay_train = reference_set = calibration = held_out = None
    if source is not None and why == RECORDED:
        try:  # what the base records may no longer load here (moved, offline hub): train on, and say so
            replay = load_replay(source, config, labels, multi_label)
        except (data.DataError, OSError) as exc:
            source, why = None, f"the data the base records ({source}) cannot be read: {exc}"
    elif source is not None:
        replay = load_replay(source, config, labels, multi_label)
    if source is not None:
        _, reference_set, calibration, held_out = replay
        replay_train = data.replay_sample(replay.pool, len(train), config.replay_ratio, seed=config.seed)
        log.info("replay: %d rows of %s (%s); reference set: %d rows", len(replay_train), source, why,
                 len(reference_set))
    else:
        warnings.append(f"no replay data: {why}, so nothing guards the model against forgetting what it knew")
        _warn_once(f"no replay data for {base}: {why}")
    n_replay = len(replay_train) if replay_train is not None else 0
    train_all = data.concat([train, replay_train] if n_replay and not multi_label else [train])
    eval_sets = {name: ds for name, ds in (("holdout", holdout), ("reference", reference_set))
                 if ds is not None and len(ds)}

    summary = dict(examples=len(corrections), holdout=len(holdout) if holdout is not None else 0,
                   train_examples=len(train) + n_replay, replay_examples=n_replay,
                   eval_set="+".join(eval_sets) or None, base=base, parent=parent, replay_source=source,
                   warnings=warnings, mapped=mapped, unmapped=unmapped, guild_id=config.guild_id,
                   base_version=clf.version if server else "")
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
        if multi_label:  # corrections one-hot, replay rows with every label they have
            train_all = data.concat([as_rows(train), *([replay_train] if n_replay else [])])
        train_tok = tokenize(train_all, tokenizer, max_length=config.max_length, label2id=label2id,
                             multi_label=multi_label, text_form=text_form(model.config))
        check_stop()

        # 6. the current model on the eval data and the calibration rows (before training changes the base)
        before: dict[str, dict[str, Any]] = {}
        if eval_sets:
            emit(TrainingEvent.stage_started("evaluate", "current"))
            ref, ref_tokenizer = ((model, tokenizer) if compare_with == base
                                  else _model_and_tokenizer(compare_with, config))
            before = evaluate(ref, ref_tokenizer, eval_sets, config, workdir, [progress], calibration=calibration)
            del ref, ref_tokenizer
        base_state = {k: v.detach().clone() for k, v in model.state_dict().items()} if config.mix < 1 else None
        check_stop()

        # 7. train
        emit(TrainingEvent.stage_started("train"))
        trainer = make_trainer(model, tokenizer, knobs, workdir, train=train_tok, callbacks=[progress],
                               loss_fn=loss_fn)
        train_output = trainer.train()
        model = trainer.model
        check_stop()

        # 8. the fine-tune mixed with the base (WiSE-FT), then judged on the eval sets
        mix_note = None
        if base_state is not None:
            mix_weights(model, base_state, {k: v.detach().clone() for k, v in model.state_dict().items()}, config.mix)
            mix_note = f"weights: {config.mix:g} of the fine-tune mixed with {1 - config.mix:g} of the base"
            del base_state
        thresholds_note = "per-label thresholds kept from the base"
        if multi_label and calibration is not None and len(calibration) and held_out is not None:
            # the gate tunes both sides' thresholds on the calibration rows, so these do not sway it
            model.config.label_thresholds = retune_thresholds(model, tokenizer, held_out, config, workdir, [progress])
            thresholds_note = f"per-label thresholds re-tuned on {len(held_out)} held-out rows of the base's data"
        after: dict[str, dict[str, Any]] = {}
        if eval_sets:
            emit(TrainingEvent.stage_started("evaluate", "candidate"))
            after = evaluate(model, tokenizer, eval_sets, config, workdir, [progress], calibration=calibration)
        deployed, reason = gate(before, after, force=config.force, min_verdict=config.min_verdict,
                                max_forgetting=config.max_forgetting)
        if mix_note:
            reason = f"{reason}; {mix_note}"
        if multi_label:  # say which thresholds the bot will use
            reason = f"{reason}; {thresholds_note}"
        if deployed and not config.deploy:
            deployed, reason = False, f"{reason}; saved without deploying (deploy=False)"
        log.info("gate: %s", reason)
        check_stop()

        # 9. save (and deploy)
        version = path = None
        if deployed or config.save_refused or not config.deploy:
            emit(TrainingEvent.stage_started("save"))
            name, tmp = target.allocate()
            try:
                if server:
                    scope = {"scope": "server", "guild_id": config.guild_id, "base_version": clf.version,
                             "base_fingerprint": clf.fingerprint, "head_bytes": save_head(model, tmp)}
                else:
                    model.save_pretrained(tmp)
                    tokenizer.save_pretrained(tmp)
                    scope = {}
                saved = target.commit(tmp, {**scope,
                    "base": base, "parent": parent,
                    "examples": {"corrections": len(corrections), "train": len(train_all),
                                 "holdout": summary["holdout"], "replay": summary["replay_examples"],
                                 "reference": len(reference_set) if reference_set is not None else 0},
                    "replay_source": source, "mapped": mapped, "unmapped": unmapped, "warnings": warnings,
                    "hyperparameters": _hyperparameters(knobs),
                    "metrics": {"before": before, "after": after,
                                "train_loss": round(float(train_output.training_loss), 6),
                                "deployed": deployed, "reason": reason},
                    "labels": labels, "multi_label": multi_label, "loss": loss_kind,
                    **({"pos_weight": {lb: round(float(w), 4) for lb, w in zip(labels, pos_weight)}}
                       if pos_weight is not None else {}),
                    "label_thresholds": dict(getattr(model.config, "label_thresholds", None) or {}),
                    **({"thresholds": thresholds_note} if multi_label else {}), "mix": config.mix,
                })
            except BaseException:
                target.discard(tmp)
                raise
            version, path = saved.name, str(saved.path)
            check_stop()
            if deployed:
                target.set_current(saved.name, reason="finetune")

    return FinetuneResult(version, deployed, reason, before, after, seconds=round(time.monotonic() - started, 2),
                          path=path, **summary)


def _hyperparameters(config: FinetuneConfig) -> dict[str, Any]:
    keep = ("epochs", "learning_rate", "batch_size", "max_length", "seed", "weight_decay", "warmup", "max_steps",
            "replay", "replay_map", "replay_ratio", "reference_size", "max_forgetting", "holdout", "min_holdout",
            "min_verdict", "force", "group_by_length")
    values = asdict(config)
    return {k: values[k] for k in keep}



