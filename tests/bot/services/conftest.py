"""Services under test with a real SQLite store and a stand-in worker: no Discord, no model."""

from __future__ import annotations

import dataclasses

import pytest
import pytest_asyncio

from bot.services import Services
from bot.settings import Settings
from bot.store import Store
from model.classifier import Prediction
from model.labels import SEED13


class FakeWorker:
    """What the services use of the inference worker: ``classify``, ``classifier``, ``swap``, ``max_pending``.

    ``answer`` is the label every text gets (probability ``score``); ``before_answer`` runs while
    the "model" is busy, to test what happens meanwhile.
    """

    max_pending = 8

    def __init__(self, label: str = "happiness", score: float = 0.9) -> None:
        self.label, self.score = label, score
        self.classifier = FakeClassifier("base")
        self.before_answer = None
        self.texts: list[str] = []
        self.heads: dict = {}

    async def classify(self, text: str, key: int | None = None) -> Prediction:
        self.texts.append(text)
        if self.before_answer is not None:
            await self.before_answer()
        scores = {lb: (self.score if lb == self.label else (1 - self.score) / 12) for lb in SEED13}
        return Prediction(self.label, self.score, scores, (self.label,), self.classifier.version)

    def swap(self, classifier, heads=None) -> None:
        self.classifier = classifier
        self.heads = dict(heads or {})

    def set_head(self, key, head) -> None:
        self.heads = {**self.heads, key: head} if head is not None else \
            {k: v for k, v in self.heads.items() if k != key}


@dataclasses.dataclass
class FakeClassifier:
    version: str
    source: str = "tiny"
    device: str = "cpu"
    labels: tuple[str, ...] = SEED13


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(db_path=tmp_path / "bot.db", models_dir=tmp_path / "models", device="cpu", quantize="none",
                    min_corrections=3, training_threads=1)


@pytest_asyncio.fixture
async def store(settings):
    store = await Store.open(settings.db_path, flush_interval=0.01)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def worker() -> FakeWorker:
    return FakeWorker()


@pytest.fixture
def services(settings, store, worker) -> Services:
    return Services.build(settings, store, worker)
