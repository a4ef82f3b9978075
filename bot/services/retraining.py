"""Retraining and deploying: the rules of ``/retrain``, the shell's ``/retrain`` and ``emotion-machine finetune``.

One place decides who may retrain, how many corrections it takes, the training knobs (from the
settings, with a front end's overrides), the thread budget of the training process, and what a
deploy does: the child process gates and points the registry's ``current`` at a candidate that
passed; here the new version is loaded off the event loop and swapped into the worker, and if it
cannot be loaded ``current`` goes back to what is actually served. Model versions live in the
registry (:mod:`model.registry`) only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.services.common import Actor, Refusal, Serving
from model.finetune_config import FinetuneConfig, FinetuneResult
from model.jobs import TrainingBusy, TrainingCancelled, TrainingFailed, TrainingJob
from model.progress import TrainingEvent
from model.registry import ModelVersion, Registry, RegistryError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrainingOverrides:
    """What one front end may change for one run; None keeps the setting (or FinetuneConfig's default).

    Declared once: the CLI's ``finetune`` and ``shell`` options are these fields (HfArgumentParser).
    """

    epochs: float | None = field(default=None, metadata={
        "help": "passes over the data (default: EMOTION_FINETUNE_EPOCHS, else 5)"})
    learning_rate: float | None = field(default=None, metadata={
        "aliases": ["--lr"], "help": "learning rate (default: EMOTION_FINETUNE_LR, else 3e-5)"})
    batch_size: int | None = field(default=None, metadata={
        "help": "examples per step (default: EMOTION_FINETUNE_BATCH_SIZE, else 16)"})
    threads: int | None = field(default=None, metadata={
        "help": "torch threads of the training process (default: EMOTION_TRAINING_THREADS, 1)"})
    base: str | None = field(default=None, metadata={
        "help": "start from this hub id, folder or version (v3) instead of the current model"})
    replay: str | None = field(default=None, metadata={
        "help": "old labelled data mixed in against forgetting: GoEmotions folder, .csv, .jsonl, or none "
                "(default: EMOTION_REPLAY_PATH, else the data the model records it was trained on)"})
    replay_ratio: float | None = field(default=None, metadata={
        "help": "replay rows per correction (default: EMOTION_REPLAY_RATIO, 4)"})
    min_corrections: int | None = field(default=None, metadata={
        "help": "corrections needed before training (default: EMOTION_MIN_CORRECTIONS, 20)"})
    mix: float | None = field(default=None, metadata={
        "help": "weight of the fine-tuned weights in the new model, the rest the current model's "
                "(default: EMOTION_FINETUNE_MIX, 0.5; 1: the fine-tune as it is)"})
    save_refused: bool = field(default=False, metadata={
        "help": "also keep a candidate the gate refused, as a version that is not current (to inspect it)"})

    def __post_init__(self) -> None:
        for name in ("epochs", "learning_rate", "batch_size", "threads", "replay_ratio", "min_corrections"):
            value = getattr(self, name)
            if value is not None and not value > 0 and not (name == "replay_ratio" and value == 0):
                raise Refusal(f"{name.replace('_', ' ')} must be greater than 0, not {value}")
        if self.mix is not None and not 0 < self.mix <= 1:
            raise Refusal(f"mix must be above 0 and at most 1, not {self.mix}")


@dataclass
class RetrainOutcome:
    """How a run ended. ``result`` is set when training finished (deployed or not)."""

    status: str  # "deployed", "not deployed", "cancelled" or "failed"
    result: FinetuneResult | None = None
    #: The version served when the run ended (what the bot tags with now).
    serving: str = ""
    #: Set when the candidate was deployed but could not be loaded (the old model stays).
    load_error: str | None = None
    #: The deployed candidate is being served now (False where nothing is served: the CLI).
    swapped: bool = False
    #: Set when training failed: what to tell the person (details are in the log).
    error: str | None = None


@dataclass
class ModelInfo:
    """What ``/model info`` shows."""

    current: ModelVersion | None
    serving_version: str
    serving_source: str
    device: str
    corrections: int
    #: Corrections counted since the current version was created (None: counted over all time).
    since: float | None
    versions: list[str] = field(default_factory=list)


class RetrainRun:
    """One training run in its child process: follow its events, cancel it, then :meth:`finish`."""

    def __init__(self, service: RetrainingService, job: TrainingJob, examples: int, config: FinetuneConfig,
                 started_by: str, previous: str | None) -> None:
        self.service, self.job, self.examples, self.config = service, job, examples, config
        self.started_by = started_by
        self.previous = previous

    @property
    def running(self) -> bool:
        return self.job.running

    def start(self) -> RetrainRun:
        """Start the training process; a Refusal when another run is going."""
        current = self.service.running
        if current is not None and current is not self and current.running:
            raise Refusal(f"A retrain is already running (started by {current.started_by}); "
                          "wait for it to finish or cancel it.")
        try:
            self.job.start()
        except TrainingBusy:
            raise Refusal("A retrain is already running in this bot; wait for it to finish.") from None
        self.service.running = self
        return self

    def events(self) -> AsyncIterator[TrainingEvent]:
        return self.job.events()

    def cancel(self) -> bool:
        return self.job.cancel()

    async def finish(self) -> RetrainOutcome:
        """Wait for the result; a deployed candidate is loaded and swapped in where a model is served."""
        serving = self.service.serving
        try:
            result = await self.job.result()
        except TrainingCancelled:
            return RetrainOutcome("cancelled", serving=self.service.serving_version())
        except TrainingFailed as exc:
            log.error("training failed: %s\n%s", exc, getattr(exc, "details", ""))
            return RetrainOutcome("failed", serving=self.service.serving_version(), error=str(exc))
        finally:
            if self.service.running is self:
                self.service.running = None
        if not result.deployed:
            return RetrainOutcome("not deployed", result, serving=self.service.serving_version())
        load_error = await self.service.deploy(result.path, result.version, previous=self.previous) \
            if serving is not None else None
        return RetrainOutcome("deployed", result, serving=self.service.serving_version(), load_error=load_error,
                              swapped=serving is not None and load_error is None)


class RetrainingService:
    def __init__(self, settings, store, serving: Serving | None = None) -> None:
        self.settings = settings
        self.store = store
        self.serving = serving
        self.running: RetrainRun | None = None

    @property
    def registry(self) -> Registry:
        return Registry(self.settings.models_dir)

    def serving_version(self) -> str:
        return self.serving.classifier.version if self.serving is not None else (self._current_name() or "")

    # -- the rules ---------------------------------------------------------------------------------

    def config_for(self, *, force: bool = False, overrides: TrainingOverrides | None = None) -> FinetuneConfig:
        """The fine-tune's knobs: FinetuneConfig's defaults, then the settings, then this run's overrides."""
        o = overrides or TrainingOverrides()
        s = self.settings
        fallback = (self.serving.classifier.source if self.serving is not None else "") or s.model
        knobs: dict[str, Any] = dict(
            fallback_base=fallback, models_dir=str(s.models_dir), device=s.device, force=force,
            base=o.base, replay=(o.replay if o.replay is not None else s.replay_path) or None,
            torch_threads=o.threads or s.training_threads, save_refused=o.save_refused)
        for knob, override, setting in (("epochs", o.epochs, s.finetune_epochs),
                                        ("learning_rate", o.learning_rate, s.finetune_lr),
                                        ("batch_size", o.batch_size, s.finetune_batch_size),
                                        ("mix", o.mix, s.finetune_mix),
                                        ("replay_ratio", o.replay_ratio, s.replay_ratio)):
            value = override if override is not None else setting
            if value is not None:
                knobs[knob] = value
        return FinetuneConfig(**knobs)

    async def prepare(self, actor: Actor, *, force: bool = False,
                      overrides: TrainingOverrides | None = None) -> RetrainRun:
        """Check the rules and set up a run; :meth:`RetrainRun.start` starts it (one run at a time).

        Two steps, so a front end with a deadline (Discord's 3 s) can answer in between: a child
        started before a failed answer would train unwatched.
        """
        actor.require_manager("retrain the model")
        if self.running is not None and self.running.running:
            raise Refusal(f"A retrain is already running (started by {self.running.started_by}); "
                          "wait for it to finish or cancel it.")
        examples = await self.store.corrections_for_training()
        needed = (overrides.min_corrections if overrides and overrides.min_corrections else None) \
            or self.settings.min_corrections
        if len(examples) < needed:
            raise Refusal(f"Only {len(examples)} corrections so far; retraining needs at least {needed} "
                          "(EMOTION_MIN_CORRECTIONS). Add them with /correct or Apps → Correct emotion.")
        config = self.config_for(force=force, overrides=overrides)
        previous = await asyncio.to_thread(self._current_name)
        return RetrainRun(self, TrainingJob(examples, config), len(examples), config,
                          actor.name or str(actor.user_id), previous)

    def cancel(self, actor: Actor) -> bool:
        """Cancel the running retrain; False when none runs."""
        actor.require_manager("cancel a retrain")
        return self.running is not None and self.running.cancel()

    # -- deploy and roll back ----------------------------------------------------------------------

    async def deploy(self, path: str, version: str, *, previous: str | None) -> str | None:
        """Load ``version`` off the loop and serve it; on failure point ``current`` back at ``previous``.

        With no ``previous`` (a first deploy) ``current`` is cleared, so a restart serves the base
        model rather than the one that cannot load. Returns None when it is served, else why not.
        """
        from model.classifier import ModelLoadError

        assert self.serving is not None, "deploy needs a model being served"
        try:
            classifier = await self.serving.load(path, version=version, device=self.settings.device,
                                                 quantize=self.settings.quantize)
        except ModelLoadError as exc:
            log.error("version %s could not be loaded: %s", version, exc)
            await asyncio.to_thread(self._point_back, version, previous)
            return str(exc)
        self.serving.swap(classifier)
        return None

    def _point_back(self, version: str, previous: str | None) -> None:
        """Keep ``current`` on the model that is actually served after ``version`` failed to load."""
        try:
            if previous and previous != version:
                self.registry.set_current(previous, reason=f"{version} could not be loaded")
            elif not previous and self.registry.current_name() == version:
                self.registry.clear_current(reason=f"{version} could not be loaded; back to the base model")
        except RegistryError as exc:
            log.error("could not point current away from %s: %s", version, exc)

    async def rollback(self, actor: Actor, version: str | None = None) -> ModelVersion:
        """Make ``version`` (default: the previous deployed one) current and serve it."""
        actor.require_manager("roll the model back")
        if self.running is not None and self.running.running:
            raise Refusal("A retrain is running; wait for it (or cancel it) before rolling back.")
        previous = await asyncio.to_thread(self._current_name)
        try:
            target = await asyncio.to_thread(self.registry.rollback, version)
        except RegistryError as exc:
            raise Refusal(str(exc)) from None
        if self.serving is not None:
            error = await self.deploy(str(target.path), target.name, previous=previous)
            if error is not None:
                raise Refusal(f"{target.name} could not be loaded (see the bot's log); nothing changed.")
        return target

    # -- what is there -----------------------------------------------------------------------------

    async def info(self, actor: Actor) -> ModelInfo:
        actor.require_manager("see the model's versions")
        current = await asyncio.to_thread(self._current)
        since = None
        if current is not None and current.created:
            since = datetime.fromisoformat(current.created).timestamp()
        count = await self.store.count_corrections(since=since)
        clf = self.serving.classifier if self.serving is not None else None
        return ModelInfo(current, clf.version if clf else "", clf.source if clf else "", str(clf.device) if clf else "",
                         count, since, await self.versions())

    async def versions(self) -> list[str]:
        def names() -> list[str]:
            try:
                return [v.name for v in self.registry.list()]
            except RegistryError:
                return []
        return await asyncio.to_thread(names)

    def _current(self) -> ModelVersion | None:
        try:
            return self.registry.current()
        except RegistryError:
            return None

    def _current_name(self) -> str | None:
        try:
            return self.registry.current_name()
        except RegistryError:
            return None

