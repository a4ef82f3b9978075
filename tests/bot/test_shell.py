"""``emotion-machine shell`` driven end to end through its stdin, as a person (or a pipe) would."""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from bot.cli import build_parser
from bot.cli import shell as cli_shell
from model.labels import SEED13
from model.registry import Registry
from tests.helpers import ROOT


def run_shell(tmp_path: Path, model_dir: Path, lines: list[str], *options: str) -> subprocess.CompletedProcess:
    """``python -m bot shell`` on a tiny model, fed ``lines``; settings only from the options given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMOTION_", "DISCORD_"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONIOENCODING="utf-8", PYTHON_DOTENV_DISABLED="1",
               TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    argv = [sys.executable, "-m", "bot", "shell", "--model", str(model_dir), "--db", str(tmp_path / "shell.db"),
            "--models-dir", str(tmp_path / "models"), "--device", "cpu", *options]
    return subprocess.run(argv, input="".join(line + "\n" for line in lines), capture_output=True, text=True,
                          encoding="utf-8", env=env, cwd=tmp_path, timeout=180)


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_every_option_has_help_and_parses():
    parser = build_parser()
    (helped,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert "shell" in {a.dest for a in helped._choices_actions}
    for action in helped.choices["shell"]._actions:
        assert action.help, f"shell {action.option_strings or action.dest} has no help"
    args = parser.parse_args(["shell", "--db", "x.db", "--epochs", "2", "--lr", "0.01", "--min-corrections", "3"])
    assert (args.func, args.db, args.epochs, args.learning_rate, args.min_corrections) == (
        cli_shell.run_shell, "x.db", 2.0, 0.01, 3)


def test_a_session_tags_corrects_charts_and_retrains(tmp_path, happy_model_dir):
    chart = tmp_path / "charts" / "mood.png"
    proc = run_shell(tmp_path, happy_model_dir, [
        "i am so happy",
        "/correct sadness",
        "/correct nope",
        "so sad today",
        "/correct anger",
        "/retrain",                     # 2 corrections < 3: refused before any training starts
        "wow really",
        "/correct fear",
        "/mood",
        "/retrain force",
        "i am so happy",
        "/quit",
        "never read: the shell has quit",
    ], "--min-corrections", "3", "--epochs", "4", "--lr", "5e-3", "--batch-size", "4", "--out", str(chart))
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err

    # each message: the emoji and label, then the top 3 with bars
    lines = out.splitlines()
    answers = [i for i, line in enumerate(lines) if line.startswith("😄  happiness (")]
    assert len(answers) == 4
    top3 = lines[answers[0] + 1: answers[0] + 4]
    assert top3[0].split()[0] == "😄" and top3[0].split()[-1] == "happiness"
    assert all(set(line) & {"█", "░"} and "%" in line for line in top3)
    assert "model model" in lines[answers[0]] and "model v1" in lines[answers[-1]]  # served by the new version

    assert "'i am so happy': Changed 😄 happiness → 😢 sadness. 1 correction stored." in out
    error = next(line for line in lines if line.startswith("error: 'nope'"))
    assert "not an emotion this model knows" in error and all(label in error for label in SEED13)
    assert "error: Only 2 corrections so far; retraining needs at least 3" in out

    # /mood: a PNG where --out said, and the path printed
    assert f"chart written to {chart}" in out and "3 tagged messages: 😄 happiness 3 (100%)" in out
    assert chart.read_bytes().startswith(b"\x89PNG")

    # /retrain force: progress (stages on stdout, the tqdm bar on stderr), result, deployed and swapped in
    assert "retraining on 3 corrections (force)" in out
    assert "• training…" in out and "• saving…" in out
    assert "training: 100%" in err and "step" in err
    assert "✅ Deployed v1: forced" in out and "Now tagging with v1" in out
    assert "never read" not in out and out.rstrip().endswith("bye")

    db = tmp_path / "shell.db"
    predictions = query(db, "SELECT guild_id, channel_id, author_id, label, model_version FROM predictions "
                            "ORDER BY created_at")
    assert predictions == [(0, 0, 0, "happiness", "model")] * 3 + [(0, 0, 0, "happiness", "v1")]
    assert all(mid < 0 for (mid,) in query(db, "SELECT message_id FROM predictions"))  # never a Discord id
    corrections = query(db, "SELECT text, label, predicted_label, source, guild_id FROM corrections ORDER BY id")
    assert corrections == [("i am so happy", "sadness", "happiness", "shell", 0),
                           ("so sad today", "anger", "happiness", "shell", 0),
                           ("wow really", "fear", "happiness", "shell", 0)]
    assert query(db, "SELECT name FROM sqlite_master WHERE name = 'model_versions'") == []  # the registry's job
    assert Registry(tmp_path / "models").current().name == "v1"


def test_end_of_input_closes_cleanly_and_bad_commands_are_one_error_line(tmp_path, happy_model_dir):
    proc = run_shell(tmp_path, happy_model_dir, ["/help", "", "/mood 0", "/frobnicate", "hello there"])
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "/correct LABEL" in proc.stdout and "/retrain [force]" in proc.stdout
    assert "error: /mood takes a number of days from 1 to 90" in proc.stdout
    assert "error: unknown command /frobnicate: /help lists the commands" in proc.stdout
    # the prediction made just before end of input was flushed when the store closed
    assert query(tmp_path / "shell.db", "SELECT label FROM predictions") == [("happiness",)]


def test_a_missing_model_folder_is_one_clear_line_and_exit_2(tmp_path):
    proc = run_shell(tmp_path, tmp_path / "missing", ["hello"])
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
