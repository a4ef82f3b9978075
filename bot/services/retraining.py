"""Retraining and deploying: the rules of ``/retrain``, ``/base``, the shell's ``/retrain`` and ``finetune``.

Two tiers. The shared base model belongs to the bot's owner: only they retrain or roll it back,
and it learns only from servers that turned ``share`` on (plus the operator's imports and shell).
Each server has its own line of versions on top of it (a head, :mod:`model.heads`): ``/retrain``
in a server trains on that server's corrections only, and its gate, deploy, info and rollback act
on that line only. A server that never retrained is served by the base.

One place decides who may retrain what, how many corrections it takes, the training knobs (from
the settings, with a front end's overrides), the thread budget of the training process, and what
a deploy does: the child process gates and points the line's ``current`` at a candidate that
passed; here the new version is loaded off the event loop and swapped in, and if it cannot be
loaded ``current`` goes back to what is actually served. Model versions live in the registry
(:mod:`model.registry`) only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.services.common import Actor, Refusal, Serving
from bot.store import StoreError
from bot.store.base import RESYNC
from model.finetune_config import FinetuneConfig, FinetuneResult
from model.jobs import TrainingBusy, TrainingCancelled, TrainingFailed, TrainingJob
from model.progress import TrainingEvent
from model.registry import ModelVersion, Registry, RegistryError, server_root

log = logging.getLogger(__name__)

#: The NOTIFY channel of version changes: {"guild": id or null (the base), "from": the deploying process}.
MODELS_CHANNEL = "emotion_machine_models"
#: Seconds after which a prepared run that never started (its front end's answer failed) gives up its lock.
ABANDONED_AFTER = 60.0


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
    """What ``/model info`` (a server's line) and ``/base info`` (the shared base) show."""

    current: ModelVersion | None
    serving_version: str
    serving_source: str
    device: str
    corrections: int
    #: Corrections counted since the current version was created (None: counted over all time).
    since: float | None
    versions: list[str] = field(default_factory=list)
    #: The server whose line this is; None: the shared base.
    guild_id: int | None = None
    #: The base version under the server's line.
    base: str = ""
    #: Why the server's current version is not what is served (trained on an earlier base), if it is not.
    note: str | None = None


class RetrainRun:
    """One training run in its child process: follow its events, cancel it, then :meth:`finish`."""

    def __init__(self, service: RetrainingService, job: TrainingJob, examples: int, config: FinetuneConfig,
                 started_by: str, previous: str | None) -> None:
        self.service, self.job, self.examples, self.config = service, job, examples, config
        self.started_by = started_by
        self.previous = previous
        self.lock = None  # the cluster's training lock (PostgreSQL), held from prepare to finish
        self.prepared_at = 0.0

    @property
    def guild_id(self) -> int | None:
        """The server whose line this run trains; None: the shared base."""
        return self.config.guild_id

    @property
    def running(self) -> bool:
        return self.job.running

    def start(self) -> RetrainRun:
        """Start the training process; a Refusal when another run is going."""
        current = self.service.running
        if current is not None and current is not self and current.running:
            raise self.service.busy(current, self.guild_id)
        try:
            self.job.start()
        except TrainingBusy:
            raise Refusal("A retrain is already running in this bot; wait for it to finish.") from None
        self.service.running = self
        if self.service.prepared is self:
            self.service.prepared = None
        return self

    async def release(self) -> None:
        """Let another process of the cluster train (done by :meth:`finish`, or for a run never started)."""
        lock, self.lock = self.lock, None
        if lock is not None:
            await lock.release()

    def events(self) -> AsyncIterator[TrainingEvent]:
        return self.job.events()

    def cancel(self) -> bool:
        return self.job.cancel()

    async def finish(self) -> RetrainOutcome:
        """Wait for the result; a deployed candidate is loaded and swapped in where a model is served.

        The cluster's training lock is held until the new version is served and announced: another process
        preparing a run meanwhile would start from the version this one replaces.
        """
        try:
            return await self._finish()
        finally:
            await self.release()

    async def _finish(self) -> RetrainOutcome:
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
        guild = self.guild_id
        if not result.deployed:
            return RetrainOutcome("not deployed", result, serving=self.service.serving_version(guild))
        load_error = None
        if serving is not None:
            load_error = await self.service.deploy(result.path, result.version, previous=self.previous, guild_id=guild)
        else:  # trained from the CLI: the running bot's processes load it
            await self.service.announce(guild)
        return RetrainOutcome("deployed", result, serving=self.service.serving_version(guild), load_error=load_error,
                              swapped=serving is not None and load_error is None)


class RetrainingService:
    def __init__(self, settings, store, serving: Serving | None = None) -> None:
        self.settings = settings
        self.store = store
        self.serving = serving
        self.running: RetrainRun | None = None
        self.prepared: RetrainRun | None = None  # prepared, not started yet: it holds the cluster's lock
        self._follow_locks: dict[int | None, asyncio.Lock] = {}

    @property
    def registry(self) -> Registry:
        """The shared base's line."""
        return Registry(self.settings.models_dir)

    def line(self, guild_id: int | None) -> Registry:
        """A server's line of versions; None: the base's."""
        return self.registry if guild_id is None else Registry(server_root(self.settings.models_dir, guild_id))

    def serving_version(self, guild_id: int | None = None) -> str:
        """What tags the messages of ``guild_id`` now (the base's version where it has no head of its own)."""
        if self.serving is None:
            return self._current_name(guild_id) or ""
        head = self.serving.head_of(guild_id)
        return head.version if head is not None else self.serving.classifier.version

    @staticmethod
    def busy(run: RetrainRun, guild_id: int | None) -> Refusal:
        """The refusal while ``run`` trains: who started it only to the same server (a name is that server's)."""
        if run.guild_id == guild_id:
            return Refusal(f"A retrain is already running (started by {run.started_by}); "
                           "wait for it to finish or cancel it.")
        return Refusal("The bot is training another model right now (one training at a time); "
                       "try again in a few minutes.")

    # -- the rules ---------------------------------------------------------------------------------

    def config_for(self, *, force: bool = False, overrides: TrainingOverrides | None = None,
                   guild_id: int | None = None) -> FinetuneConfig:
        """The fine-tune's knobs: FinetuneConfig's defaults, then the settings, then this run's overrides.

        ``guild_id``: a server's line (its head on the current base; the learning rate is the head's).
        """
        o = overrides or TrainingOverrides()
        s = self.settings
        if guild_id is not None and o.base:
            raise Refusal("A server's model is always trained on the current base; drop the base option.")
        fallback = (self.serving.classifier.source if self.serving is not None else "") or s.model
        knobs: dict[str, Any] = dict(
            fallback_base=fallback, models_dir=str(s.models_dir), device=s.device, force=force,
            base=o.base, replay=(o.replay if o.replay is not None else s.replay_path) or None,
            torch_threads=o.threads or s.training_threads, save_refused=o.save_refused, guild_id=guild_id)
        rate = "head_learning_rate" if guild_id is not None else "learning_rate"
        for knob, override, setting in (("epochs", o.epochs, s.finetune_epochs),
                                        (rate, o.learning_rate, s.server_lr if guild_id is not None else s.finetune_lr),
                                        ("batch_size", o.batch_size, s.finetune_batch_size),
                                        ("mix", o.mix, s.finetune_mix),
                                        ("replay_ratio", o.replay_ratio, s.replay_ratio)):
            value = override if override is not None else setting
            if value is not None:
                knobs[knob] = value
        return FinetuneConfig(**knobs)

    def _require(self, actor: Actor, guild_id: int | None, what: str) -> None:
        if guild_id is None:
            actor.require_owner(f"{what} the shared base model")
        else:
            actor.require_manager_of(guild_id, f"{what} this server's model")

    async def prepare(self, actor: Actor, *, guild_id: int | None = None, force: bool = False,
                      overrides: TrainingOverrides | None = None) -> RetrainRun:
        """Check the rules and set up a run; :meth:`RetrainRun.start` starts it (one run at a time).

        ``guild_id``: train that server's line on its own corrections (Manage Server there);
        None: the shared base, on the corrections of servers that share them (the owner only).
        Two steps, so a front end with a deadline (Discord's 3 s) can answer in between: a child
        started before a failed answer would train unwatched.
        """
        self._require(actor, guild_id, "retrain")
        if self.running is not None and self.running.running:
            raise self.busy(self.running, guild_id)
        examples = await self.store.corrections_for_training(guild_id=guild_id, shared=guild_id is None)
        needed = (overrides.min_corrections if overrides and overrides.min_corrections else None) \
            or self.settings.min_corrections
        if len(examples) < needed:
            where = ("in this server" if guild_id is not None
                     else "from the servers that share theirs, imports and the shell")
            raise Refusal(f"Only {len(examples)} corrections {where} so far; retraining needs at least {needed} "
                          "(EMOTION_MIN_CORRECTIONS). Add them with /correct or Apps → Correct emotion.")
        config = self.config_for(force=force, overrides=overrides, guild_id=guild_id)
        previous = await asyncio.to_thread(self._current_name, guild_id)
        run = RetrainRun(self, TrainingJob(examples, config), len(examples), config,
                         actor.name or str(actor.user_id), previous)
        run.lock = await self._cluster_training_lock(guild_id)
        run.prepared_at = time.monotonic()
        if run.lock is not None:
            self.prepared = run
        return run

    async def _cluster_training_lock(self, guild_id: int | None):
        """With PostgreSQL, one training at a time across every process of the bot (an advisory lock)."""
        if self.prepared is not None:
            pending = self.prepared
            if pending.lock is not None and time.monotonic() - pending.prepared_at < ABANDONED_AFTER:
                raise self.busy(pending, guild_id)  # a run is about to start here: its lock stays its own
            await pending.release()  # prepared but never started (its answer failed): let it go
            self.prepared = None
        try_lock = getattr(self.store, "try_cluster_lock", None)
        if try_lock is None:  # SQLite: one process; the check above is the whole rule
            return None
        lock = await try_lock("training")
        if lock is None:
            raise Refusal("Another process of this bot is training a model right now (one training at a time "
                          "across the cluster); try again in a few minutes.")
        return lock

    def cancel(self, actor: Actor, run: RetrainRun | None = None) -> bool:
        """Cancel ``run`` (default: the running one) if the actor may: Manage Server in its server, the owner
        for the base's. False when there is none."""
        run = run or self.running
        if run is None:
            return False
        self._require(actor, run.guild_id, "cancel a retrain of")
        return run.cancel()

    # -- deploy and roll back ----------------------------------------------------------------------

    async def deploy(self, path: str, version: str, *, previous: str | None,
                     guild_id: int | None = None) -> str | None:
        """Load ``version`` off the loop and serve it; on failure point ``current`` back at ``previous``.

        A server's version is its head, swapped in for that server alone. A base version is swapped
        in with the servers' heads that were trained on it (the others are served by the base until
        they retrain). With no ``previous`` (a first deploy) ``current`` is cleared, so a restart
        serves the base rather than what cannot load. Returns None when it is served, else why not.
        """
        from model.classifier import ModelLoadError
        from model.heads import HeadError

        assert self.serving is not None, "deploy needs a model being served"
        try:
            if guild_id is not None:
                self.serving.set_head(guild_id, await self.serving.load_head(path))
            else:
                classifier = await self.serving.load(path, version=version, device=self.settings.device,
                                                     quantize=self.settings.quantize)
                self.serving.swap(classifier, await self.serving.heads_for(classifier))
        except (ModelLoadError, HeadError) as exc:
            log.error("version %s%s could not be loaded: %s", version,
                      f" of server {guild_id}" if guild_id is not None else "", exc)
            await asyncio.to_thread(self._point_back, version, previous, guild_id)
            return str(exc)
        await self.announce(guild_id)
        return None

    # -- the other processes of a cluster ----------------------------------------------------------

    async def announce(self, guild_id: int | None) -> None:
        """Tell the bot's other processes (PostgreSQL's NOTIFY) that a line's current version changed."""
        notify = getattr(self.store, "notify", None)
        if notify is None:
            return
        try:
            await notify(MODELS_CHANNEL, json.dumps({"guild": guild_id, "from": self.store.origin}))
            log.info("announced the new version%s to the bot's processes",
                     f" of server {guild_id}" if guild_id is not None else "")
        except StoreError as exc:  # the others then catch up at their restart; this process serves it already
            log.warning("could not tell the other processes about the new version: %s", exc)

    async def listen(self) -> None:
        """Follow the versions other processes deploy: each announced line is reloaded from the shared models dir."""
        subscribe = getattr(self.store, "subscribe", None)
        if subscribe is None or self.serving is None:
            return
        self._following: set[asyncio.Task] = set()

        def heard(payload: str) -> None:
            if payload == RESYNC:  # announcements may have been missed (the listening connection was lost)
                self._track(asyncio.get_running_loop().create_task(self.follow_all()))
                return
            try:
                message = json.loads(payload)
                guild_id = None if message.get("guild") is None else int(message["guild"])
            except (ValueError, TypeError, AttributeError):
                log.warning("ignored a malformed version announcement: %.100r", payload)
                return
            if message.get("from") == self.store.origin:
                return  # this process deployed it
            self._track(asyncio.get_running_loop().create_task(self.follow(guild_id)))

        await subscribe(MODELS_CHANNEL, heard)

    def _track(self, task: asyncio.Task) -> None:
        self._following.add(task)
        task.add_done_callback(self._following.discard)

    async def follow_all(self) -> None:
        """:meth:`follow` the base and every server line (after announcements may have been missed)."""
        from model.registry import server_lines

        await self.follow(None)
        served = set(self.serving.worker.heads) if self.serving is not None else set()
        lines = await asyncio.to_thread(server_lines, self.settings.models_dir)
        for guild_id in sorted(served | set(lines)):
            await self.follow(guild_id)

    async def follow(self, guild_id: int | None) -> bool:
        """Serve the line's current version if it is not what this process serves; True if it swapped.

        Never changes the registry (the deploying process did): a version that cannot load here is logged,
        and this process keeps serving what it had.
        """
        assert self.serving is not None
        lock = self._follow_locks.setdefault(guild_id, asyncio.Lock())
        async with lock:  # one line's announcements in order: an older load never lands after a newer one
            return await self._follow(guild_id)

    async def _follow(self, guild_id: int | None) -> bool:
        from model.classifier import ModelLoadError
        from model.heads import HeadError

        current = await asyncio.to_thread(self._current, guild_id)
        served = self.serving.head_of(guild_id) if guild_id is not None else self.serving.classifier
        if (current.name if current else None) == (served.version if served is not None else None):
            return False
        try:
            if guild_id is not None:
                self.serving.set_head(guild_id, None if current is None else await self.serving.load_head(
                    str(current.path)))
            else:
                source = str(current.path) if current is not None else self.settings.model
                classifier = await self.serving.load(source, version=current.name if current else "",
                                                     device=self.settings.device, quantize=self.settings.quantize)
                self.serving.swap(classifier, await self.serving.heads_for(classifier))
        except (ModelLoadError, HeadError, RegistryError) as exc:
            log.error("another process deployed %s%s, which cannot be loaded here: %s", current and current.name,
                      f" for server {guild_id}" if guild_id is not None else "", exc)
            return False
        log.info("now serving %s%s, deployed by another process", current.name if current else "the base",
                 f" for server {guild_id}" if guild_id is not None else "")
        return True

    def _point_back(self, version: str, previous: str | None, guild_id: int | None = None) -> None:
        """Keep ``current`` on the model that is actually served after ``version`` failed to load."""
        line = self.line(guild_id)
        try:
            if previous and previous != version:
                line.set_current(previous, reason=f"{version} could not be loaded")
            elif not previous and line.current_name() == version:
                line.clear_current(reason=f"{version} could not be loaded; back to the base model")
        except RegistryError as exc:
            log.error("could not point current away from %s: %s", version, exc)

    async def rollback(self, actor: Actor, version: str | None = None, *,
                       guild_id: int | None = None) -> ModelVersion | None:
        """Make ``version`` (default: the previous deployed one) current in the line and serve it.

        In a server's line ``version="base"`` drops the server's own versions from serving (the base
        serves it; nothing is deleted) and returns None.
        """
        self._require(actor, guild_id, "roll back")
        if self.running is not None and self.running.running and self.running.guild_id == guild_id:
            raise Refusal("A retrain is running; wait for it (or cancel it) before rolling back.")
        line = self.line(guild_id)
        previous = await asyncio.to_thread(self._current_name, guild_id)
        if guild_id is not None and version is not None and version.strip().lower() == "base":
            await asyncio.to_thread(line.clear_current, reason="rollback to the base")
            if self.serving is not None:
                self.serving.set_head(guild_id, None)
            await self.announce(guild_id)
            return None
        try:
            target = await asyncio.to_thread(line.rollback, version)
        except RegistryError as exc:
            if guild_id is not None and version is None:
                raise Refusal("There is no earlier version of this server's model to go back to; "
                              "choose `base` to be served by the shared base model.") from None
            raise Refusal(str(exc)) from None
        if self.serving is not None:
            error = await self.deploy(str(target.path), target.name, previous=previous, guild_id=guild_id)
            if error is not None:
                raise Refusal(f"{target.name} could not be loaded (see the bot's log); nothing changed.")
        else:  # the CLI: the running bot's processes load it
            await self.announce(guild_id)
        return target

    # -- what is there -----------------------------------------------------------------------------

    async def info(self, actor: Actor, *, guild_id: int | None = None) -> ModelInfo:
        """A server's line (Manage Server there), or the shared base (the owner)."""
        self._require(actor, guild_id, "see the versions of")
        current = await asyncio.to_thread(self._current, guild_id)
        since = None
        if current is not None and current.created:
            since = datetime.fromisoformat(current.created).timestamp()
        count = await self.store.count_corrections(since=since, guild_id=guild_id, shared=guild_id is None)
        clf = self.serving.classifier if self.serving is not None else None
        served = self.serving_version(guild_id)
        note = None
        if guild_id is not None and current is not None and self.serving is not None \
                and self.serving.head_of(guild_id) is None:
            note = (f"{current.name} was trained on an earlier base, so the base serves this server "
                    "until its next /retrain.")
        return ModelInfo(current, served, clf.source if clf else "", str(clf.device) if clf else "",
                         count, since, await self.versions(guild_id), guild_id=guild_id,
                         base=clf.version if clf else "", note=note)

    async def versions(self, guild_id: int | None = None) -> list[str]:
        def names() -> list[str]:
            try:
                return [v.name for v in self.line(guild_id).list()]
            except RegistryError:
                return []
        return await asyncio.to_thread(names)

    def _current(self, guild_id: int | None = None) -> ModelVersion | None:
        try:
            return self.line(guild_id).current()
        except RegistryError:
            return None

    def _current_name(self, guild_id: int | None = None) -> str | None:
        try:
            return self.line(guild_id).current_name()
        except RegistryError:
            return None

