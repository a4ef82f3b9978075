"""Training losses and the Trainer that applies them, shared by ``train`` and ``finetune``.

Why not the models' built-in losses: they know neither positive-class weights nor focal loss,
and a fine-tune must train with the same loss its base was trained with (a weighted-BCE model
fine-tuned with plain BCE drifts its rare labels' probabilities, and so its thresholds).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from transformers import Trainer

from model.defaults import LOSSES, MULTI_LABEL_LOSSES, SINGLE_LABEL_LOSSES

__all__ = ["LOSSES", "MULTI_LABEL_LOSSES", "SINGLE_LABEL_LOSSES", "LossError", "LossTrainer", "make_loss"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class LossError(ValueError):
    """A loss that does not exist or does not fit the model type; the message lists the ones that do."""


def default_loss(multi_label: bool) -> str:
    """What a model's own head would use: BCE over sigmoids, or cross-entropy over a softmax."""
    return "bce" if multi_label else "ce"


def make_loss(kind: str, *, multi_label: bool, pos_weight: np.ndarray | None = None,
              gamma: float = 2.0) -> LossFn:
    """``loss(logits, labels)`` for ``kind``; multi-label labels are multi-hot floats (below 0: unknown, skipped),
    single-label class ids."""
    allowed = MULTI_LABEL_LOSSES if multi_label else SINGLE_LABEL_LOSSES
    if kind not in allowed:
        what = "multi-label" if multi_label else "single-label"
        raise LossError(f"loss {kind!r} does not fit a {what} model: use one of {', '.join(allowed)}")
    F = torch.nn.functional
    weights = torch.as_tensor(pos_weight) if pos_weight is not None else None

    if multi_label:
        def masked(logits, y):
            # a target below 0 is unknown (model.sources.UNKNOWN: not annotated by the row's source):
            # it adds nothing to the loss; with none unknown this is the plain mean over every entry
            y = y.to(logits.dtype)
            known = (y >= 0).to(logits.dtype)
            y = y.clamp(min=0)
            w = weights.to(logits.device) if kind == "weighted-bce" and weights is not None else None
            loss = F.binary_cross_entropy_with_logits(logits, y, pos_weight=w, reduction="none")
            if kind == "focal":
                p = torch.sigmoid(logits)
                loss = loss * (1 - (p * y + (1 - p) * (1 - y))) ** gamma
            return (loss * known).sum() / known.sum().clamp(min=1)
        return masked
    if kind == "ce":
        return lambda logits, y: F.cross_entropy(logits, y.long())

    def softmax_focal(logits, y):
        ce = F.cross_entropy(logits, y.long(), reduction="none")
        return ((1 - torch.exp(-ce)) ** gamma * ce).mean()
    return softmax_focal


class LossTrainer(Trainer):
    """A Trainer whose loss is ours (class weights, focal); everything else is Trainer's own."""

    def __init__(self, *args, loss_fn: LossFn, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.loss_fn = loss_fn

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = self.loss_fn(outputs.logits.float(), labels)
        return (loss, outputs) if return_outputs else loss
