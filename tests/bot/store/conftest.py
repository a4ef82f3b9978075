"""The store tests run against both backends: ``backend`` is "sqlite" or "postgresql", ``target`` what opens it.

Portable peeks and faults go through :mod:`tests.bot.store.backends`; tests of one backend's own
machinery (SQLite's PRAGMAs and file recovery, PostgreSQL's pool) take no ``backend``.
"""

from __future__ import annotations

import pytest

from bot.store import open_store

LABELS = ("anger", "joy", "sadness", "neutral")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def target(backend, tmp_path, request) -> str:
    """Where the test's database lives: a SQLite file, or a new database on the session's PostgreSQL."""
    if backend == "sqlite":
        return str(tmp_path / "db" / "bot.sqlite3")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def opener(target):
    """``await opener(**options)``: a store on the test's database (again and again, like restarts)."""

    async def open_(**options):
        return await open_store(target, **options)

    return open_
