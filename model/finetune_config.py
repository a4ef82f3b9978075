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
    #: None: the data the base records it was trained on (``train`` writes it in the registry
    #: metadata, fine-tunes carry it forward); ``"none"``: no replay.
    replay: str | None = None
    #: How GoEmotions labels map onto the model's: goemotions, seed13, ekman, or auto (from the model's labels).
    replay_map: str = "auto"
    #: Replay rows per correction in the training set.
    replay_ratio: float = 4.0
    #: Rows of the replay source's held-out split frozen as the reference set (0: all of it). The
    #: same rows every run (a fixed shuffle), never trained on: the gate's measure of forgetting.
    reference_size: int = 2000
    #: Reference-set macro-F1 a candidate may lose and still deploy (0.01: one point).
    max_forgetting: float = 0.01
    #: Weight of the fine-tuned weights in the candidate, the rest the base's (WiSE-FT); 1: the fine-tune as is.
    mix: float = 0.5
    #: Fraction of the corrected texts held out for the gate.
    holdout: float = 0.2
    #: Distinct corrected texts needed before a hold-out is taken; fewer and every one trains.
    min_holdout: int = 20
    #: Held-out texts needed for the hold-out to decide the gate; a smaller one is reported, not trusted.
    min_verdict: int = 20
    #: Deploy even when the gate refuses, or when there is nothing to evaluate on.
    force: bool = False
    #: Point ``current`` at a candidate that passed the gate (False: save only).
    deploy: bool = True
    #: Also save a candidate the gate refused (as a version that is not current).
    save_refused: bool = False
    #: Train this server's own line instead of the base: a head on the current base, the encoder frozen,
    #: saved under ``models_dir/servers/<id>`` (model/heads.py). None: the base (the owner's).
    guild_id: int | None = None
    #: The learning rate of a server's head (only the last layers learn, so it can be far higher).
    head_learning_rate: float = 1e-3


@dataclass
class FinetuneResult:
    """What happened: the saved version (None if nothing was saved), whether it is live, and why."""

    version: str | None
    deployed: bool
    reason: str
    #: Per eval set (``holdout``, ``reference``): accuracy, macro-F1 and rows, current model and candidate.
    before: dict[str, dict[str, Any]] = field(default_factory=dict)
    after: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Corrections used (training + hold-out).
    examples: int = 0
    holdout: int = 0
    #: The sets the gate judged on (``holdout``, ``reference``, both joined by ``+``), or None.
    eval_set: str | None = None
    seconds: float = 0.0
    train_examples: int = 0
    replay_examples: int = 0
    base: str = ""
    parent: str | None = None
    path: str | None = None
    #: Where the replay rows came from (None: no replay), and how it was chosen.
    replay_source: str | None = None
    #: What the person should know though nothing failed (no replay data, a hold-out too small…), said once.
    warnings: list[str] = field(default_factory=list)
    #: Corrections whose labels were mapped into the model's label set, ``"annoyance→anger": 12``.
    mapped: dict[str, int] = field(default_factory=dict)
    #: Corrections left out because their label has no equivalent in the model's set, per label.
    unmapped: dict[str, int] = field(default_factory=dict)
    #: The server whose line this run trained (None: the base), and the base version its head sits on.
    guild_id: int | None = None
    base_version: str = ""


def metric_sets(metrics: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per-set metrics of a result or a version's metadata; a flat dict from older versions is one set."""
    if not metrics:
        return {}
    if all(isinstance(v, dict) for v in metrics.values()):
        return dict(metrics)
    return {str(metrics.get("eval_set") or "eval"): {k: v for k, v in metrics.items() if not isinstance(v, dict)}}


def result_from_dict(values: dict[str, Any]) -> FinetuneResult:
    """Rebuild a result sent across a process boundary as a dict."""
    return FinetuneResult(**values)
