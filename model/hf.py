"""Hugging Face plumbing shared by ``train``, ``finetune`` and ``eval``: one way to set up a run,
tokenize, build TrainingArguments and a Trainer, predict, and report progress.

Why one module: the three must agree on what makes their figures comparable (dynamic padding,
the same precision on the same device, rows predicted in order), and a fix to one (a Trainer
argument renamed upstream, a progress bar that leaks into the bot's terminal) must reach all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import (
    DataCollatorWithPadding,
    EvalPrediction,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from model.chat_text import DEFAULT_TEXT_FORM, prepare, text_form
from model.defaults import TrainerKnobs
from model.losses import LossFn, LossTrainer
from model.progress import EventSink, TrainingEvent

__all__ = ["ProgressEvents", "QuietProgress", "TrainerKnobs", "make_trainer", "predict_logits", "prepare_run",
           "tokenize", "training_arguments"]


def prepare_run(knobs: TrainerKnobs) -> None:
    """Thread budget, progress bars off (the caller draws progress from events instead), seed."""
    if knobs.torch_threads:
        torch.set_num_threads(knobs.torch_threads)
    if knobs.disable_tqdm:
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    set_seed(knobs.seed)


def tokenize(ds: Dataset, tokenizer, *, max_length: int, label2id: dict[str, int] | None = None,
             multi_label: bool = False, text_form: str = DEFAULT_TEXT_FORM) -> Dataset:
    """Token ids truncated to ``max_length`` and left unpadded (the collator pads per batch).

    With ``label2id`` a ``labels`` column is added from the ``label`` column (one name a row) or a
    ``labels`` column (a list of names a row, :func:`model.data.load_rows`' shape): class ids, or
    for a multi-label model multi-hot float rows (BCE needs a target per label). Without, text only
    (prediction). Texts are prepared as the model reads them (``text_form``, :mod:`model.chat_text`),
    the same way the bot's classifier prepares them.
    """
    def encode(batch: dict) -> dict:
        out = tokenizer([prepare(t, text_form) for t in batch["text"]], truncation=True, max_length=max_length)
        if label2id is not None:
            names = batch["labels"] if "labels" in batch else [[lb] for lb in batch["label"]]
            if multi_label:
                out["labels"] = [[1.0 if lb in row else 0.0 for lb in label2id] for row in names]
            else:
                out["labels"] = [label2id[row[0]] for row in names]
        return out

    return ds.map(encode, batched=True, remove_columns=ds.column_names)


def training_arguments(knobs: TrainerKnobs, output_dir: str, **overrides: Any) -> TrainingArguments:
    """TrainingArguments for this machine: CUDA + bf16/fp16 when present, no checkpoints, no trackers.

    ``overrides`` replace any argument (``make_trainer``'s dev set turns on evaluation and checkpoints).
    """
    cuda = torch.cuda.is_available() and (knobs.device == "auto" or knobs.device.startswith("cuda"))
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    arguments: dict[str, Any] = dict(
        output_dir=output_dir,
        num_train_epochs=knobs.epochs,
        max_steps=knobs.max_steps if knobs.max_steps and knobs.max_steps > 0 else -1,
        learning_rate=knobs.learning_rate,
        per_device_train_batch_size=knobs.batch_size,
        per_device_eval_batch_size=knobs.eval_batch_size,
        weight_decay=knobs.weight_decay,
        warmup_steps=knobs.warmup,
        seed=knobs.seed,
        data_seed=knobs.seed,
        use_cpu=not cuda,
        bf16=bf16,
        fp16=bool(cuda and not bf16),
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="steps",
        logging_steps=1,
        report_to=[],
        disable_tqdm=knobs.disable_tqdm,
        dataloader_pin_memory=cuda,
        train_sampling_strategy="group_by_length" if knobs.group_by_length else "random",
    )
    return TrainingArguments(**{**arguments, **overrides})


class QuietProgress(ProgressCallback):
    """The tqdm bar without a printed line per log (we log every step for the loss)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return None


class ProgressEvents(TrainerCallback):
    """Turns Trainer steps into ``TrainingEvent(kind="progress")`` and lets the caller stop training.

    ``check`` is called at the start, after every step and every prediction step: it raises
    to stop (finetune's raises ``FinetuneCancelled`` when the job is cancelled).
    """

    def __init__(self, emit: EventSink, check: Callable[[], None] | None = None, interval: float = 0.5) -> None:
        self.emit = emit
        self.check = check or (lambda: None)
        self.interval = interval
        self.loss: float | None = None
        self._t0 = time.monotonic()
        self._last = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0 = time.monotonic()
        self.check()

    def on_step_end(self, args, state, control, **kwargs):
        self.check()

    def on_prediction_step(self, args, state, control, **kwargs):
        self.check()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        self.loss = float(logs["loss"])
        now = time.monotonic()
        step, total = state.global_step, state.max_steps
        if step == total or step == 1 or now - self._last >= self.interval:
            self._last = now
            eta = (now - self._t0) / step * (total - step) if step else None
            self.emit(TrainingEvent("progress", "train", epoch=round(float(state.epoch or 0.0), 3), step=step,
                                    max_steps=total, loss=round(self.loss, 5),
                                    eta_s=None if eta is None else round(eta, 1)))


def make_trainer(model, tokenizer, knobs: TrainerKnobs, output_dir: str, *, train: Dataset | None = None,
                 callbacks: Sequence[TrainerCallback] = (), loss_fn: LossFn | None = None,
                 dev: Dataset | None = None,
                 compute_metrics: Callable[[EvalPrediction], dict[str, float]] | None = None,
                 eval_every: float = 1.0, best_metric: str = "macro_f1") -> Trainer:
    """A Trainer with dynamic padding and quiet progress (the tqdm bar, if on, without a line per log).

    ``loss_fn`` replaces the model's built-in loss (:class:`model.losses.LossTrainer`). With
    ``dev`` (``train --eval-every``), Trainer scores it with ``compute_metrics`` every
    ``eval_every`` epochs, checkpoints, and reloads the checkpoint with the best ``best_metric``
    at the end.
    """
    overrides: dict[str, Any] = {}
    if dev is not None:
        if train is None:
            raise ValueError("a dev set picks the best checkpoint of a training run: give train too")
        every = max(1, round(eval_every * math.ceil(len(train) / knobs.batch_size)))
        overrides = dict(eval_strategy="steps", eval_steps=every, save_strategy="steps", save_steps=every,
                         save_total_limit=1, save_only_model=True, load_best_model_at_end=True,
                         metric_for_best_model=best_metric, greater_is_better=True)
    common = dict(model=model, args=training_arguments(knobs, output_dir, **overrides), train_dataset=train,
                  eval_dataset=dev, compute_metrics=compute_metrics if dev is not None else None,
                  data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
                  callbacks=list(callbacks))
    trainer = Trainer(**common) if loss_fn is None else LossTrainer(**common, loss_fn=loss_fn)
    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(QuietProgress)
    return trainer


def predict_logits(model, tokenizer, texts: Sequence[str], knobs: TrainerKnobs, output_dir: str,
                   callbacks: Sequence[TrainerCallback] = ()) -> np.ndarray:
    """(rows × labels) float32 logits for ``texts``, in order, batched by ``Trainer.predict``.

    group_by_length is switched off here: with it, Trainer also length-sorts the *eval*
    sampler, and ``predict`` then returns rows in that shuffled order.
    """
    trainer = make_trainer(model, tokenizer, replace(knobs, group_by_length=False), output_dir, callbacks=callbacks)
    out = trainer.predict(tokenize(Dataset.from_dict({"text": list(texts)}), tokenizer, max_length=knobs.max_length,
                                   text_form=text_form(model.config)))
    return np.asarray(out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions, dtype=np.float32)
