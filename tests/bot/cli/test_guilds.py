"""``finetune --guild``, ``models --guild`` and ``guild list|forget``: a server's line from the command line."""

from __future__ import annotations

import asyncio

import pytest

from bot.cli import main
from bot.store import Correction, Store
from model.registry import Registry, server_root
from tests.helpers import build_tiny_model

SAD = ["i am so sad", "sad sad today", "so sad sorry", "sad ugh", "very sad"]
ANGRY = ["i am so angry", "angry angry today", "so angry why", "angry hate", "very angry"]
A, B = 111, 222


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    model = build_tiny_model(tmp_path / "base", confident="happiness", word_std=0.5)
    for name, value in {"EMOTION_DB": tmp_path / "db.sqlite", "EMOTION_MODELS_DIR": tmp_path / "models",
                        "EMOTION_MODEL": model, "EMOTION_MIN_CORRECTIONS": 5, "EMOTION_SERVER_LR": 5e-2,
                        "EMOTION_FINETUNE_EPOCHS": 40, "EMOTION_FINETUNE_BATCH_SIZE": 4}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("EMOTION_REPLAY_PATH", raising=False)

    async def fill():
        store = await Store.open(tmp_path / "db.sqlite")
        try:
            for guild, (sad, angry) in ((A, ("sadness", "anger")), (B, ("anger", "sadness"))):
                for i, text in enumerate(SAD + ANGRY):
                    await store.add_correction(Correction(text, sad if text in SAD else angry, guild_id=guild,
                                                          channel_id=1, message_id=guild * 100 + i, author_id=5,
                                                          corrector_id=6))
        finally:
            await store.close()

    asyncio.run(fill())
    return tmp_path


def test_a_servers_line_is_trained_listed_and_forgotten_from_the_command_line(cli_env, capsys):
    assert main(["finetune", "--guild", str(A), "--force"]) == 0
    out = capsys.readouterr().out
    assert "fine-tuning" not in out and "Deployed v1" in out and "10 corrections" in out
    line = Registry(server_root(cli_env / "models", A))
    assert line.current_name() == "v1" and Registry(cli_env / "models").list() == []  # the base untouched
    assert main(["models", "list", "--guild", str(A)]) == 0
    assert "* v1" in capsys.readouterr().out
    assert main(["guild", "list"]) == 0
    assert f"{A}: current v1, versions v1" in capsys.readouterr().out

    assert main(["guild", "forget", str(A)]) == 0
    out = capsys.readouterr().out
    assert f"forgot server {A}: 10 corrections" in out and "1 model version(s) deleted" in out
    assert not server_root(cli_env / "models", A).exists()
    # the other server's corrections are still there
    assert main(["corrections", "list", "--guild", str(B), "--format", "jsonl"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 10
    assert main(["corrections", "list", "--guild", str(A), "--format", "jsonl"]) == 0
    assert capsys.readouterr().out.strip() == ""


def test_the_base_from_the_command_line_takes_only_shared_corrections(cli_env, capsys):
    assert main(["finetune"]) == 1
    assert "Only 0 corrections from the servers that share theirs" in capsys.readouterr().err
