"""``emotion-machine shell`` driven end to end through its stdin, as a person (or a pipe) would."""

from __future__ import annotations

import argparse
import fcntl
import io
import os
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from bot.cli import build_parser
from bot.cli import shell as cli_shell
from bot.shell import Shell
from model.labels import SEED13
from model.registry import Registry
from tests.helpers import ROOT, build_tiny_model


def shell_env(**extra: str) -> dict[str, str]:
    """This environment without the bot's settings, offline, with the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMOTION_", "DISCORD_"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONIOENCODING="utf-8", PYTHON_DOTENV_DISABLED="1",
               TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])), **extra)
    return env


def shell_argv(tmp_path: Path, model_dir: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "bot", "shell", "--model", str(model_dir), "--db", str(tmp_path / "shell.db"),
            "--models-dir", str(tmp_path / "models"), "--device", "cpu", *options]


def run_shell(tmp_path: Path, model_dir: Path, lines: list[str], *options: str) -> subprocess.CompletedProcess:
    """``python -m bot shell`` on a tiny model, fed ``lines``; settings only from the options given."""
    return subprocess.run(shell_argv(tmp_path, model_dir, *options), input="".join(line + "\n" for line in lines),
                          capture_output=True, text=True, encoding="utf-8", env=shell_env(), cwd=tmp_path, timeout=180)


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
    assert "error: Only 2 corrections from the servers that share theirs, imports and the shell so far; " \
           "retraining needs at least 3" in out

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


# --------------------------------------------------------------------------- when the bot would not react


@pytest.fixture(scope="module")
def neutral_classifier(tmp_path_factory):
    from model.classifier import Classifier

    return Classifier.load(build_tiny_model(tmp_path_factory.mktemp("neutral") / "model", confident="neutral"),
                           device="cpu", version="base")


@pytest.mark.parametrize("model, note", [
    ("tiny_classifier", "   (below the 0.50 threshold: the bot would not react)"),   # p ≈ 1/13 for every label
    ("neutral_classifier", "   (neutral, and show_neutral is off: the bot would not react)"),
    ("happy_classifier", None),
])
async def test_the_shell_says_when_the_bot_would_not_react(tmp_path, bot_settings, request, model, note):
    out = io.StringIO()
    shell = await Shell.open(bot_settings, request.getfixturevalue(model), out=out, err=io.StringIO(),
                             chart_path=tmp_path / "mood.png")
    try:
        await shell.handle("i am so happy")
    finally:
        await shell.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == (5 if note else 4)  # the label, the top 3, and the note where there is one
    assert note is None or lines[-1] == note
    assert "would not react" not in out.getvalue() or note


# --------------------------------------------------------------------------- its own database


def test_the_shell_has_its_own_database_unless_told(tmp_path, tiny_model_dir, monkeypatch):
    for name in [k for k in os.environ if k.startswith(("EMOTION_", "DISCORD_"))]:
        monkeypatch.delenv(name)
    bot_db = tmp_path / "data" / "emotion.db"
    monkeypatch.setenv("EMOTION_DB", str(bot_db))
    monkeypatch.chdir(tmp_path)
    parser = build_parser()
    out = io.StringIO()
    args = parser.parse_args(["shell", "--model", str(tiny_model_dir), "--models-dir", str(tmp_path / "models"),
                              "--device", "cpu"])
    assert cli_shell.run_shell(args, stdin=io.StringIO("hello\n"), stdout=out, stderr=io.StringIO()) == 0
    banner = out.getvalue().splitlines()[0]
    assert f"database {tmp_path / 'data' / 'shell.db'} (the shell's own; the bot's is {bot_db}" in banner
    assert not bot_db.exists() and query(tmp_path / "data" / "shell.db", "SELECT COUNT(*) FROM predictions") == [(1,)]

    chosen = tmp_path / "chosen.db"
    args = parser.parse_args(["shell", "--model", str(tiny_model_dir), "--models-dir", str(tmp_path / "models"),
                              "--device", "cpu", "--db", str(chosen)])
    out = io.StringIO()
    assert cli_shell.run_shell(args, stdin=io.StringIO(""), stdout=out, stderr=io.StringIO()) == 0
    assert f"database {chosen}." in out.getvalue() and chosen.exists() and not bot_db.exists()
    db_help = next(a.help for a in parser._subparsers._group_actions[0].choices["shell"]._actions if a.dest == "db")
    assert "shell.db beside EMOTION_DB" in db_help


# --------------------------------------------------------------------------- a terminal: line editing, history


class Terminal:
    """The far side of a pty: what was shown, and waiting for a marker (the output is read as it comes)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.seen, self.pos = fd, bytearray(), 0

    def expect(self, marker: bytes, timeout: float = 60) -> None:
        """Wait until ``marker`` is shown after the previous one."""
        while (found := self.seen.find(marker, self.pos)) < 0:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            assert ready, f"no {marker!r} within {timeout} s; the terminal shows {bytes(self.seen)!r}"
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: the shell closed its side
                chunk = b""
            assert chunk, f"the shell ended before {marker!r}; the terminal shows {bytes(self.seen)!r}"
            self.seen += chunk
        self.pos = found + len(marker)

    def type(self, keys: bytes, then: bytes = b"> ") -> None:
        os.write(self.fd, keys)
        self.expect(then)


def test_in_a_terminal_the_up_arrow_recalls_the_last_line(tmp_path, happy_model_dir):
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    settings_before = termios.tcgetattr(slave)
    env = shell_env(HOME=str(tmp_path), TERM="xterm", INPUTRC=os.devnull)
    proc = subprocess.Popen(shell_argv(tmp_path, happy_model_dir), stdin=slave, stdout=slave, stderr=slave,
                            env=env, cwd=tmp_path, start_new_session=True)
    terminal = Terminal(master)
    try:
        terminal.expect(b"> ")
        terminal.type(b"hello\r")
        terminal.type(b"\x1b[A\r")  # up arrow, Enter: "hello" again
        terminal.type(b"/correct sadness\r")  # says which text it corrected
        terminal.type(b"half a li", then=b"half a li")
        proc.send_signal(signal.SIGINT)  # Ctrl-C while readline holds the terminal
        assert proc.wait(timeout=30) == 130
        assert termios.tcgetattr(slave) == settings_before  # echo and line mode are back
    finally:
        proc.kill()
        os.close(master)
        os.close(slave)
    shown = terminal.seen.decode("utf-8", "replace")
    assert "'hello': Changed 😄 happiness → 😢 sadness" in shown and "[A" not in shown
    history = (tmp_path / ".emotion_machine_history").read_text(encoding="utf-8").splitlines()
    assert history == ["hello", "/correct sadness"]  # "hello" recalled is one entry, not two
    assert (tmp_path / ".emotion_machine_history").stat().st_mode & 0o077 == 0  # the user's words: private
