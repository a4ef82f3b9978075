from __future__ import annotations

import os

import pytest
import pytest_asyncio

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.helpers.tiny import build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """One tiny seed-13 model folder for the whole session (read-only by convention)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_classifier(tiny_model_dir):
    from model.classifier import Classifier

    return Classifier.load(tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def happy_model_dir(tmp_path_factory):
    """A tiny seed-13 model that says 'happiness' (p≈1) for everything: reactions are predictable."""
    return build_tiny_model(tmp_path_factory.mktemp("happy") / "model", confident="happiness", word_std=0.5)


@pytest.fixture(scope="session")
def happy_classifier(happy_model_dir):
    from model.classifier import Classifier

    return Classifier.load(happy_model_dir, device="cpu", version="base")


@pytest.fixture
def bot_settings(tmp_path):
    from bot.settings import Settings

    return Settings(token="", db_path=tmp_path / "bot.db", models_dir=tmp_path / "models", quantize="none",
                    device="cpu", min_corrections=3)


@pytest.fixture
def simcord_bot(bot_settings, happy_classifier):
    from bot.client import EmotionBot

    return EmotionBot(bot_settings, happy_classifier, store_options={"flush_interval": 0.01})


@pytest_asyncio.fixture
async def simcord_env(simcord_bot, request):
    """simcord's own fixture, plus closing the bot (see :func:`tests.helpers.worlds.running`)."""
    import simcord

    marker = request.node.get_closest_marker("simcord")
    env = simcord.Env(simcord_bot, **(marker.kwargs if marker else {}))
    await env.start()
    try:
        yield env
    finally:
        await env.shutdown()
        await simcord_bot.close()
        if env.check_errors:
            env._raise_errors_since(env._errors_acknowledged)
