"""The background inference thread and its asyncio-facing ``classify``.

One thread owns the model, so the event loop never runs tokenizer or model code. Requests
that arrive together are micro-batched: the thread takes the first request, waits at most
``max_wait`` for up to ``max_batch`` more (a lone message waits no longer than that), then
drains whatever else is already queued, up to ``max_drain``. The drained set is tokenized
once, sorted by length and run as length-homogeneous batches (:meth:`Classifier.predict_batches`):
under load the padding that batches in arrival order carry is gone. Each batch's results go
back to their callers' loops as soon as it finishes, with one ``call_soon_threadsafe`` per loop.
A batch that fails is retried text by text, so one bad text fails only its own request.

Servers with a model of their own (a head on the shared base, :mod:`model.heads`) are served in
the same batches: each request names its server, and the batch applies each server's head to its
rows after one pass of the shared encoder. ``set_head`` swaps one server's head without touching
the others; ``swap`` replaces the base and the heads together.
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
    from model.heads import Head

log = logging.getLogger(__name__)


class WorkerClosed(RuntimeError):
    """The worker was closed before (or while) the request could run."""


@dataclass(slots=True)
class _Request:
    text: str
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    #: The server the text comes from (its head, if it has one, is applied); None: the base.
    key: int | None = None


_STOP = object()


class InferenceWorker:
    """Runs one :class:`Classifier` on a daemon thread; ``swap`` replaces it atomically."""

    def __init__(self, classifier: Classifier, *, max_batch: int | None = None, max_wait: float = 0.003,
                 max_drain: int | None = None, max_pending: int = 2048, torch_threads: int | None = None) -> None:
        #: What is served, replaced as a whole (a batch reads it once): the base and the servers' heads.
        self._served: tuple[Classifier, dict[int, Head]] = (classifier, {})
        #: Texts per forward pass; None: what the classifier chose for its device.
        self.max_batch = max_batch or getattr(classifier, "batch_size", None) or 32
        self.max_wait = max_wait
        #: Most texts taken in one go; ``max_drain == max_batch`` batches in arrival order (the old worker).
        self.max_drain = max(self.max_batch, max_drain or 32 * self.max_batch)
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
        return self._served[0]

    @property
    def heads(self) -> dict[int, Head]:
        """The servers' heads being served (a snapshot: do not change it, use :meth:`set_head`)."""
        return self._served[1]

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def pending(self) -> int:
        return self._queue.qsize()

    def swap(self, classifier: Classifier, heads: dict[int, Head] | None = None) -> Classifier:
        """Use ``classifier`` (and ``heads``, prepared for it; default none) from the next batch on.

        Queued requests are answered by it. Returns the old classifier.
        """
        old = self._served[0]
        self._served = (classifier, dict(heads or {}))
        log.info("model swapped: %s -> %s", old.version, classifier.version)
        return old

    def set_head(self, key: int, head: Head | None) -> None:
        """Serve server ``key`` with ``head`` (prepared for the served classifier) from the next batch.

        None: the base serves it. The other servers and the base are untouched.
        """
        classifier, heads = self._served
        heads = dict(heads)
        if head is None:
            heads.pop(key, None)
        else:
            heads[key] = head
        self._served = (classifier, heads)

    # -- asyncio side --------------------------------------------------------------------------

    async def classify(self, text: str, key: int | None = None) -> Prediction:
        """Classify one text (of server ``key``) off the loop. Waits for a slot when ``max_pending`` are in flight."""
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
            self._queue.put(_Request(text, future, loop, key))
            return await future

    async def classify_many(self, texts: Sequence[str], key: int | None = None) -> list[Prediction]:
        """Classify several texts; they join the same micro-batches as single requests."""
        return list(await asyncio.gather(*(self.classify(t, key) for t in texts)))

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
            batch, stopping = self._gather(first)
            self._run_batch(batch)

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        """``first``, what arrives within ``max_wait`` (up to ``max_batch``), then all that is already waiting.

        Returns the requests and whether the stop sentinel was met.
        """
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_drain:
            remaining = deadline - time.monotonic() if len(batch) < self.max_batch else 0.0
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _run_batch(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.future.cancelled()]
        if not live:
            return
        served = _Served(*self._served)  # one read: a swap mid-batch cannot mix models
        answered: set[int] = set()
        try:
            for indices, predictions in served.predict_batches(live, self.max_batch):
                self._answer([live[i] for i in indices], predictions)
                answered.update(indices)
        except Exception as exc:  # noqa: BLE001 - a bad batch fails its own requests, not the thread
            self._retry(served, [r for i, r in enumerate(live) if i not in answered], exc)

    def _retry(self, classifier: _Served, rest: list[_Request], exc: Exception) -> None:
        """After a failed pass, what was not answered: in batches of ``max_batch``, a failing one text by text."""
        if len(rest) <= self.max_batch:
            self._answer(rest, self._one_by_one(classifier, rest, exc))
            return
        log.warning("inference of %d texts failed (%s: %s); retrying in batches of %d",
                    len(rest), type(exc).__name__, exc, self.max_batch)
        for start in range(0, len(rest), self.max_batch):
            group = rest[start:start + self.max_batch]
            try:
                results = classifier.predict(group, batch_size=self.max_batch)
            except Exception as again:  # noqa: BLE001 - as above, for this group only
                results = self._one_by_one(classifier, group, again)
            self._answer(group, results)

    def _answer(self, requests: list[_Request], results: list) -> None:
        """Hand each result to its caller's loop: one wake-up per loop, not per request."""
        self.batches += 1
        self.processed += len(requests)
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for request, result in zip(requests, results):
            by_loop.setdefault(request.loop, []).append((request.future, result))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def _one_by_one(self, classifier: _Served, live: list[_Request], exc: Exception) -> list:
        """After a failed batch, each text alone: one bad text fails only its own request."""
        if len(live) == 1:
            log.error("inference of one text failed", exc_info=exc)
            return [exc]
        log.warning("inference batch of %d failed (%s: %s); retrying each text alone",
                    len(live), type(exc).__name__, exc)
        results: list = []
        for request in live:
            try:
                results.extend(classifier.predict([request], batch_size=1))
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


@dataclass(slots=True)
class _Served:
    """One batch's view of what is served: the classifier and the heads, read together."""

    classifier: Classifier
    heads: dict[int, Head]

    def heads_of(self, requests: Sequence[_Request]) -> list[Head | None] | None:
        if not self.heads:
            return None
        return [self.heads.get(r.key) if r.key is not None else None for r in requests]

    def predict_batches(self, requests: Sequence[_Request], batch_size: int):
        return self.classifier.predict_batches([r.text for r in requests], batch_size, self.heads_of(requests))

    def predict(self, requests: Sequence[_Request], batch_size: int) -> list:
        return self.classifier.predict([r.text for r in requests], batch_size, self.heads_of(requests))


def _deliver(items: list) -> None:
    """Runs on the caller's loop: resolve each future unless its caller gave up."""
    for future, result in items:
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
