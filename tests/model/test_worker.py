"""The inference thread under concurrency, swap, failure and close."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from model.classifier import Classifier
from model.worker import InferenceWorker, WorkerClosed
from tests.helpers.tiny import WORDS, build_tiny_model


def _texts(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, 30))) for _ in range(n)]


async def test_hundreds_of_concurrent_calls_each_get_their_own_answer(tiny_classifier):
    texts = _texts(400)
    expected = tiny_classifier.predict(texts)
    worker = InferenceWorker(tiny_classifier, max_batch=16, max_wait=0.002).start()
    try:
        got = await asyncio.gather(*(worker.classify(t) for t in texts))
    finally:
        await worker.close()
    for e, g in zip(expected, got):
        assert g.label == e.label
        assert g.score == pytest.approx(e.score, abs=1e-5)
    assert worker.processed == 400
    assert worker.batches < 400, "requests that arrive together must share batches"


async def test_classify_many_and_bounded_pending(tiny_classifier):
    worker = InferenceWorker(tiny_classifier, max_pending=8).start()
    try:
        in_flight = 0
        peak = 0

        async def one(t):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, worker.pending())
            try:
                return await worker.classify(t)
            finally:
                in_flight -= 1

        await asyncio.gather(*(one(t) for t in _texts(100)))
        assert peak <= 8
        many = await worker.classify_many(["i am so happy", "sad"])
        assert [p.label for p in many] == [p.label for p in tiny_classifier.predict(["i am so happy", "sad"])]
    finally:
        await worker.close()


async def test_swap_under_load_fails_no_request(tmp_path, tiny_classifier):
    other = Classifier.load(build_tiny_model(tmp_path / "other", seed=5), device="cpu", version="v2")
    texts = _texts(300, seed=3)
    worker = InferenceWorker(tiny_classifier, max_batch=8, max_drain=16).start()
    try:
        tasks = [asyncio.create_task(worker.classify(t)) for t in texts]
        await asyncio.sleep(0)
        old = worker.swap(other)
        results = await asyncio.gather(*tasks)
    finally:
        await worker.close()
    assert old is tiny_classifier
    versions = {r.version for r in results}
    assert versions <= {tiny_classifier.version, "v2"} and "v2" in versions
    by_text = dict(zip(texts, results))
    for text, r in by_text.items():
        model = other if r.version == "v2" else tiny_classifier
        assert r.label == model.predict([text])[0].label


class _Flaky:
    """Wraps a classifier; fails any batch that contains the word 'boom'."""

    def __init__(self, inner):
        self.inner = inner
        self.version = inner.version

    def predict(self, texts, batch_size=32, heads=None):
        if any("boom" in t for t in texts):
            raise RuntimeError("bad batch")
        return self.inner.predict(texts, batch_size)

    def encode(self, texts):
        return self.inner.encode(texts)

    def predict_batches(self, texts, batch_size=32, heads=None):
        for start in range(0, len(texts), batch_size):  # arrival order: the failing batch is predictable
            indices = list(range(start, min(start + batch_size, len(texts))))
            yield indices, self.predict([texts[i] for i in indices], batch_size)


async def test_a_failing_batch_fails_only_its_own_requests(tiny_classifier):
    worker = InferenceWorker(_Flaky(tiny_classifier), max_batch=1).start()
    try:
        results = await asyncio.gather(worker.classify("happy"), worker.classify("boom"),
                                       worker.classify("sad"), return_exceptions=True)
        assert isinstance(results[1], RuntimeError)
        assert results[0].label and results[2].label
        assert worker.alive
        assert (await worker.classify("still alive")).label
    finally:
        await worker.close()


async def test_cancelled_caller_does_not_break_the_worker(tiny_classifier):
    worker = InferenceWorker(tiny_classifier).start()
    try:
        task = asyncio.create_task(worker.classify("i am so happy"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await worker.classify("ok")).label
    finally:
        await worker.close()


async def test_close_finishes_queued_work_then_refuses(tiny_classifier):
    worker = InferenceWorker(tiny_classifier).start()
    tasks = [asyncio.create_task(worker.classify(t)) for t in _texts(50)]
    await asyncio.sleep(0)
    await worker.close()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(not isinstance(d, Exception) or isinstance(d, WorkerClosed) for d in done)
    assert sum(not isinstance(d, Exception) for d in done) > 0
    assert not worker.alive
    with pytest.raises(WorkerClosed):
        await worker.classify("late")
    await worker.close()  # idempotent


async def test_the_loop_thread_never_runs_the_model(tiny_classifier):
    seen = []

    class Spy:
        version = "spy"

        def predict_batches(self, texts, batch_size=32, heads=None):
            seen.append(threading.current_thread().name)
            return tiny_classifier.predict_batches(texts, batch_size)

    worker = InferenceWorker(Spy()).start()
    try:
        await worker.classify("hello")
    finally:
        await worker.close()
    assert seen == ["inference-worker"]


async def test_a_lone_surrogate_fails_neither_its_batch_nor_itself(tiny_classifier):
    """A hostile text the tokenizer cannot encode used to fail all 21 requests of its batch."""
    texts = [*_texts(10, seed=7), "bad \ud800 text", *_texts(10, seed=8)]
    worker = InferenceWorker(tiny_classifier, max_batch=len(texts), max_wait=1.0).start()
    try:
        results = await asyncio.gather(*(worker.classify(t) for t in texts), return_exceptions=True)
    finally:
        await worker.close()
    assert worker.batches == 1, "the 21 requests must have shared one batch"
    assert not [r for r in results if isinstance(r, BaseException)]
    good = [t for t in texts if "\ud800" not in t]
    for text, r in zip(good, [r for t, r in zip(texts, results) if "\ud800" not in t]):
        assert r.label == tiny_classifier.predict([text])[0].label


async def test_a_text_that_fails_only_alone_fails_only_its_own_request(tiny_classifier):
    """Whatever makes a batch fail, the worker retries each text alone: one bad text, one error."""
    texts = [*_texts(10, seed=7), "boom", *_texts(10, seed=8)]
    worker = InferenceWorker(_Flaky(tiny_classifier), max_batch=len(texts), max_wait=1.0).start()
    try:
        results = await asyncio.gather(*(worker.classify(t) for t in texts), return_exceptions=True)
    finally:
        await worker.close()
    failed = [t for t, r in zip(texts, results) if isinstance(r, BaseException)]
    assert failed == ["boom"]
    assert all(r.label for r in results if not isinstance(r, BaseException))


# --------------------------------------------------------------------------- draining


class _Gated:
    """Wraps a classifier: the first pass waits for ``opened``; records each call's number of texts."""

    def __init__(self, inner):
        self.inner = inner
        self.version = inner.version
        self.opened = threading.Event()
        self.calls: list[int] = []
        self.widths: list[list[list[int]]] = []  # per call, the token lengths of each forward pass

    def predict(self, texts, batch_size=32, heads=None):
        return self.inner.predict(texts, batch_size)

    def predict_batches(self, texts, batch_size=32, heads=None):
        assert self.opened.wait(30), "the test never opened the gate"
        self.calls.append(len(texts))
        self.widths.append([])
        for indices, predictions in self.inner.predict_batches(texts, batch_size):
            self.widths[-1].append([len(self.inner.encode([texts[i]])[0]) for i in indices])
            yield indices, predictions


async def _queued_behind_a_gate(worker: InferenceWorker, gated: _Gated, texts: list[str]) -> list[asyncio.Task]:
    """One request occupies the worker at the gate; then ``texts`` are queued behind it."""
    first = asyncio.create_task(worker.classify("hello there"))
    await asyncio.sleep(0)
    while worker.pending():
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)  # well past max_wait: the worker is at the gate with "hello there" alone
    tasks = [asyncio.create_task(worker.classify(t)) for t in texts]
    await asyncio.sleep(0.05)  # all of them put on the queue
    return [first, *tasks]


async def test_what_waits_is_drained_and_run_as_length_sorted_batches(tiny_classifier):
    """A backlog is taken in one go (not max_batch at a time in arrival order) and cut into batches by length."""
    gated = _Gated(tiny_classifier)
    texts = _texts(200, seed=11)
    worker = InferenceWorker(gated, max_batch=16, max_wait=0.001).start()
    try:
        tasks = await _queued_behind_a_gate(worker, gated, texts)
        gated.opened.set()
        results = await asyncio.gather(*tasks)
    finally:
        await worker.close()
    assert gated.calls == [1, 200], "the backlog must be taken in one go"
    expected = tiny_classifier.predict(texts)
    assert [r.label for r in results[1:]] == [e.label for e in expected]
    passes = gated.widths[1]
    assert [len(w) for w in passes] == [16] * 12 + [8]
    for a, b in zip(passes, passes[1:]):
        assert max(a) <= min(b), "batches must be cut from the backlog sorted by length"
    arrival = [[len(t) for t in tiny_classifier.encode(texts[i:i + 16])] for i in range(0, 200, 16)]
    assert sum(max(w) - min(w) for w in passes) < sum(max(w) - min(w) for w in arrival) / 2


async def test_max_drain_equal_to_max_batch_is_the_old_arrival_order_worker(tiny_classifier):
    gated = _Gated(tiny_classifier)
    worker = InferenceWorker(gated, max_batch=16, max_drain=16, max_wait=0.001).start()
    try:
        tasks = await _queued_behind_a_gate(worker, gated, _texts(100, seed=12))
        gated.opened.set()
        await asyncio.gather(*tasks)
    finally:
        await worker.close()
    assert max(gated.calls) <= 16


async def test_each_batch_is_answered_as_soon_as_it_is_done(tiny_classifier):
    """The shortest texts of a drained backlog get their answers before the longest have run."""
    release = threading.Event()

    class Slow(_Gated):
        def predict_batches(self, texts, batch_size=32, heads=None):
            for n, item in enumerate(super().predict_batches(texts, batch_size)):
                if n == 1:
                    assert release.wait(30)
                yield item

    slow = Slow(tiny_classifier)
    short, long = ["ok"] * 8, [" ".join(["happy"] * 40)] * 40
    worker = InferenceWorker(slow, max_batch=8, max_wait=0.001).start()
    try:
        tasks = await _queued_behind_a_gate(worker, slow, long + short)
        slow.opened.set()
        short_tasks = tasks[-8:]
        await asyncio.wait_for(asyncio.gather(*short_tasks), 30)  # answered while the long ones wait
        assert not any(t.done() for t in tasks[1:41]), "the long texts cannot have run yet"
        release.set()
        await asyncio.gather(*tasks)
    finally:
        release.set()
        await worker.close()


async def test_a_failure_in_a_drained_backlog_fails_only_its_own_text(tiny_classifier):
    flaky = _Flaky(tiny_classifier)
    gated = _Gated(flaky)
    texts = [*_texts(60, seed=7), "boom", *_texts(60, seed=8)]
    worker = InferenceWorker(gated, max_batch=8, max_wait=0.001).start()
    try:
        tasks = await _queued_behind_a_gate(worker, gated, texts)
        gated.opened.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await worker.close()
    failed = [t for t, r in zip(["hello there", *texts], results) if isinstance(r, BaseException)]
    assert failed == ["boom"]
    assert max(gated.calls) > 8


def test_a_lone_request_waits_at_most_max_wait_and_a_backlog_not_at_all(tiny_classifier):
    """_gather: alone, it returns after max_wait with one request; with a queue it never waits for more."""
    import time

    lonely = InferenceWorker(tiny_classifier, max_batch=64, max_wait=0.05)
    started = time.monotonic()
    batch, stopping = lonely._gather("first")
    assert batch == ["first"] and not stopping
    assert time.monotonic() - started >= 0.05

    busy = InferenceWorker(tiny_classifier, max_batch=8, max_drain=50, max_wait=60.0)
    for n in range(100):
        busy._queue.put(n)
    started = time.monotonic()
    batch, _ = busy._gather("first")
    assert batch == ["first", *range(49)] and time.monotonic() - started < 30  # max_wait (60 s) was not waited
    assert busy.pending() == 51


def test_predict_batches_covers_every_text_once_shortest_first(tiny_classifier):
    texts = _texts(70, seed=4)
    seen: list[int] = []
    widths: list[int] = []
    for indices, predictions in tiny_classifier.predict_batches(texts, batch_size=16):
        assert len(indices) == len(predictions) <= 16
        seen += indices
        widths += [len(tiny_classifier.encode([texts[i]])[0]) for i in indices]
    assert sorted(seen) == list(range(70))
    assert widths == sorted(widths)
    assert [p.label for p in tiny_classifier.predict(texts)] == \
        [p.label for p in tiny_classifier.predict(texts, batch_size=1)]
