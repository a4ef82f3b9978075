"""The knobs and the outcome of a fine-tune: light (no torch, no Trainer), so the bot can import them.

The pipeline itself is :mod:`model.finetune`; it runs in a child process (:mod:`model.jobs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from model.classifier import DEFAULT_MODEL, MAX_LENGTH
from model.registry import DEFAULT_ROOT


@dataclass
class FinetuneConfig:
    """Every knob of a fine-tune, with the defaults the bot uses."""

    #: Hub id, model folder or registry version (``v3``); None → the current version, else ``fallback_base``.
    base: str | None = None
    #: The model to start from while the registry is still empty (``EMOTION_MODEL``).
    fallback_base: str = DEFAULT_MODEL
    models_dir: str = DEFAULT_ROOT
    epochs: float = 5.0
    learning_rate: float = 3e-5
    batch_size: int = 16
    eval_batch_size: int = 64
    max_length: int = MAX_LENGTH
    seed: int = 42
    weight_decay: float = 0.01
    #: Linear warm-up, as a fraction of the training steps.
    warmup: float = 0.1
    #: > 0 stops after this many optimizer steps (benchmarks, smoke runs).
    max_steps: int = -1
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
    #: torch intra-op threads for this process (None: torch's default, every core).
    torch_threads: int | None = None
    device: str = "auto"
    disable_tqdm: bool = True
    #: Batch similar lengths together so dynamic padding pads less (about 2x on CPU).
    group_by_length: bool = True
    #: Seconds between progress events (the last step is always sent).
    progress_interval: float = 0.5


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
    seconds: float = 0.0
    train_examples: int = 0
    replay_examples: int = 0
    eval_set: str | None = None
    base: str = ""
    parent: str | None = None
    path: str | None = None


def result_from_dict(values: dict[str, Any]) -> FinetuneResult:
    """Rebuild a result sent across a process boundary as a dict."""
    return FinetuneResult(**values)
