"""The background inference thread and its asyncio-facing ``classify``.

One thread owns the model, so the event loop never runs tokenizer or model code. Requests
that arrive together are micro-batched: the thread takes everything queued (up to
``max_batch``), waits at most ``max_wait`` for more, and runs them as one length-sorted
batch. Results go back to each caller's loop with one ``call_soon_threadsafe`` per batch.
A batch that fails is retried text by text, so one bad text fails only its own request.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the worker runs any classifier; importing this module must not load torch
    from model.classifier import Classifier, Prediction

log = logging.getLogger(__name__)


class WorkerClosed(RuntimeError):
    """The worker was closed before (or while) the request could run."""


@dataclass(slots=True)
class _Request:
    text: str
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


_STOP = object()


class InferenceWorker:
    """Runs one :class:`Classifier` on a daemon thread; ``swap`` replaces it atomically."""

    def __init__(self, classifier: Classifier, *, max_batch: int = 32, max_wait: float = 0.003,
                 max_pending: int = 2048, torch_threads: int | None = None) -> None:
        self._classifier = classifier
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_pending = max_pending
        self.torch_threads = torch_threads
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0
        self.processed = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> InferenceWorker:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inference-worker", daemon=True)
            self._thread.start()
        return self

    async def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop the thread. Later calls raise :class:`WorkerClosed`."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, timeout)
            if self._thread.is_alive():
                log.warning("inference thread did not stop within %.1fs", timeout)
        self._fail_queued(WorkerClosed("the inference worker is closed"))

    @property
    def classifier(self) -> Classifier:
        return self._classifier

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def pending(self) -> int:
        return self._queue.qsize()

    def swap(self, classifier: Classifier) -> Classifier:
        """Use ``classifier`` from the next batch on; queued requests are answered by it. Returns the old one."""
        old, self._classifier = self._classifier, classifier
        log.info("model swapped: %s -> %s", old.version, classifier.version)
        return old

    # -- asyncio side --------------------------------------------------------------------------

    async def classify(self, text: str) -> Prediction:
        """Classify one text off the loop. Waits for a slot when ``max_pending`` requests are in flight."""
        if self._closed:
            raise WorkerClosed("the inference worker is closed")
        if self._thread is None:
            self.start()
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.max_pending)
        async with slots:
            future = loop.create_future()
            self._queue.put(_Request(text, future, loop))
            return await future

    async def classify_many(self, texts: Sequence[str]) -> list[Prediction]:
        """Classify several texts; they join the same micro-batches as single requests."""
        return list(await asyncio.gather(*(self.classify(t) for t in texts)))

    # -- worker thread -------------------------------------------------------------------------

    def _run(self) -> None:
        if self.torch_threads:
            import torch

            torch.set_num_threads(self.torch_threads)
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    remaining = deadline - time.monotonic()
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.future.cancelled()]
        if not live:
            return
        classifier = self._classifier  # one read: a swap mid-batch cannot mix models
        try:
            results: list = classifier.predict([r.text for r in live], batch_size=self.max_batch)
        except Exception as exc:  # noqa: BLE001 - a bad batch fails its own requests, not the thread
            results = self._one_by_one(classifier, live, exc)
        self.batches += 1
        self.processed += len(live)
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for request, result in zip(live, results):
            by_loop.setdefault(request.loop, []).append((request.future, result))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def _one_by_one(self, classifier: Classifier, live: list[_Request], exc: Exception) -> list:
        """After a failed batch, each text alone: one bad text fails only its own request."""
        if len(live) == 1:
            log.error("inference of one text failed", exc_info=exc)
            return [exc]
        log.warning("inference batch of %d failed (%s: %s); retrying each text alone",
                    len(live), type(exc).__name__, exc)
        results: list = []
        for request in live:
            try:
                results.extend(classifier.predict([request.text], batch_size=1))
            except Exception as one:  # noqa: BLE001 - this text's own error, for its own caller
                log.error("inference of one text failed", exc_info=one)
                results.append(one)
        return results

    def _fail_queued(self, exc: Exception) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                try:
                    item.loop.call_soon_threadsafe(_deliver, [(item.future, exc)])
                except RuntimeError:
                    pass


def _deliver(items: list) -> None:
    """Runs on the caller's loop: resolve each future unless its caller gave up."""
    for future, result in items:
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
