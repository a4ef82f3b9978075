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


# --------------------------------------------------------------------------- PostgreSQL

_pg_skipped: list[str] = []
_pg_tests: set[str] = set()  # the tests that used the server (for the summary line)
_pg_version: list[str] = []


@pytest.fixture(scope="session")
def pg_server():
    """One real PostgreSQL server for the session (tests.helpers.postgres), started by the first test that needs it.

    Where PostgreSQL is not installed the tests that need it are skipped, and the summary says so in one
    line; with REQUIRE_POSTGRES_TESTS=1 (CI) they fail instead.
    """
    from tests.helpers import postgres

    reason = postgres.missing_reason()
    if reason:
        if os.environ.get(postgres.REQUIRE) == "1":
            pytest.fail(f"{reason}, and {postgres.REQUIRE}=1 says they must run")
        _pg_skipped.append(reason)
        pytest.skip(reason)
    with postgres.server() as srv:
        _pg_version.append(postgres.version())
        yield srv


@pytest.fixture
def pg_url(pg_server, request):
    """A fresh empty database on the session's server, named after the test."""
    import re
    import uuid

    from tests.helpers import postgres

    _pg_tests.add(request.node.nodeid)
    name = re.sub(r"\W", "_", request.node.name)[:40] + "_" + uuid.uuid4().hex[:6]
    return postgres.new_database(pg_server, name.lower())


def pytest_runtest_setup(item):
    if "pg_server" in getattr(item, "fixturenames", ()):
        _pg_tests.add(item.nodeid)


def pytest_terminal_summary(terminalreporter):
    """One line on the PostgreSQL tests: how many ran against a real server, or why they were skipped."""
    if _pg_skipped:
        skipped = sum(1 for r in terminalreporter.stats.get("skipped", []) if _pg_skipped[0] in str(r.longrepr))
        terminalreporter.write_line(f"{_pg_skipped[0]} ({skipped} tests)", yellow=True)
        return
    passed = sum(1 for r in terminalreporter.stats.get("passed", []) if r.nodeid in _pg_tests and r.when == "call")
    if _pg_tests:
        failed = len({r.nodeid for r in terminalreporter.stats.get("failed", []) if r.nodeid in _pg_tests})
        terminalreporter.write_line(f"PostgreSQL: {passed} tests passed, {failed} failed, against a real server "
                                    f"({''.join(_pg_version) or 'PostgreSQL'}; initdb in a temporary folder, "
                                    "127.0.0.1)")
