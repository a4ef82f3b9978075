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
    worker = InferenceWorker(tiny_classifier, max_batch=8).start()
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

    def predict(self, texts, batch_size=32):
        if any("boom" in t for t in texts):
            raise RuntimeError("bad batch")
        return self.inner.predict(texts, batch_size)


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

        def predict(self, texts, batch_size=32):
            seen.append(threading.current_thread().name)
            return tiny_classifier.predict(texts, batch_size)

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
