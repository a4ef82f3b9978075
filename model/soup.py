"""Average the weights of several fine-tuned models into one (``emotion-machine soup``).

A "uniform model soup" (Wortsman et al., 2022): models fine-tuned from the same base on the
same labels usually sit in one basin of the loss, so the mean of their weights is a model
that scores about as well as the ensemble of them would, at the cost of one model. On
GoEmotions' Ekman labels the soup of two MiniLM-L6 runs beats both (``benchmarks/accuracy.md``).

Only floating-point tensors are averaged; integer buffers (position ids) are taken from the
first model, as are the config and tokenizer. Per-label thresholds do not carry over (they
were tuned for other weights): ``emotion-machine eval`` tunes the soup's on dev.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from model.train import hardware, save_model

log = logging.getLogger(__name__)


class SoupError(ValueError):
    """The models cannot be averaged; the message says which one and why."""


def _load(path: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise SoupError(f"{path} is not a model folder (no config.json); give folders written by train or finetune")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # noqa: BLE001 - corrupt weights raise all sorts; one clear message
        raise SoupError(f"{path} could not be loaded: {exc}") from exc
    return model, tokenizer


def _signature(model) -> dict[str, Any]:
    config = model.config
    return {"labels": [config.id2label[i] for i in range(config.num_labels)],
            "problem_type": getattr(config, "problem_type", None), "model_type": config.model_type}


def average(paths: Sequence[str], *, output: str | None, models_dir: str, deploy: bool = False) -> dict[str, Any]:
    """Save the mean of the models in ``paths``; returns ``{"path", "version", "deployed", "metadata"}``.

    Raises SoupError when fewer than two models are given, one can't be loaded, or they differ
    in labels, problem type (single/multi-label) or tensor shapes.
    """
    if len(paths) < 2:
        raise SoupError("a soup needs at least two models")
    started = time.monotonic()
    first, tokenizer = _load(paths[0])
    signature = _signature(first)
    first_state = first.state_dict()
    total = {k: v.detach().clone().double() for k, v in first_state.items() if v.is_floating_point()}
    for path in paths[1:]:
        model, _ = _load(path)
        other = _signature(model)
        for key in ("labels", "problem_type", "model_type"):
            if other[key] != signature[key]:
                raise SoupError(f"{path} has {key} {other[key]!r}, but {paths[0]} has {signature[key]!r}: "
                                "only models of the same base and label set can be averaged")
        state = model.state_dict()
        if state.keys() != first_state.keys():
            raise SoupError(f"{path} has other layers than {paths[0]}: they were not trained from the same base")
        for key, value in total.items():
            if state[key].shape != value.shape:
                raise SoupError(f"{path}: {key} has shape {tuple(state[key].shape)}, but {tuple(value.shape)} in "
                                f"{paths[0]}: they were not trained from the same base")
            value += state[key].double()
        del model, state
    with torch.no_grad():
        averaged = {k: (v / len(paths)).to(first_state[k].dtype) for k, v in total.items()}
        first.load_state_dict(averaged, strict=False)  # non-float buffers stay the first model's
    first.config.label_thresholds = {}  # tuned for other weights: eval tunes the soup's own
    metadata = {
        "kind": "soup", "parents": [str(p) for p in paths], "parent": str(paths[0]),
        "labels": signature["labels"], "multi_label": signature["problem_type"] == "multi_label_classification",
        "recipe": {"method": "uniform weight average", "models": [str(p) for p in paths]},
        "metrics": {}, "label_thresholds": {}, "total_seconds": round(time.monotonic() - started, 2),
        "hardware": hardware("cpu"),
    }
    path, version, deployed = save_model(first, tokenizer, metadata, output=output, models_dir=models_dir,
                                         deploy=deploy)
    log.info("saved the soup of %d models as %s", len(paths), path)
    return {"path": path, "version": version, "deployed": deployed, "metadata": metadata}
