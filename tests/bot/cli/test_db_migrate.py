"""``emotion-machine db migrate``: a SQLite bot's data moved to PostgreSQL (and back) without loss, rerunnable."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.cli import main
from bot.store import Correction, PredictionRow, open_store
from bot.store.review import ReviewRow

T0 = 1_700_006_400.0


async def _fill(target: str) -> None:
    store = await open_store(target, labels=["joy", "anger"])
    try:
        for i in range(1, 121):
            await store.record_prediction(PredictionRow(guild_id=1 + i % 2, channel_id=10, message_id=i, author_id=5,
                                                        label="joy" if i % 3 else "anger", probability=0.8,
                                                        model_version="v1", created_at=T0 + i * 3600))
        await store.flush()
        await store.add_correction(Correction(text="a 4,000-char text " + "x" * 4_000, label="anger", guild_id=1,
                                              channel_id=10, message_id=1, author_id=5, corrector_id=5, created_at=T0))
        await store.add_correction(Correction(text="second vote", label="joy", guild_id=1, channel_id=10,
                                              message_id=1, author_id=5, corrector_id=6, created_at=T0 + 1))
        await store.add_examples([Correction(text=f"imported {i}", label="joy", source="import") for i in range(30)])
        await store.update_guild_settings(1, threshold=0.7, denied_channels={11, 12}, review=True, share=True)
        await store.set_opted_out(42, True)
        await store.mark_guild_left(3, at=T0)
        await store.offer_review(ReviewRow(guild_id=1, channel_id=10, message_id=500, author_id=5, text="unsure",
                                           label="joy", confidence=0.3, model_version="v1", created_at=time.time()))
    finally:
        await store.close()


async def _state(target: str) -> dict:
    store = await open_store(target)
    try:
        return {
            "training": await store.corrections_for_training(),
            "rows": [(r.id, r.text[:20], r.label, r.by_author) for r in await store.list_corrections()],
            "settings": await store.get_guild_settings(1),
            "opted_out": await store.opted_out_users(),
            "left": await store.guilds_left_before(float("inf")),
            "mood": await store.emotion_counts(guild_id=1, since=0),
            "review": [r.message_id for r in await store.review_items(1)],
            "stats": await store.stats(),
        }
    finally:
        await store.close()


def test_sqlite_to_postgresql_and_back_loses_nothing_and_reruns_safely(tmp_path, pg_url, capsys):
    sqlite_path = str(tmp_path / "emotion.db")
    asyncio.run(_fill(sqlite_path))
    before = asyncio.run(_state(sqlite_path))

    assert main(["db", "migrate", "--from", f"sqlite:{sqlite_path}", "--to", pg_url, "--chunk", "7"]) == 0
    out = capsys.readouterr()
    assert "the counts match" in out.err and "predictions" in out.out and "differs" not in out.out
    assert asyncio.run(_state(pg_url)) == before

    # a rerun doubles nothing, and the copy keeps working as a bot's database: new ids follow the copied ones
    assert main(["db", "migrate", "--from", sqlite_path, "--to", pg_url]) == 0
    assert asyncio.run(_state(pg_url)) == before

    async def one_more() -> int:
        store = await open_store(pg_url)
        try:
            await store.add_correction(Correction(text="after the move", label="joy", guild_id=2, channel_id=10,
                                                  message_id=7, author_id=1, corrector_id=2))
            return max(r.id for r in await store.list_corrections())
        finally:
            await store.close()

    assert asyncio.run(one_more()) == max(r[0] for r in before["rows"]) + 1

    # and back to a new SQLite file: the same data again, the new correction included
    back = str(tmp_path / "back.db")
    assert main(["db", "migrate", "--from", pg_url, "--to", f"sqlite:{back}"]) == 0
    after = asyncio.run(_state(back))
    assert after["stats"]["corrections"] == before["stats"]["corrections"] + 1
    assert after["settings"] == before["settings"] and after["mood"] == before["mood"]


def test_a_destination_holding_other_rows_is_reported(tmp_path, pg_url, capsys):
    sqlite_path = str(tmp_path / "emotion.db")
    asyncio.run(_fill(sqlite_path))

    async def stranger() -> None:
        store = await open_store(pg_url)
        await store.set_opted_out(999, True)
        await store.close()

    asyncio.run(stranger())
    assert main(["db", "migrate", "--from", sqlite_path, "--to", pg_url]) == 1
    captured = capsys.readouterr()
    assert "opted_out_users" in captured.err and "differ" in captured.err


@pytest.mark.parametrize("argv, message", [
    (["--from", "x.db", "--to", "x.db"], "same database"),
    (["--from", "missing.db", "--to", "sqlite:y.db"], "does not exist"),
])
def test_bad_arguments_are_one_clear_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["db", "migrate", *argv]) == 1
    assert message in capsys.readouterr().err
