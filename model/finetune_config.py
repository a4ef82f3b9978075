"""The knobs and the outcome of a fine-tune: light (no torch, no Trainer), so the bot can import them.

The pipeline itself is :mod:`model.finetune`; it runs in a child process (:mod:`model.jobs`).
The Trainer knobs (epochs, learning rate, threads, …) are inherited from :class:`model.defaults.TrainerKnobs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from model.defaults import DEFAULT_MODEL, TrainerKnobs
from model.registry import DEFAULT_ROOT


@dataclass
class FinetuneConfig(TrainerKnobs):
    """Every knob of a fine-tune, with the defaults the bot uses (the Trainer's are inherited)."""

    #: Hub id, model folder or registry version (``v3``); None → the current version, else ``fallback_base``.
    base: str | None = None
    #: The model to start from while the registry is still empty (``EMOTION_MODEL``).
    fallback_base: str = DEFAULT_MODEL
    models_dir: str = DEFAULT_ROOT
    #: Old labelled data mixed in against forgetting: a GoEmotions folder, .csv, .jsonl or the hub name.
    replay: str | None = None
    #: How GoEmotions labels map onto the model's: goemotions, seed13, ekman, or auto (from the model's labels).
    replay_map: str = "auto"
    #: Replay rows per correction in the training set.
    replay_ratio: float = 4.0
    #: Replay rows held out for evaluation (used by the gate when there is no hold-out).
    replay_validation: int = 300
    #: Fraction of the corrected texts held out for the gate.
    holdout: float = 0.2
    #: Distinct corrected texts needed before a hold-out is taken; fewer and every one trains.
    min_holdout: int = 20
    #: Deploy even when the gate refuses, or when there is nothing to evaluate on.
    force: bool = False
    #: Point ``current`` at a candidate that passed the gate (False: save only).
    deploy: bool = True
    #: Also save a candidate the gate refused (as a version that is not current).
    save_refused: bool = False


@dataclass
class FinetuneResult:
    """What happened: the saved version (None if nothing was saved), whether it is live, and why."""

    version: str | None
    deployed: bool
    reason: str
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    #: Corrections used (training + hold-out).
    examples: int = 0
    holdout: int = 0
    #: The set the gate judged on: ``holdout``, ``replay`` or None (nothing to evaluate on).
    eval_set: str | None = None
    seconds: float = 0.0
    train_examples: int = 0
    replay_examples: int = 0
    base: str = ""
    parent: str | None = None
    path: str | None = None


def result_from_dict(values: dict[str, Any]) -> FinetuneResult:
    """Rebuild a result sent across a process boundary as a dict."""
    return FinetuneResult(**values)
