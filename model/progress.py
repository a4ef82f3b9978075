"""Training progress as one typed event, emitted by ``train`` and ``finetune`` and drawn by every front end.

Light on purpose (no torch): the bot, the shell and the CLI import it to render events, and
:mod:`model.jobs` sends events across a process boundary as plain dicts (:meth:`as_dict`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

#: What a stage name means to a person (the front ends show this, not the code's name).
STAGE_TEXT = {"load data": "loading the data", "load base": "loading the base model", "tokenize": "preparing the data",
              "evaluate": "evaluating", "train": "training", "evaluate on dev": "evaluating on dev", "save": "saving"}


@dataclass(frozen=True, slots=True)
class TrainingEvent:
    """A stage starting (``kind="stage"``) or a training step done (``kind="progress"``)."""

    kind: Literal["stage", "progress"]
    #: The stage's name (``tokenize``, ``evaluate``, ``train``, ``save``, …); for progress, ``train``.
    stage: str = "train"
    #: Which model a stage is about (``current`` or ``candidate`` while evaluating), else None.
    model: str | None = None
    epoch: float = 0.0
    step: int = 0
    max_steps: int = 0
    loss: float | None = None
    eta_s: float | None = None

    @classmethod
    def stage_started(cls, stage: str, model: str | None = None) -> TrainingEvent:
        return cls("stage", stage, model)

    @property
    def fraction(self) -> float:
        """How much of training is done: steps for progress, 0 before training, 1 once saving."""
        if self.kind == "progress" and self.max_steps:
            return min(1.0, self.step / self.max_steps)
        return 1.0 if self.stage == "save" else 0.0

    def describe(self) -> str:
        """The stage as a person reads it, e.g. ``evaluating the current model``."""
        text = STAGE_TEXT.get(self.stage, self.stage)
        return f"{text} the {self.model} model" if self.model else text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingEvent:
        return cls(**values)


EventSink = Callable[[TrainingEvent], None]
