"""``emotion-machine corrections list|delete|relabel``: corrections and imported examples as data admins manage."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.cli import main
from bot.store import Correction, Store

T0 = 1_700_006_400.0  # 2023-11-15 00:00 UTC


@pytest.fixture
def cli_env(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    monkeypatch.setenv("EMOTION_DB", str(tmp_path / "db.sqlite"))
    monkeypatch.setenv("EMOTION_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("EMOTION_MODEL", str(tiny_model_dir))  # a tiny seed-13 model
    return tmp_path


def given(path, *rows: Correction) -> None:
    async def add():
        store = await Store.open(path)  # any label: as an older import left them
        try:
            for row in rows:
                await (store.add_examples([row]) if row.imported else store.add_correction(row))
        finally:
            await store.close()

    asyncio.run(add())


def stored(path) -> list[tuple[int, str, str]]:
    async def read():
        store = await Store.open(path, read_only=True)
        try:
            return [(r.id, r.text, r.label) for r in reversed(await store.list_corrections())]
        finally:
            await store.close()

    return asyncio.run(read())


def discord(text, label, *, message, corrector, author=100, guild=1, at=T0) -> Correction:
    return Correction(text=text, label=label, guild_id=guild, channel_id=10, message_id=message, author_id=author,
                      corrector_id=corrector, predicted_label="neutral", model_version="v1", created_at=at)


def imported(text, label, at=T0) -> Correction:
    return Correction(text=text, label=label, source="import", created_at=at)


@pytest.fixture
def db(cli_env):
    path = cli_env / "db.sqlite"
    given(path,
          discord("i meant it", "happiness", message=1, corrector=100, at=T0),  # id 1: by its writer
          discord("line one\nline two \x1b[31mred\x1b[0m" + " long" * 30, "anger", message=2, corrector=7,
                  guild=2, at=T0 + 3600),  # id 2
          imported("from a file", "annoyance", T0 + 7200),  # id 3: a GoEmotions name an older import kept
          imported("from a file", "anger", T0 + 7300))  # id 4
    return path


# --------------------------------------------------------------------------- list


def test_list_is_a_table_one_line_a_correction(db, capsys):
    assert main(["corrections", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["id", "source", "server", "label", "guess", "writer", "when", "text"]
    assert len(lines) == 5  # header + 4 rows, newest first: multi-line texts stay on one line
    assert [line.split()[0] for line in lines[1:]] == ["4", "3", "2", "1"]
    assert "\x1b" not in out  # a message cannot drive the admin's terminal
    by_id = {line.split()[0]: line for line in lines[1:]}
    assert by_id["1"].split()[:7] == ["1", "discord", "1", "happiness", "neutral", "yes", "2023-11-15"]
    assert by_id["2"].split()[5] == "no" and "line one line two" in by_id["2"] and by_id["2"].endswith("…")
    assert by_id["3"].split()[:6] == ["3", "import", "-", "annoyance", "-", "-"]


def test_list_filters_and_jsonl(db, capsys):
    def ids(*options):
        assert main(["corrections", "list", "--format", "jsonl", *options]) == 0
        return [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]

    assert ids("--imported") == [4, 3]
    assert ids("--source", "discord") == [2, 1]
    assert ids("--guild", "2") == [2]
    assert ids("--label", "ANGER") == [4, 2]
    assert ids("--since", "2023-11-15T01:30") == [4, 3]
    assert ids("--since", str(T0 + 3600)) == [4, 3, 2]
    assert main(["corrections", "list", "--format", "jsonl", "--limit", "1"]) == 0
    out, err = capsys.readouterr()
    row = json.loads(out)
    assert row["id"] == 4 and row["text"] == "from a file" and row["by_author"] is None
    assert "newest 1" in err and "--limit 0" in err
    with pytest.raises(SystemExit):
        main(["corrections", "list", "--since", "last tuesday"])
    assert "unix time or a date" in capsys.readouterr().err


def test_list_reads_only_and_a_missing_database_is_one_line(cli_env, capsys):
    missing = cli_env / "nowhere.sqlite"
    assert main(["corrections", "list", "--db", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    assert not missing.exists()  # opened read-only: nothing created


# --------------------------------------------------------------------------- delete


def refused(db, capsys, argv: list[str], code: int, *said: str) -> None:
    """``argv`` fails with ``code``, its last error line saying each of ``said``, and changes nothing."""
    before = stored(db)
    assert main(["corrections", *argv]) == code
    last = capsys.readouterr().err.splitlines()[-1]  # after transformers' own report of loading the model
    assert last.startswith("emotion-machine: error: ") and all(words in last for words in said), last
    assert stored(db) == before


def test_delete_by_id_and_a_bad_id_changes_nothing(db, capsys):
    refused(db, capsys, ["delete", "1", "999"], 1, "no correction with id 999")
    assert main(["corrections", "delete", "1", "2"]) == 0
    assert "deleted 2 corrections" in capsys.readouterr().out
    assert [i for i, _, _ in stored(db)] == [3, 4]


def test_delete_by_filter_needs_yes(db, capsys):
    refused(db, capsys, ["delete", "--imported"], 2, "would delete 2 corrections", "--yes")
    refused(db, capsys, ["delete"], 2, "ids or filters")
    refused(db, capsys, ["delete", "1", "--imported"], 2, "not both")
    assert main(["corrections", "delete", "--imported", "--yes"]) == 0
    assert "deleted 2 corrections" in capsys.readouterr().out
    assert [i for i, _, _ in stored(db)] == [1, 2]


# --------------------------------------------------------------------------- relabel


def test_relabel_by_id_checks_the_models_labels(db, capsys):
    before = stored(db)
    refused(db, capsys, ["relabel", "2", "--to", "hangry"], 1, "'hangry' is not one of the model's labels",
            "happiness")
    refused(db, capsys, ["relabel", "2", "999", "--to", "sadness"], 1, "no correction with id 999")
    assert main(["corrections", "relabel", "2", "--to", "Sadness"]) == 0
    assert "relabelled 1 correction as 'sadness'" in capsys.readouterr().out
    assert stored(db)[1] == (2, before[1][1], "sadness")


def test_relabel_in_bulk_merges_imported_examples(db, capsys):
    assert main(["corrections", "relabel", "--from", "annoyance", "--to", "anger", "--imported"]) == 0
    out = capsys.readouterr().out
    assert "relabelled 0 corrections as 'anger'" in out and "1 merged" in out
    assert [(i, label) for i, _, label in stored(db)] == [(1, "happiness"), (2, "anger"), (4, "anger")]
    refused(db, capsys, ["relabel", "--from", "zzz", "--to", "anger"], 1, "no corrections labelled 'zzz'")
    refused(db, capsys, ["relabel", "--to", "anger"], 2, "--from")
    refused(db, capsys, ["relabel", "--imported", "--to", "anger"], 2, "needs --from")


def test_relabel_to_another_label_set(db, capsys):
    assert main(["corrections", "relabel", "1", "--to", "joy", "--labels", "goemotions"]) == 0
    assert stored(db)[0][2] == "joy"
    with pytest.raises(SystemExit):
        main(["corrections", "relabel", "1", "--to", "joy", "--labels", "emotions"])
    assert "invalid choice: 'emotions'" in capsys.readouterr().err
