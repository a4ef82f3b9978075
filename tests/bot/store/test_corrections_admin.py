"""Corrections as data admins manage: list, delete, relabel; whether the corrector wrote the message."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.store import Correction, Store, StoreError, UnknownLabel, migrations, split_sql
from bot.store.records import CorrectionRow, RelabelCounts
from tests.bot.store.backends import peek

LABELS = ("anger", "joy", "sadness", "neutral")
T0 = 1_700_006_400.0


@pytest.fixture
async def store(opener):
    s = await opener(labels=LABELS)
    yield s
    await s.close()


def vote(text: str, label: str, *, message: int, corrector: int, author: int = 100, guild: int = 1,
         at: float = T0, source: str = "discord") -> Correction:
    return Correction(text=text, label=label, guild_id=guild, channel_id=10, message_id=message,
                      author_id=author, corrector_id=corrector, predicted_label="neutral",
                      model_version="v1", source=source, created_at=at)


def imported(text: str, label: str, at: float = T0) -> Correction:
    return Correction(text=text, label=label, source="import", created_at=at)


async def ids_of(store: Store, **filters) -> list[int]:
    return [row.id for row in await store.list_corrections(**filters)]


async def fill(store: Store) -> None:
    await store.add_correction(vote("hi there", "joy", message=1, corrector=7, at=T0))
    await store.add_correction(vote("grr\nmulti-line", "anger", message=2, corrector=2, author=2, at=T0 + 10))
    await store.add_correction(vote("other server", "sadness", message=3, corrector=7, guild=2, at=T0 + 20))
    await store.add_correction(vote("shell line", "joy", message=4, corrector=5, author=5, at=T0 + 30,
                                    source="shell"))
    await store.add_examples([imported("file row", "neutral", T0 + 40), imported("file joy", "joy", T0 + 50)])


# --------------------------------------------------------------------------- list


async def test_list_gives_named_records_newest_first(store: Store):
    await fill(store)
    rows = await store.list_corrections()
    assert [r.text for r in rows] == ["file joy", "file row", "shell line", "other server", "grr\nmulti-line",
                                      "hi there"]
    first = rows[-1]
    assert isinstance(first, CorrectionRow)
    assert (first.source, first.guild_id, first.message_id, first.author_id, first.corrector_id) == \
        ("discord", 1, 1, 100, 7)
    assert (first.label, first.predicted_label, first.model_version, first.created_at) == \
        ("joy", "neutral", "v1", T0)
    assert first.by_author is False
    assert rows[-2].by_author is True  # author 2 corrected their own message
    assert rows[0].by_author is None and rows[0].message_id is None  # an imported example: nobody wrote it here


async def test_list_filters(store: Store):
    await fill(store)
    assert [r.text for r in await store.list_corrections(guild_id=2)] == ["other server"]
    assert [r.text for r in await store.list_corrections(label="JOY")] == ["file joy", "shell line", "hi there"]
    assert [r.text for r in await store.list_corrections(source="import")] == ["file joy", "file row"]
    assert [r.text for r in await store.list_corrections(since=T0 + 30)] == ["file joy", "file row", "shell line"]
    assert [r.text for r in await store.list_corrections(limit=2)] == ["file joy", "file row"]
    assert [r.text for r in await store.list_corrections(label="joy", source="discord", guild_id=1)] == ["hi there"]
    assert await store.list_corrections(label="nothing") == []
    with pytest.raises(ValueError, match="source"):
        await store.list_corrections(source="discrod")
    with pytest.raises(ValueError, match="limit"):
        await store.list_corrections(limit=-1)


async def test_list_works_on_a_read_only_store_and_changes_are_refused_there(opener):
    s = await opener()
    await fill(s)
    await s.close()
    ro = await opener(read_only=True)
    try:
        assert len(await ro.list_corrections()) == 6
        with pytest.raises(StoreError, match="read-only"):
            await ro.delete_corrections([1])
        with pytest.raises(StoreError, match="read-only"):
            await ro.relabel_corrections([1], "anger")
    finally:
        await ro.close()


# --------------------------------------------------------------------------- delete


async def test_delete_by_id_is_all_or_nothing(store: Store):
    await fill(store)
    with pytest.raises(ValueError, match="999") as info:
        await store.delete_corrections([1, 999])
    assert "1," not in str(info.value)  # only the missing id is named
    assert len(await store.list_corrections()) == 6  # nothing deleted
    assert await store.delete_corrections([1, 2, 2]) == 2
    assert 1 not in await ids_of(store) and 2 not in await ids_of(store)
    assert await store.delete_corrections([]) == 0
    assert await store.count_corrections() == 4


# --------------------------------------------------------------------------- relabel


async def test_relabel_by_id_counts_and_validates(store: Store):
    await fill(store)
    joy = await ids_of(store, label="joy")
    counts = await store.relabel_corrections([*joy, 2], "anger")
    assert counts == RelabelCounts(relabelled=3, merged=0, unchanged=1)  # 2 was anger already
    assert [r.label for r in await store.list_corrections(label="anger")] == ["anger"] * 4
    before = await store.list_corrections()
    with pytest.raises(UnknownLabel, match="happiness"):
        await store.relabel_corrections([1], "happiness")  # not one of the store's labels
    with pytest.raises(ValueError, match="empty"):
        await store.relabel_corrections([1], "  ")
    with pytest.raises(ValueError, match="no correction with id 42"):
        await store.relabel_corrections([1, 42], "sadness")
    assert await store.list_corrections() == before  # nothing changed


async def test_relabelling_imports_merges_into_an_existing_pair(store: Store):
    await store.add_examples([imported("same", "joy"), imported("same", "anger", T0 + 1),
                              imported("same", "sadness", T0 + 2), imported("twin", "anger", T0 + 3),
                              imported("twin", "sadness", T0 + 4)])
    same = await ids_of(store, source="import", label="anger") + await ids_of(store, label="sadness")
    counts = await store.relabel_corrections(same, "joy")
    # ("same", anger) and ("same", sadness) become the ("same", joy) already there; the twins become one.
    assert counts == RelabelCounts(relabelled=1, merged=3, unchanged=0)
    assert sorted(await store.corrections_for_training()) == [("same", "joy"), ("twin", "joy")]
    # The unique (text, label) index of imports (V4) still holds: a re-import adds nothing.
    assert await store.add_examples([imported("same", "joy"), imported("twin", "joy")]) == 0


async def test_relabelling_a_discord_correction_never_merges(store: Store):
    await store.add_correction(vote("msg", "joy", message=1, corrector=7))
    await store.add_correction(vote("msg", "anger", message=1, corrector=8))
    assert await store.relabel_corrections(await ids_of(store, label="anger"), "joy") == RelabelCounts(1, 0, 0)
    assert len(await store.list_corrections()) == 2  # both votes are kept


# --------------------------------------------------------------------------- writers and readers


async def test_by_author_is_stored_from_the_ids(store: Store):
    await store.add_correction(vote("mine", "joy", message=1, corrector=100, author=100))
    await store.add_correction(vote("theirs", "joy", message=2, corrector=7, author=100))
    await store.add_examples([imported("file", "joy")])
    rows = await peek(store, "SELECT text, by_author FROM corrections ORDER BY id")
    assert rows == [("mine", 1), ("theirs", 0), ("file", None)]


async def test_the_writers_label_is_the_messages_training_label(store: Store):
    # Message 1: two readers say anger, its writer says joy (earliest): the writer knows what they meant.
    await store.add_correction(vote("just kidding", "joy", message=1, corrector=100, author=100, at=T0))
    await store.add_correction(vote("just kidding", "anger", message=1, corrector=7, at=T0 + 1))
    await store.add_correction(vote("just kidding", "anger", message=1, corrector=8, at=T0 + 2))
    # Message 2: readers only, the majority as before.
    await store.add_correction(vote("meh", "sadness", message=2, corrector=7, at=T0 + 3))
    await store.add_correction(vote("meh", "sadness", message=2, corrector=8, at=T0 + 4))
    await store.add_correction(vote("meh", "neutral", message=2, corrector=9, at=T0 + 5))
    assert await store.corrections_for_training() == [("just kidding", "joy"), ("meh", "sadness")]
    assert len(await store.list_corrections()) == 6  # the readers' labels are kept
    assert await store.count_corrections() == 2


async def test_v6_back_fills_by_author(tmp_path: Path):
    path = tmp_path / "v5.sqlite3"
    con = sqlite3.connect(path, isolation_level=None)
    for version, _, sql in migrations()[:5]:
        for statement in split_sql(sql):
            con.execute(statement)
        con.execute(f"PRAGMA user_version = {version}")
    con.executemany("INSERT INTO corrections (message_id, author_id, corrector_id, label, text, source, created_at) "
                    "VALUES (?, ?, ?, 'joy', ?, ?, ?)",
                    [(1, 5, 5, "own", "discord", T0), (2, 5, 7, "read", "discord", T0), (None, None, None, "file",
                                                                                           "import", T0)])
    con.close()
    s = await Store.open(path, labels=LABELS)
    try:
        assert [(r.text, r.by_author) for r in reversed(await s.list_corrections())] == \
            [("own", True), ("read", False), ("file", None)]
    finally:
        await s.close()
