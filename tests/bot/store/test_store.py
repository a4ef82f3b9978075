"""Tests for bot.store: schema/migrations, every query, bad input and database failures.

Tests taking ``store``, ``target`` or ``opener`` run on both backends (tests/bot/store/conftest.py);
the others test SQLite's own machinery (PRAGMAs, files, its migrations from V1).
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
from pathlib import Path

import pytest

from bot.store import (
    SCHEMA_VERSION,
    Correction,
    GuildSettings,
    PredictionRow,
    Store,
    StoreError,
    StoreProtocol,
    UnknownLabel,
    emotion_counts_query,
    migrations,
    open_store,
    run_retention,
    split_sql,
)
from bot.store.schema import postgres_migrations
from tests.bot.store.backends import columns, count, execute, locked_by_another, peek, refreshed, writes_fail

LABELS = ("anger", "joy", "sadness", "neutral")
DAY = 86_400.0
T0 = 1_700_006_400.0  # 2023-11-15 00:00:00 UTC

WEIRD_TEXTS = [
    "nul\x00inside\x00",
    "x" * 4_500,
    "emoji 😀🔥👩‍👩‍👧 and ZWJ",
    "مرحبا بالعالم \u202eRTL override\u202c עברית",
    'quotes "double", \'single\', comma, and\nnewline\r\nCRLF',
    "line\u2028separator and tab\t",
]


@pytest.fixture
async def store(opener):
    s = await opener(labels=LABELS, flush_interval=0.05)
    yield s
    await s.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path):
    s = await Store.open(tmp_path / "db" / "bot.sqlite3", labels=LABELS, flush_interval=0.05)
    yield s
    await s.close()


def raw(path: Path | str) -> sqlite3.Connection:
    """A plain sqlite3 connection for looking behind the Store's back."""
    return sqlite3.connect(path, isolation_level=None, timeout=5)


def schema_at(path: Path, version: int) -> sqlite3.Connection:
    """A database built by this build's first ``version`` migrations, as an older bot left it."""
    con = raw(path)
    for v, _, sql in migrations()[:version]:
        for statement in split_sql(sql):
            con.execute(statement)
        con.execute(f"PRAGMA user_version = {v}")
    return con


def pred(message_id: int, *, label: str = "joy", guild: int | None = 1, channel: int = 10,
         author: int = 100, at: float = T0, p: float = 0.9) -> PredictionRow:
    return PredictionRow(guild_id=guild, channel_id=channel, message_id=message_id,
                         author_id=author, label=label, probability=p, model_version="v1",
                         created_at=at)


def corr(text: str, label: str, *, message: int | None = 1, corrector: int | None = 7,
         author: int | None = 100, guild: int | None = 1, at: float | None = None,
         source: str = "discord") -> Correction:
    return Correction(text=text, label=label, guild_id=guild, channel_id=10, message_id=message,
                      author_id=author, corrector_id=corrector, predicted_label="neutral",
                      model_version="v1", source=source, created_at=at)


async def wait_for(predicate, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- schema


async def test_fresh_database_has_latest_schema_and_pragmas(sqlite_store: Store):
    db = sqlite_store._db
    assert (await db.execute_fetchall("PRAGMA user_version"))[0][0] == SCHEMA_VERSION
    assert (await db.execute_fetchall("PRAGMA journal_mode"))[0][0] == "wal"
    assert (await db.execute_fetchall("PRAGMA foreign_keys"))[0][0] == 1
    assert (await db.execute_fetchall("PRAGMA synchronous"))[0][0] == 1  # NORMAL
    tables = {r[0] for r in await db.execute_fetchall("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"predictions", "corrections", "guild_settings",
            "guild_channels", "opted_out_users"} <= tables
    assert "model_versions" not in tables  # model.registry owns model versions (V5)
    cols = {r[1] for r in await db.execute_fetchall("PRAGMA table_info(predictions)")}
    assert "text" not in cols  # predictions never keep message text


async def test_both_backends_reach_the_same_schema(tmp_path: Path, pg_url: str):
    """PostgreSQL's baseline and SQLite's V1..V8 end with the same tables and columns, at the same version."""
    sqlite, postgres = await open_store(str(tmp_path / "s.db")), await open_store(pg_url)
    try:
        assert type(postgres).__name__ == "PostgresStore" and postgres.dialect == "postgresql"
        expected = await columns(sqlite)
        # PostgreSQL's own: the schema's version, and the bot-wide REST budget its processes share
        assert await columns(postgres) == {**expected, "schema_version": {"version"},
                                           "rest_budget": {"name", "tokens", "updated_at"}}
        assert (await peek(postgres, "SELECT version FROM schema_version")) == [(SCHEMA_VERSION,)]
        assert [v for v, _, _ in postgres_migrations()][-1] == SCHEMA_VERSION
        assert "text" not in expected["predictions"]  # predictions never keep message text
    finally:
        await sqlite.close()
        await postgres.close()
    again = await open_store(pg_url)  # reopening applies nothing and keeps the version
    assert (await peek(again, "SELECT count(*), max(version) FROM schema_version")) == [(1, SCHEMA_VERSION)]
    await again.close()


def test_migrations_are_numbered_and_split():
    versions = [v for v, _, _ in migrations()]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    assert SCHEMA_VERSION >= 2
    assert split_sql("CREATE TABLE a (x TEXT DEFAULT ';'); -- c\nCREATE TRIGGER t AFTER INSERT ON a "
                     "BEGIN DELETE FROM a; END;\n-- trailing comment\n") == [
        "CREATE TABLE a (x TEXT DEFAULT ';');",
        "-- c\nCREATE TRIGGER t AFTER INSERT ON a BEGIN DELETE FROM a; END;",
    ]
    with pytest.raises(ValueError):
        split_sql("CREATE TABLE a (x)")


@pytest.mark.parametrize("start", range(0, SCHEMA_VERSION))
async def test_migrates_from_every_earlier_version(tmp_path: Path, start: int):
    path = tmp_path / "old.sqlite3"
    con = schema_at(path, start)
    if start >= 1:
        con.execute("INSERT INTO predictions VALUES (5, 1, 10, 100, 'joy', 0.8, 'v0', ?)", (T0,))
        con.execute("INSERT INTO corrections (message_id, corrector_id, label, text, created_at) "
                    "VALUES (5, 7, 'anger', 'kept text', ?)", (T0,))
    con.close()

    s = await Store.open(path, labels=LABELS)
    try:
        assert (await s._db.execute_fetchall("PRAGMA user_version"))[0][0] == SCHEMA_VERSION
        indexes = {r[0] for r in await s._db.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='predictions'")}
        assert {"predictions_guild_day", "predictions_channel_day",
                "predictions_author_day", "predictions_created"} <= indexes
        if start >= 1:
            assert (await s.get_prediction(5)).label == "joy"
            assert await s.corrections_for_training() == [("kept text", "anger")]
    finally:
        await s.close()
    # Reopening an up-to-date database applies nothing and keeps data.
    s = await Store.open(path)
    assert (await s.stats())["predictions"] == (1 if start >= 1 else 0)
    await s.close()


async def test_v4_migration_keeps_one_copy_of_each_imported_example(tmp_path: Path):
    path = tmp_path / "v3.sqlite3"
    con = schema_at(path, 3)
    rows = [("same", "joy", "import"), ("same", "joy", "import"), ("same", "anger", "import"),
            ("same", "joy", "shell"), ("same", "joy", "shell")]
    con.executemany("INSERT INTO corrections (label, text, source, created_at) VALUES (?, ?, ?, ?)",
                    [(label, text, source, T0 + i) for i, (text, label, source) in enumerate(rows)])
    con.close()
    s = await Store.open(path, labels=LABELS)
    try:
        left = await s._db.execute_fetchall("SELECT id, label, source FROM corrections ORDER BY id")
        assert list(left) == [(1, "joy", "import"), (3, "anger", "import"), (4, "joy", "shell"), (5, "joy", "shell")]
        assert await s.add_examples([corr("same", "joy", message=None, corrector=None, source="import")]) == 0
    finally:
        await s.close()


async def test_v5_migration_drops_model_versions_and_keeps_the_rest(tmp_path: Path):
    path = tmp_path / "v4.sqlite3"
    con = schema_at(path, 4)
    con.executemany("INSERT INTO model_versions (version, path, created_at, is_current) VALUES (?, ?, ?, ?)",
                    [("v1", "models/v1", T0, 0), ("v2", "models/v2", T0 + 1, 1)])
    con.execute("INSERT INTO predictions VALUES (5, 1, 10, 100, 'joy', 0.8, 'v2', ?)", (T0,))
    con.execute("INSERT INTO corrections (message_id, corrector_id, label, text, created_at) "
                "VALUES (5, 7, 'anger', 'kept text', ?)", (T0,))
    con.execute("INSERT INTO opted_out_users VALUES (42, ?)", (T0,))
    con.execute("INSERT INTO guild_settings (guild_id, enabled, threshold) VALUES (1, 0, 0.7)")
    con.execute("INSERT INTO guild_channels VALUES (1, 'deny', 10)")
    before = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}
    con.close()
    assert {"model_versions", "model_versions_one_current"} <= before

    s = await Store.open(path, labels=LABELS)
    try:
        assert (await s._db.execute_fetchall("PRAGMA user_version"))[0][0] == SCHEMA_VERSION
        after = {name for (name,) in await s._db.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}
        v7 = {"review_queue", "review_queue_guild", "review_queue_author", "review_queue_created"}  # /review's queue
        v8 = {"guild_departures", "corrections_guild"}  # servers the bot left; a server's corrections
        assert after == (before - {"model_versions", "model_versions_one_current"}) | v7 | v8
        assert await s.get_prediction(5) == PredictionRow(1, 10, 5, 100, "joy", 0.8, "v2", T0)
        assert await s.corrections_for_training() == [("kept text", "anger")]
        assert await s.is_opted_out(42)
        assert await s.get_guild_settings(1) == GuildSettings(enabled=False, threshold=0.7,
                                                              denied_channels=frozenset({10}))
        assert set(await s.stats()) == {"predictions", "corrections", "training_examples",
                                        "opted_out_users", "buffered_predictions"}
    finally:
        await s.close()


async def test_newer_schema_is_refused(tmp_path: Path):
    path = tmp_path / "new.sqlite3"
    con = raw(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer") as info:
        await Store.open(path)
    assert info.value.reason == "newer"


async def test_newer_schema_is_refused_on_postgresql(pg_url: str):
    s = await open_store(pg_url)
    await execute(s, f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}")
    await s.close()
    with pytest.raises(StoreError, match="newer") as info:
        await open_store(pg_url)
    assert info.value.reason == "newer"


async def test_failed_migration_rolls_back_on_postgresql(pg_url: str, monkeypatch):
    import bot.store.postgres as pg_mod

    s = await open_store(pg_url)
    await s.close()
    steps = postgres_migrations() + ((SCHEMA_VERSION + 1, "broken", "CREATE TABLE ok_table (x int); NOT SQL;"),)
    monkeypatch.setattr(pg_mod, "postgres_migrations", lambda: steps)
    monkeypatch.setattr(pg_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="migrate"):
        await open_store(pg_url)
    monkeypatch.undo()
    s = await open_store(pg_url)
    try:
        assert await peek(s, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
        assert await peek(s, "SELECT to_regclass('ok_table') IS NULL") == [(True,)]
    finally:
        await s.close()


async def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch):
    import bot.store.schema as store_mod  # the runner reads the migrations from here

    broken = migrations() + ((SCHEMA_VERSION + 1, "broken", "CREATE TABLE ok_table (x);\nNOT SQL;"),)
    monkeypatch.setattr(store_mod, "migrations", lambda: broken)
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    path = tmp_path / "m.sqlite3"
    with pytest.raises(StoreError, match="V3__broken|migration"):
        await Store.open(path)
    con = raw(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE name='ok_table'").fetchone()[0] == 0
    con.close()


# --------------------------------------------------------------------------- predictions


async def wait_for_rows(store, table: str, n: int, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await count(store, table) != n:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{table} never reached {n} rows")
        await asyncio.sleep(0.01)


async def test_buffered_prediction_visible_then_flushed_in_batch(opener):
    s = await opener(flush_interval=60, batch_size=10)
    try:
        await s.record_prediction(pred(1, label="anger"))
        assert (await s.get_prediction(1)).label == "anger"  # from the buffer
        assert await count(s, "predictions") == 0
        for i in range(2, 11):  # the 10th row fills the batch and wakes the flusher
            await s.record_prediction(pred(i))
        await wait_for_rows(s, "predictions", 10)
        assert s.buffered == 0
        assert await s.get_prediction(1) == pred(1, label="anger")  # from the database
        assert await s.get_prediction(999) is None
    finally:
        await s.close()


async def test_interval_flush_and_close_flush(opener):
    s = await opener(flush_interval=0.05, batch_size=1000)
    await s.record_prediction(pred(1))
    await wait_for_rows(s, "predictions", 1)
    await s.close()

    s = await opener(flush_interval=60)
    await s.record_prediction(pred(2))
    await s.close()  # must flush
    s = await opener()
    assert await count(s, "predictions") == 2
    await s.close()


async def test_a_batch_being_written_is_still_seen_by_reads(store: Store, monkeypatch):
    """PostgreSQL's reads do not wait for the write lock: a row on its way to the database is read from the batch."""
    original = store._transaction_locked
    writing = asyncio.Event()

    async def slow(action, body):
        writing.set()
        await asyncio.sleep(0.3)
        return await original(action, body)

    monkeypatch.setattr(store, "_transaction_locked", slow)
    await store.record_prediction(pred(1, label="anger"))
    flushing = asyncio.create_task(store.flush())
    await writing.wait()
    assert store.buffered == 0  # taken out of the buffer, not committed yet
    assert (await store.get_prediction(1)).label == "anger"
    assert await store.label_counts() == {"anger": 1}
    assert await flushing == 1


async def test_prediction_replaced_on_same_message(store: Store):
    await store.record_prediction(pred(1, label="joy"))
    await store.flush()
    await store.record_prediction(pred(1, label="anger", p=0.4))
    await store.record_prediction(pred(1, label="sadness", p=0.3))  # replaces within the buffer
    assert await store.flush() == 1
    row = await store.get_prediction(1)
    assert (row.label, row.probability) == ("sadness", 0.3)
    assert (await store.stats())["predictions"] == 1


async def test_bad_prediction_rejected_immediately(store: Store):
    with pytest.raises(ValueError):
        await store.record_prediction(pred(1, p=math.nan))
    with pytest.raises(ValueError):
        await store.record_prediction(pred(2, label=""))
    with pytest.raises((TypeError, ValueError)):
        await store.record_prediction(PredictionRow(1, None, 3, 4, "joy", 0.5))  # type: ignore[arg-type]
    assert store.buffered == 0


async def test_delete_prediction_and_by_author(store: Store):
    await store.record_prediction(pred(1, author=5))
    await store.flush()
    await store.record_prediction(pred(2, author=5))  # still buffered
    await store.record_prediction(pred(3, author=6))
    assert await store.delete_prediction(1) is True
    assert await store.delete_prediction(1) is False
    assert await store.delete_predictions_for_author(5) == 1
    await store.flush()
    assert await store.get_prediction(2) is None
    assert (await store.get_prediction(3)).author_id == 6


# --------------------------------------------------------------------------- corrections


async def test_correction_upsert_majority_and_ties(store: Store):
    # Same user twice on message 1: the later replaces the earlier.
    await store.add_correction(corr("m1", "anger", corrector=7, at=T0))
    await store.add_correction(corr("m1", "joy", corrector=7, at=T0 + 1))
    assert await peek(store, "SELECT label FROM corrections WHERE message_id = 1") == [("joy",)]
    # Majority: two sadness vs one joy.
    await store.add_correction(corr("m1", "sadness", corrector=8, at=T0 + 2))
    await store.add_correction(corr("m1", "sadness", corrector=9, at=T0 + 3))
    # Tie on message 2: the most recent vote wins.
    await store.add_correction(corr("m2", "anger", message=2, corrector=7, at=T0 + 10))
    await store.add_correction(corr("m2", "joy", message=2, corrector=8, at=T0 + 11))
    # Imports: one example per distinct (text, label); a repeat adds nothing.
    imp = [corr("imp", "neutral", message=None, corrector=None, source="import", at=T0 + 20),
           corr("imp", "neutral", message=None, corrector=None, source="import", at=T0 + 21),
           corr("imp", "joy", message=None, corrector=None, source="import", at=T0 + 22)]
    assert await store.add_examples(imp) == 2
    assert await store.add_examples(imp[:1]) == 0
    examples = await store.corrections_for_training()
    assert examples == [("m1", "sadness"), ("m2", "joy"), ("imp", "neutral"), ("imp", "joy")]
    assert await store.count_corrections() == 4
    # A later vote flips the tie on message 2.
    await store.add_correction(corr("m2", "anger", message=2, corrector=9, at=T0 + 30))
    assert ("m2", "anger") in await store.corrections_for_training()


async def test_training_filters_since_and_guild(store: Store):
    await store.add_correction(corr("old", "joy", message=1, at=T0))
    await store.add_correction(corr("new", "anger", message=2, at=T0 + 100, guild=2))
    await store.add_correction(corr("old-reopened", "joy", message=3, corrector=7, at=T0))
    await store.add_correction(corr("old-reopened", "sadness", message=3, corrector=8, at=T0 + 100))
    await store.add_correction(corr("sadness again", "sadness", message=3, corrector=9, at=T0 + 101))
    since = await store.corrections_for_training(since=T0 + 50)
    # Message 3 is included (recent vote) and resolved over all three votes.
    assert since == [("new", "anger"), ("sadness again", "sadness")]
    assert await store.count_corrections(since=T0 + 50) == 2
    assert await store.corrections_for_training(guild_id=2) == [("new", "anger")]
    assert await store.count_corrections(guild_id=1) == 2


async def test_correction_validation(store: Store):
    with pytest.raises(UnknownLabel) as info:
        await store.add_correction(corr("text", "happy"))
    assert isinstance(info.value, ValueError)
    assert "'happy'" in str(info.value) and "anger, joy, sadness, neutral" in str(info.value)
    with pytest.raises(ValueError, match="empty"):
        await store.add_correction(corr("   ", "joy"))
    with pytest.raises(ValueError, match="source"):
        await store.add_correction(corr("t", "joy", source="web"))
    # add_examples validates everything first: nothing is written.
    with pytest.raises(UnknownLabel):
        await store.add_examples([corr("ok", "joy", message=None), corr("bad", "nope", message=None)])
    assert (await store.stats())["corrections"] == 0


async def test_any_label_accepted_without_label_list(opener):
    s = await opener()
    await s.add_correction(corr("t", "whatever"))
    assert await s.corrections_for_training() == [("t", "whatever")]
    await s.close()


async def test_weird_text_round_trips_intact(opener):
    s = await opener(labels=LABELS)
    for i, text in enumerate(WEIRD_TEXTS):
        await s.add_correction(corr(text, "joy", message=i + 1, at=T0 + i))
    await s.close()
    s = await opener(labels=LABELS)
    got = [t for t, _ in await s.corrections_for_training()]
    await s.close()
    # Intact except NUL, which every backend stores as U+FFFD (PostgreSQL's text cannot hold it)
    assert got == [t.replace("\x00", "\ufffd") for t in WEIRD_TEXTS]
    assert len(got[1]) == 4_500 and got[0] == "nul\ufffdinside\ufffd"


async def test_cancelled_caller_never_leaves_half_a_transaction(store: Store):
    task = asyncio.create_task(store.add_correction(corr("t", "joy")))
    await asyncio.sleep(0)  # let it start and queue its transaction
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The shielded write still completes (PostgreSQL's reads do not wait for this process's writes: poll),
    # and the store is not wedged.
    await wait_for_rows(store, "corrections", 1)
    await store.add_correction(corr("t2", "joy", message=2))
    assert await store.count_corrections() == 2


# --------------------------------------------------------------------------- summaries


async def test_emotion_counts_by_day_and_filters(store: Store):
    rows = [
        pred(1, label="joy", at=T0 + 10),
        pred(2, label="joy", at=T0 + 20),
        pred(3, label="anger", at=T0 + 30, channel=11),
        pred(4, label="anger", at=T0 + DAY - 0.5, author=200),  # still day 1 (UTC)
        pred(5, label="sadness", at=T0 + DAY + 1, author=200),  # day 2
        pred(6, label="joy", at=T0 - 1),  # before since
        pred(7, label="joy", at=T0 + 10, guild=2),  # other guild
    ]
    for r in rows:
        await store.record_prediction(r)  # still buffered: the query must see them
    counts = await store.emotion_counts(guild_id=1, since=T0)
    assert counts == [("2023-11-15", "anger", 2), ("2023-11-15", "joy", 2), ("2023-11-16", "sadness", 1)]
    assert await store.emotion_counts(guild_id=1, since=T0, until=T0 + DAY) == counts[:2]
    assert await store.emotion_counts(guild_id=1, since=T0 + 15, until=T0 + 30.5) == [
        ("2023-11-15", "anger", 1), ("2023-11-15", "joy", 1)]
    assert await store.emotion_counts(guild_id=1, channel_id=11, since=T0) == [("2023-11-15", "anger", 1)]
    assert await store.emotion_counts(guild_id=1, author_id=200, since=T0) == [
        ("2023-11-15", "anger", 1), ("2023-11-16", "sadness", 1)]
    assert await store.emotion_counts(guild_id=3, since=0) == []


@pytest.mark.parametrize(("channel", "author", "index"), [
    (None, None, "predictions_guild_day"),
    (11, None, "predictions_channel_day"),
    (None, 200, "predictions_author_day"),
])
async def test_emotion_counts_use_indexes(sqlite_store: Store, channel, author, index):
    sql, params = emotion_counts_query(guild_id=1, channel_id=channel, author_id=author,
                                       since=T0, until=T0 + DAY)
    plan = " ".join(r[3] for r in await sqlite_store._db.execute_fetchall("EXPLAIN QUERY PLAN " + sql, params))
    assert index in plan, plan
    assert "COVERING INDEX" in plan and "TEMP B-TREE" not in plan  # no table, no sort


@pytest.mark.parametrize(("channel", "author", "index"), [
    (None, None, "predictions_guild_day"),
    (11, None, "predictions_channel_day"),
    (None, 200, "predictions_author_day"),
])
async def test_emotion_counts_use_the_day_indexes_on_postgresql(pg_url, channel, author, index):
    """The query spells the day as the indexes do (DAY_EXPR): PostgreSQL can answer from them alone."""
    from bot.store.postgres import bind

    s = await open_store(pg_url)
    try:
        sql, params = emotion_counts_query(guild_id=1, channel_id=channel, author_id=author, since=T0,
                                           until=T0 + DAY, dialect="postgresql")
        text, args = bind(sql, params)

        async def explain(conn):
            await conn.execute("SET enable_seqscan = off")
            return "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + text, *args))

        plan = await s._with_connection("explain", explain)
        assert index in plan and "Only Scan" in plan, plan
    finally:
        await s.close()


async def test_label_counts_and_stats(store: Store):
    await store.record_prediction(pred(1, label="joy"))
    await store.record_prediction(pred(2, label="joy", guild=2))
    await store.record_prediction(pred(3, label="anger"))
    await store.add_correction(corr("t", "joy"))
    await store.set_opted_out(42, True)
    assert await store.label_counts() == {"anger": 1, "joy": 2}
    assert await store.label_counts(guild_id=2) == {"joy": 1}
    assert await store.label_counts(guild_id=3) == {}
    stats = await store.stats()
    assert stats["predictions"] == 3 and stats["corrections"] == 1
    assert stats["opted_out_users"] == 1 and stats["training_examples"] == 1


# --------------------------------------------------------------------------- users


async def test_forget_user(store: Store):
    await store.add_correction(corr("by 5", "joy", message=1, corrector=5, author=100))
    await store.add_correction(corr("about 5", "joy", message=2, corrector=7, author=5))
    await store.add_correction(corr("other", "joy", message=3, corrector=7, author=100))
    await store.record_prediction(pred(1, author=5))
    await store.flush()
    await store.record_prediction(pred(2, author=5))  # buffered
    await store.record_prediction(pred(3, author=100))
    assert await store.forget_user(5) == {"corrections": 2, "predictions": 2}
    await store.flush()
    assert await store.corrections_for_training() == [("other", "joy")]
    assert await store.get_prediction(1) is None and await store.get_prediction(2) is None
    assert await store.get_prediction(3) is not None


async def test_forget_messages_deletes_their_corrections_and_predictions_buffered_too(store: Store):
    await store.add_correction(corr("gone", "joy", message=1, corrector=5))
    await store.add_correction(corr("gone", "anger", message=1, corrector=6))
    await store.add_correction(corr("also gone", "joy", message=2, corrector=5))
    await store.add_correction(corr("kept", "joy", message=3, corrector=5))
    await store.add_examples([corr("imported", "joy", message=None, corrector=None, author=None, source="import")])
    await store.record_prediction(pred(1))
    await store.flush()
    await store.record_prediction(pred(2))  # still buffered
    await store.record_prediction(pred(3))
    assert await store.forget_messages([1, 2, 99]) == {"corrections": 3, "predictions": 2}
    assert await store.forget_messages([1]) == {"corrections": 0, "predictions": 0}
    assert await store.forget_messages([]) == {"corrections": 0, "predictions": 0}
    await store.flush()
    assert await store.get_prediction(1) is None and await store.get_prediction(2) is None
    assert await store.get_prediction(3) is not None
    assert sorted(await store.corrections_for_training()) == [("imported", "joy"), ("kept", "joy")]


async def test_opt_out_cache_follows_database(opener):
    s = await opener()
    await s.set_opted_out(1, True)
    await s.set_opted_out(1, True)  # idempotent
    await s.set_opted_out(2, True)
    await s.set_opted_out(2, False)
    assert await s.is_opted_out(1) and not await s.is_opted_out(2)
    assert await s.opted_out_users() == {1}
    # A failed write must not change the cache.
    async with writes_fail(s):
        with pytest.raises(StoreError):
            await s.set_opted_out(3, True)
    assert not await s.is_opted_out(3)
    await s.close()
    s = await opener()
    assert await s.opted_out_users() == {1}
    await s.close()


async def test_caches_follow_another_process(opener):
    """SQLite: PRAGMA data_version; PostgreSQL: the triggers' NOTIFY. Either way a process ignores its own writes."""
    bot_a, bot_b = await opener(), await opener()
    try:
        assert (await bot_a.get_guild_settings(5)).enabled  # cached
        assert not await bot_a.refresh_if_changed()  # nobody else wrote
        await bot_a.set_opted_out(9, True)
        await asyncio.sleep(0.1)  # time for a notification to arrive, were one sent
        assert not await bot_a.refresh_if_changed()  # its own commits don't count
        await bot_b.set_opted_out(1, True)
        await bot_b.update_guild_settings(5, enabled=False)
        assert not await bot_a.is_opted_out(1)  # stale until the check
        assert await refreshed(bot_a)
        assert await bot_a.is_opted_out(1) and await bot_a.is_opted_out(9)
        assert not (await bot_a.get_guild_settings(5)).enabled
        assert not await bot_a.refresh_if_changed()
    finally:
        await bot_a.close()
        await bot_b.close()


# --------------------------------------------------------------------------- guild settings


def test_channel_enabled_rules():
    assert GuildSettings().channel_enabled(1)
    assert not GuildSettings(enabled=False).channel_enabled(1)
    deny = GuildSettings(denied_channels=frozenset({1}))
    assert not deny.channel_enabled(1) and deny.channel_enabled(2)
    assert not deny.channel_enabled(50, parent_id=1)  # thread of a denied channel
    allow = GuildSettings(allowed_channels=frozenset({1, 2}), denied_channels=frozenset({2}))
    assert allow.channel_enabled(1)
    assert not allow.channel_enabled(2)  # deny wins
    assert not allow.channel_enabled(3)
    assert allow.channel_enabled(60, parent_id=1)  # thread of an allowed channel
    assert not allow.channel_enabled(60, parent_id=3)


async def test_guild_settings_defaults_update_and_persist(opener):
    s = await opener()
    assert await s.get_guild_settings(1) == GuildSettings()
    new = await s.update_guild_settings(1, threshold=0.7, allowed_channels=[5, "6"], reactions=False)
    assert new == GuildSettings(threshold=0.7, allowed_channels=frozenset({5, 6}), reactions=False)
    new = await s.update_guild_settings(1, allowed_channels=[], denied_channels={9})
    assert new.allowed_channels == frozenset() and new.denied_channels == {9}
    # Concurrent updates of different keys must not lose each other.
    await asyncio.gather(s.update_guild_settings(1, show_neutral=True),
                         s.update_guild_settings(1, enabled=False))
    await s.close()
    s = await opener()
    got = await s.get_guild_settings(1)
    assert got == GuildSettings(enabled=False, denied_channels=frozenset({9}), threshold=0.7,
                                show_neutral=True, reactions=False)
    assert await s.get_guild_settings(2) == GuildSettings()
    await s.close()


@pytest.mark.parametrize("changes", [
    {"threshold": 1.5}, {"threshold": -0.1}, {"threshold": math.nan}, {"threshold": "high"},
    {"colour": "red"}, {"enabled": "yes"}, {"allowed_channels": "123"}, {"denied_channels": ["x"]},
])
async def test_guild_settings_validation(store: Store, changes):
    with pytest.raises(ValueError):
        await store.update_guild_settings(1, **changes)
    assert await store.get_guild_settings(1) == GuildSettings()


# --------------------------------------------------------------------------- retention


async def test_retention_deletes_only_old_rows_in_chunks(store: Store):
    old = [pred(i, at=T0 - 40 * DAY) for i in range(2_500)]  # three chunks of _RETENTION_CHUNK
    for row in old:
        await store.record_prediction(row)
    await store.flush()
    await store.record_prediction(pred(20_000, at=T0 - 31 * DAY))  # buffered and old
    await store.record_prediction(pred(20_001, at=T0 - DAY))  # recent
    assert await store.delete_predictions_older_than(30, now=T0) == 2_501
    await store.flush()
    assert (await store.stats())["predictions"] == 1
    assert await run_retention(store, 0) == 1  # uses the real clock: everything is older


async def test_run_retention_survives_store_errors(store: Store, caplog):
    await store.record_prediction(pred(1, at=T0))
    await store.flush()
    async with writes_fail(store):
        assert await run_retention(store, 1) == 0
    assert "Retention pass failed" in caplog.text


# --------------------------------------------------------------------------- interface


def test_store_implements_the_protocol_with_coroutines():
    import inspect

    from bot.store.postgres import PostgresStore

    members = [name for name in dir(StoreProtocol) if not name.startswith("_")]
    methods = [name for name in members if inspect.iscoroutinefunction(getattr(StoreProtocol, name))]
    assert {"record_prediction", "add_correction", "forget_user", "forget_messages",
            "update_guild_settings"} <= set(methods)
    for backend in (Store, PostgresStore):
        for name in methods:
            assert inspect.iscoroutinefunction(getattr(backend, name)), name
            assert inspect.signature(getattr(backend, name)) == inspect.signature(getattr(StoreProtocol, name)), name
    for gone in ("add_model_version", "set_current_model_version", "current_model_version",
                 "list_model_versions"):
        assert not hasattr(Store, gone)


async def test_open_store_is_a_store_protocol(store: Store):
    assert isinstance(store, StoreProtocol)


# --------------------------------------------------------------------------- failures


async def test_full_disk_gives_clear_error_and_no_partial_rows(store: Store):
    await store.add_correction(corr("small", "joy"))
    batch = [corr(f"y{i}" * 1_000, "joy", message=None, corrector=None) for i in range(200)]
    async with writes_fail(store, "full"):
        with pytest.raises(StoreError) as info:
            await store.add_examples(batch)
    assert info.value.reason == "full"
    assert "disk is full" in str(info.value) and store.path in str(info.value)
    assert await store.count_corrections() == 1  # all or nothing
    assert await store.add_examples(batch) == 200  # the store stays usable


async def test_read_only_database(tmp_path: Path):
    path = tmp_path / "ro.sqlite3"
    s = await Store.open(path)
    await s.add_correction(corr("t", "joy"))
    await s.close()
    # Tests run as root, where chmod does not stop writes: use a read-only URI.
    ro = await Store.open(f"file:{path}?mode=ro")
    try:
        assert await ro.corrections_for_training() == [("t", "joy")]
        with pytest.raises(StoreError) as info:
            await ro.add_correction(corr("u", "joy", message=2))
        assert info.value.reason == "readonly" and "read-only" in str(info.value)
        assert str(path) in str(info.value)
    finally:
        await ro.close()


async def test_locked_database_then_recovers(opener, target):
    s = await opener(busy_timeout_ms=50)
    async with locked_by_another(s, target):
        with pytest.raises(StoreError) as info:
            await s.add_correction(corr("t", "joy"))
        assert info.value.reason == "locked" and "lock" in str(info.value)
    await s.add_correction(corr("t", "joy"))
    assert await s.count_corrections() == 1
    await s.close()


async def test_unopenable_paths(tmp_path: Path):
    (tmp_path / "adir").mkdir()
    with pytest.raises(StoreError) as info:
        await Store.open(tmp_path / "adir")  # a directory, not a file
    assert info.value.reason == "cantopen" and "adir" in str(info.value)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match="directory"):
        await Store.open(tmp_path / "afile" / "db.sqlite3")  # parent is a file
    (tmp_path / "junk.sqlite3").write_bytes(b"not a database" * 200)
    with pytest.raises(StoreError) as info:
        await Store.open(tmp_path / "junk.sqlite3")
    assert info.value.reason == "corrupt"


async def test_failing_background_flush_logs_once_keeps_rows_and_recovers(opener, target, caplog):
    caplog.set_level(logging.INFO, logger="bot.store")
    s = await opener(flush_interval=0.02, busy_timeout_ms=10)
    async with locked_by_another(s, target):
        for i in range(5):
            await s.record_prediction(pred(i))
        await asyncio.sleep(0.3)  # several failed attempts
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and errors[0].exc_info is not None
        assert s._flusher is not None and not s._flusher.done()
        assert s.buffered == 5
        with pytest.raises(StoreError):
            await s.flush()
        assert (await s.get_prediction(3)) is not None
    # the buffer empties when a flush starts; "works again" is said once that flush has committed
    await wait_for(lambda: "works again" in caplog.text)
    assert s.buffered == 0 and (await s.stats())["predictions"] == 5
    await s.close()


async def test_buffer_is_bounded_while_failing(opener, caplog):
    s = await opener(flush_interval=60, batch_size=5, max_buffer=20, busy_timeout_ms=10)
    async with writes_fail(s):
        for i in range(50):
            await s.record_prediction(pred(i))
        with pytest.raises(StoreError):
            await s.flush()
        assert s.buffered <= 20 and s.dropped_predictions >= 30
        assert await s.get_prediction(49) is not None  # the newest survive
        assert await s.get_prediction(0) is None
        assert sum("dropping the oldest" in r.getMessage() for r in caplog.records) == 1
    await s.close()


async def test_closed_store_raises_store_error(opener):
    s = await opener()
    await s.close()
    await s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await s.record_prediction(pred(1))
    with pytest.raises(StoreError, match="closed"):
        await s.corrections_for_training()
