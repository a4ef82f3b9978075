"""Run a fine-tune in a child process, so the bot keeps answering while it trains.

Why a process and not a thread: training holds the GIL for long stretches and would take every
core torch offers; a ``spawn``ed child gets its own interpreter, its own thread budget
(``OMP_NUM_THREADS`` and ``torch.set_num_threads``), and a lower CPU priority (``os.nice``),
and can be stopped at any moment without corrupting the parent. A child whose parent is gone (the bot
killed with ``kill -9``) stops at its next step and deploys nothing; it inherits no secret from the
parent's environment (``DISCORD_TOKEN`` and other secret-looking names; the hub's ``HF_TOKEN`` stays).

::

    job = TrainingJob(examples, FinetuneConfig(models_dir=..., torch_threads=1)).start()
    async for event in job.events():      # TrainingEvent: a stage started, or a step done
        ...
    result = await job.result()           # FinetuneResult, or TrainingFailed / TrainingCancelled

This module imports neither torch nor transformers at the top: the child unpickles its
arguments (and so imports this module) *before* its thread settings can be applied. Events
and the result cross the pipe as plain dicts (:meth:`TrainingEvent.as_dict`, ``asdict``) and
are rebuilt on this side, so the pipe carries only plain data.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing as mp
import os
import queue
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any, ClassVar

from model.progress import TrainingEvent

if TYPE_CHECKING:
    from model.finetune_config import FinetuneConfig, FinetuneResult

log = logging.getLogger(__name__)

#: Thread-count variables read once by the native libraries when torch is imported.
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_env_lock = threading.Lock()
#: Secret-looking names kept out of the child's environment (the bot token above all: a service manager
#: may export ``DISCORD_TOKEN``); matched on whole ``_``-separated parts, so TOKENIZERS_PARALLELISM stays.
_SECRET_NAME = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS?)(_|$)")
#: Kept although they look secret: a fine-tune may download a private base model or dataset from the hub.
_HUB_PREFIXES = ("HF_", "HUGGING_FACE_")
#: Seconds a child whose parent is gone waits for its own cooperative stop before it exits anyway.
ORPHAN_GRACE = 15.0


class TrainingFailed(RuntimeError):
    """The training process crashed or raised; nothing was deployed. ``details`` holds the child's traceback."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class TrainingCancelled(RuntimeError):
    """The job was cancelled before it finished; nothing was deployed."""


class TrainingBusy(RuntimeError):
    """Another training job of this process is still running."""


_END = object()


def secret_names(environ: dict[str, str] | os._Environ) -> list[str]:
    """The variables of ``environ`` a training child must not inherit (the hub's token is not one)."""
    return [k for k in environ if _SECRET_NAME.search(k.upper()) and not k.upper().startswith(_HUB_PREFIXES)]


@contextlib.contextmanager
def _child_environment(threads: str | None) -> Iterator[None]:
    """``os.environ`` as a spawned child should copy it: its thread budget, no secrets; restored after.

    Spawn copies the process environment when the child starts, so this is the only point where a
    secret exported by a service manager can be kept from it. The lock keeps two starts from interleaving.
    """
    with _env_lock:
        changes: dict[str, str | None] = dict.fromkeys(_THREAD_ENV, threads) if threads else {}
        changes.update(dict.fromkeys(secret_names(os.environ)))
        saved = {k: os.environ.get(k) for k in changes}
        try:
            _set_environ(changes)
            yield
        finally:
            _set_environ(saved)


def _set_environ(values: dict[str, str | None]) -> None:
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class ParentWatch:
    """Whether the process that started this child still runs.

    Gone once this child was re-parented (POSIX: ``getppid`` changes when the parent dies) or
    multiprocessing's parent sentinel is closed (also where pids are not re-parented).
    """

    def __init__(self, parent_pid: int) -> None:
        self.parent_pid = parent_pid
        self._parent = mp.parent_process()

    def alive(self) -> bool:
        return os.getppid() == self.parent_pid and (self._parent is None or self._parent.is_alive())

    def wait_gone(self, interval: float = 0.5) -> None:
        """Block until the parent is gone: woken by its sentinel, with a ``getppid`` check every ``interval``."""
        sentinel = [self._parent.sentinel] if self._parent is not None else []
        while self.alive():
            if sentinel:
                wait(sentinel, interval)
            else:
                time.sleep(interval)


def stop_check(stop: threading.Event, watch: ParentWatch) -> Callable[[], bool]:
    """``should_stop`` for the fine-tune: a cancel, or the parent gone, asked afresh at every check.

    Asking the parent itself (not only the watcher's flag) is what makes even a death just before
    the deploy step deploy nothing: finetune checks this right before ``set_current``.
    """
    return lambda: stop.is_set() or not watch.alive()


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGTERM when the parent goes (``prctl(PR_SET_PDEATHSIG)``); elsewhere the watcher."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1: PR_SET_PDEATHSIG


def _watch_parent(watch: ParentWatch, stop: threading.Event, grace: float) -> None:
    """The watcher thread: on the parent's death ask for a stop, then end the process if that takes too long."""
    watch.wait_gone()
    stop.set()
    log.warning("the process that started this training is gone: stopping without deploying")
    time.sleep(grace)
    os._exit(1)  # still here: a stage that never checks should_stop; nothing was deployed, so nothing is lost


def _watch(parent_pid: int, pdeathsig: bool, stop: threading.Event) -> ParentWatch:
    """Start watching the parent; the death signal only where the parent's starting thread lives as long as it."""
    watch = ParentWatch(parent_pid)
    if pdeathsig:
        _die_with_parent()
    threading.Thread(target=_watch_parent, args=(watch, stop, ORPHAN_GRACE), name="parent-watch",
                     daemon=True).start()
    if not watch.alive():  # gone before the signal was armed
        stop.set()
    return watch


def _child_main(examples: list[tuple[str, str]], config: dict[str, Any], out: Any, nice: int,
                parent_pid: int, pdeathsig: bool) -> None:
    """Entry point of the training process: run the fine-tune, report over ``out``; stop if the parent dies."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())  # cooperative: checked every step
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is the parent's to handle
    watch = _watch(parent_pid, pdeathsig, stop)
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass
    code = 0
    try:
        import torch

        from model import finetune

        if config.get("torch_threads"):
            torch.set_num_threads(int(config["torch_threads"]))
        cfg = finetune.FinetuneConfig(**config)
        result = finetune.run(examples, cfg, on_event=lambda e: out.put(("event", e.as_dict())),
                              should_stop=stop_check(stop, watch))
        out.put(("result", dataclasses.asdict(result)))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        from model.finetune import FinetuneCancelled

        if isinstance(exc, FinetuneCancelled):
            out.put(("cancelled", str(exc)))
        else:
            out.put(("error", {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}))
            code = 1
    finally:
        out.close()
        if watch.alive():
            out.join_thread()  # the messages must reach the pipe before the process ends
        else:
            out.cancel_join_thread()  # nobody reads them: a full pipe must not keep this process alive
    if code:
        sys.exit(code)


class TrainingJob:
    """One fine-tune in a child process, driven from asyncio. One at a time per process."""

    _active: ClassVar[TrainingJob | None] = None
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, examples: Iterable[tuple[str, str]], config: FinetuneConfig | None = None, *,
                 nice: int = 10, poll_interval: float = 0.2, kill_after: float = 10.0) -> None:
        from model.finetune_config import FinetuneConfig

        self.examples = [(str(t), str(lb)) for t, lb in examples]
        self.config = config or FinetuneConfig(torch_threads=1)
        self.nice = nice
        self.poll_interval = poll_interval
        #: Seconds ``cancel`` waits for the child to stop at a step boundary before SIGKILL.
        self.kill_after = kill_after
        self._ctx = mp.get_context("spawn")
        self._queue: Any = None
        self._process: Any = None
        self._events: asyncio.Queue | None = None
        self._done: asyncio.Future | None = None
        self._reader: asyncio.Task | None = None
        self._cancelled = False
        self.last_stage: str | None = None

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def busy(cls) -> bool:
        """Whether a job started by this process is still running and has not handed over its outcome.

        A child that has sent its result may take seconds to exit on a busy machine; it trains
        nothing more, so it does not hold up the next job.
        """
        job = cls._active
        return job is not None and job.running and not (job._done is not None and job._done.done())

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> TrainingJob:
        """Start the child process; :class:`TrainingBusy` if another job of this process is running."""
        with TrainingJob._guard:
            if self._process is not None:
                raise RuntimeError("this job was already started")
            if TrainingJob.busy():
                raise TrainingBusy(f"a training job is already running (pid {TrainingJob._active.pid}): "
                                   "wait for it to finish or cancel it")
            config = dataclasses.asdict(self.config)
            # The kernel's parent-death signal fires when the *thread* that started the child ends; only
            # the main thread lives as long as the process, elsewhere the child's watcher alone decides.
            pdeathsig = threading.current_thread() is threading.main_thread()
            threads = str(self.config.torch_threads) if self.config.torch_threads else None
            with _child_environment(threads):  # the queue's first lock may start multiprocessing's tracker process
                self._queue = self._ctx.Queue()
                self._process = self._ctx.Process(target=_child_main, name="emotion-finetune", daemon=True,
                                                  args=(self.examples, config, self._queue, self.nice, os.getpid(),
                                                        pdeathsig))
                self._process.start()
            TrainingJob._active = self
        log.info("training started in process %s (%s torch threads, nice %+d)",
                 self._process.pid, self.config.torch_threads or "default", self.nice)
        return self

    def cancel(self) -> bool:
        """Ask the child to stop (SIGTERM, honoured at the next step), then SIGKILL after ``kill_after`` s.

        Returns False when there was nothing to cancel (not started, or already finished).
        A cancelled job deploys nothing: the child checks for the request before it switches
        ``current``, and a kill mid-save leaves only a temp folder the registry ignores.
        """
        if self._process is None or not self._process.is_alive():
            return False
        self._cancelled = True
        self._process.terminate()
        timer = threading.Timer(self.kill_after, self._kill)
        timer.daemon = True
        timer.start()
        log.info("training cancelled (pid %s)", self._process.pid)
        return True

    def _kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            log.warning("training process %s ignored SIGTERM; killing it", self._process.pid)
            self._process.kill()

    # ------------------------------------------------------------------ asyncio side

    async def events(self) -> AsyncIterator[TrainingEvent]:
        """Stage and progress events as they arrive; ends when the job ends (then await :meth:`result`)."""
        self._ensure_reader()
        assert self._events is not None
        while True:
            item = await self._events.get()
            if item is _END:
                self._events.put_nowait(_END)  # a second iteration ends at once too
                return
            yield item

    async def result(self) -> FinetuneResult:
        """The :class:`FinetuneResult`; raises TrainingFailed or TrainingCancelled instead when so."""
        self._ensure_reader()
        assert self._done is not None
        return await asyncio.shield(self._done)

    def _ensure_reader(self) -> None:
        if self._process is None:
            raise RuntimeError("start() the job first")
        if self._reader is None:
            loop = asyncio.get_running_loop()
            self._events = asyncio.Queue()
            self._done = loop.create_future()
            self._reader = loop.create_task(self._read(), name="training-job-reader")

    async def _read(self) -> None:
        """Move messages from the process queue to asyncio, off the loop; settle the result."""
        assert self._events is not None and self._done is not None
        outcome: Any = None
        try:
            while outcome is None:
                try:
                    kind, payload = await asyncio.to_thread(self._queue.get, True, self.poll_interval)
                except queue.Empty:
                    if self._process.is_alive():
                        continue
                    try:  # it may have sent its last words just before the check
                        kind, payload = await asyncio.to_thread(self._queue.get, True, 0.5)
                    except queue.Empty:
                        outcome = self._after_exit()
                        continue
                except (EOFError, OSError) as exc:
                    outcome = TrainingFailed(f"lost contact with the training process: {exc}")
                    continue
                if kind == "event":
                    event = TrainingEvent.from_dict(payload)
                    if event.kind == "stage":
                        self.last_stage = event.stage
                    self._events.put_nowait(event)
                elif kind == "result":
                    from model.finetune_config import result_from_dict

                    outcome = result_from_dict(payload)
                    if self._cancelled:
                        log.info("training finished before the cancel took effect: %s", outcome.reason)
                elif kind == "cancelled":
                    outcome = TrainingCancelled("training was cancelled; nothing was deployed")
                elif kind == "error":
                    outcome = TrainingFailed(
                        f"training failed: {payload['type']}: {payload['message']}; nothing was deployed",
                        payload.get("traceback", ""))
            await asyncio.to_thread(self._process.join, 5.0)
        except asyncio.CancelledError:
            outcome = TrainingCancelled("stopped waiting for the training job")
            raise
        except BaseException as exc:  # noqa: BLE001 - surface reader bugs through result()
            outcome = TrainingFailed(f"could not follow the training job: {exc}")
        finally:
            if not self._done.done():
                if isinstance(outcome, BaseException):
                    self._done.set_exception(outcome)
                    self._done.exception()  # nobody may await result(): no "never retrieved" warning
                else:
                    self._done.set_result(outcome)
            self._events.put_nowait(_END)
            if not self.running:  # release the queue's pipe and semaphore now, not at interpreter exit
                self._queue.close()
                self._queue = None
            with TrainingJob._guard:
                if TrainingJob._active is self and not self.running:
                    TrainingJob._active = None

    def _after_exit(self) -> BaseException:
        """The child ended without a message: say how."""
        code = self._process.exitcode
        if self._cancelled:
            return TrainingCancelled("training was cancelled; nothing was deployed")
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            return TrainingFailed(f"the training process was killed by {name}{hint}; nothing was deployed")
        return TrainingFailed(f"the training process exited with code {code} without a result; nothing was deployed")
