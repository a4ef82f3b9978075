"""The store and training commands end to end: import → export → finetune → models list/rollback/prune."""

from __future__ import annotations

import json

import pytest

from bot.cli import main
from model.registry import Registry

ROWS = [("i am so happy", "happiness"), ("happy happy today", "happiness"), ("so happy lol", "happiness"),
        ("i am so sad", "sadness"), ("sad sad today", "sadness"), ("so sad sorry", "sadness")]


@pytest.fixture
def cli_env(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    monkeypatch.setenv("EMOTION_DB", str(tmp_path / "db.sqlite"))
    monkeypatch.setenv("EMOTION_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("EMOTION_MODEL", str(tiny_model_dir))
    return tmp_path


def test_import_reports_bad_rows_by_line_and_export_round_trips(cli_env, capsys):
    src = cli_env / "seed.csv"
    src.write_text("text,label\n" + "".join(f"{t},{lb}\n" for t, lb in ROWS) + "oops,hangry\n,sadness\n")
    assert main(["import", str(src), "--labels", "seed13"]) == 1
    out = capsys.readouterr()
    assert "imported 6 examples, 0 already present, 2 bad rows skipped" in out.out
    assert f"{src}:8:" in out.err and "hangry" in out.err and f"{src}:9:" in out.err
    # Importing the same file again adds nothing.
    assert main(["import", str(src), "--labels", "seed13"]) == 1
    assert "imported 0 examples, 6 already present, 2 bad rows skipped" in capsys.readouterr().out

    dest = cli_env / "out.jsonl"
    assert main(["export", "--format", "jsonl", "-o", str(dest)]) == 0
    rows = [json.loads(line) for line in dest.read_text().splitlines()]
    assert sorted((r["text"], r["label"]) for r in rows) == sorted(ROWS)
    assert main(["export", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "text,label"


def test_finetune_then_models_list_rollback_prune(cli_env, capsys):
    src = cli_env / "seed.jsonl"
    src.write_text("".join(json.dumps({"text": t, "label": lb}) + "\n" for t, lb in ROWS))
    assert main(["import", str(src), "--labels", "seed13"]) == 0
    for _ in range(2):
        code = main(["finetune", "--force", "--epochs", "2", "--lr", "1e-3", "--batch-size", "4", "--threads", "1",
                     "--min-corrections", "6"])
        assert code == 0
    out = capsys.readouterr().out
    assert "Deployed v2" in out and "Saved as v2, now current" in out
    registry = Registry(cli_env / "models")
    assert [v.name for v in registry.list()] == ["v1", "v2"] and registry.current_name() == "v2"

    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "* v2" in listing and "v1" in listing
    assert main(["models", "rollback"]) == 0
    assert registry.current_name() == "v1"
    assert main(["models", "prune", "--keep", "1"]) == 0
    assert [v.name for v in registry.list()] == ["v1", "v2"]  # the newest is kept, and current is never pruned
    assert main(["models", "rollback", "v2"]) == 0
    assert main(["models", "prune", "--keep", "1"]) == 0
    assert [v.name for v in registry.list()] == ["v2"]


def test_finetune_without_corrections_is_a_clear_error(cli_env, capsys):
    assert main(["finetune"]) == 1
    assert "Only 0 corrections from the servers that share theirs" in capsys.readouterr().err


def test_import_refuses_an_unknown_label_set(cli_env, capsys):
    src = cli_env / "seed.csv"
    src.write_text("text,label\ni am so happy,happiness\n")
    with pytest.raises(SystemExit) as info:
        main(["import", str(src), "--labels", "emotions"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'emotions'" in err and "goemotions" in err
    assert not (cli_env / "db.sqlite").exists()  # nothing was opened, let alone stored


def test_import_of_another_label_set_stores_the_models_labels(cli_env, capsys):
    src = cli_env / "go.csv"
    src.write_text("text,label\nso annoyed,annoyance\nugh,annoyance\nyay,joy\nmad,anger\n")
    assert main(["import", str(src), "--labels", "GoEmotions"]) == 0  # the model is the tiny seed-13 one
    out = capsys.readouterr().out
    assert "imported 4 examples" in out
    assert "mapped 3 labels to the model's: annoyance→anger ×2, joy→happiness ×1" in out
    assert main(["export", "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == ["anger", "anger", "happiness", "anger"]
