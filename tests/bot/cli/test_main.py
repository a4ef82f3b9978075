"""Settings and the command line: predict on a local folder, clear errors, the token kept secret."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest

from bot.cli import RedactToken, main
from bot.settings import Settings, SettingsError, load_settings

GOOD_TOKEN = "MTA4NzY1NDMyMTA5ODc2NTQzMg.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"


def test_defaults_and_parsing():
    s = load_settings({"EMOTION_THRESHOLD": "0.7", "EMOTION_DB": "x/y.db", "EMOTION_GUILD_ID": "123",
                       "EMOTION_QUANTIZE": "INT8", "EMOTION_LOG_LEVEL": "debug"})
    assert (s.threshold, str(s.db_path), s.guild_id, s.quantize, s.log_level) == (0.7, "x/y.db", 123, "int8", "DEBUG")
    assert load_settings({}).model == "boltuix/bert-emotion"


@pytest.mark.parametrize("env, match", [
    ({"EMOTION_THRESHOLD": "high"}, "EMOTION_THRESHOLD"),
    ({"EMOTION_THRESHOLD": "1.5"}, "between 0 and 1"),
    ({"EMOTION_QUANTIZE": "fp4"}, "EMOTION_QUANTIZE must be one of"),
    ({"EMOTION_MAX_BATCH": "0"}, "EMOTION_MAX_BATCH"),
    ({"EMOTION_RETENTION_DAYS": "-1"}, "EMOTION_RETENTION_DAYS must be greater than 0"),
    ({"EMOTION_CHANNEL_REACTIONS_PER_S": "0"}, "EMOTION_CHANNEL_REACTIONS_PER_S"),
])
def test_bad_settings_name_the_variable(env, match):
    with pytest.raises(SettingsError, match=match):
        load_settings(env)


def test_token_is_checked_and_never_echoed():
    with pytest.raises(SettingsError, match=r"DISCORD_TOKEN is not set.*\.env\.example"):
        Settings().require_token()
    with pytest.raises(SettingsError) as err:
        Settings(token="not-a-real-token-secret").require_token()
    assert "not-a-real-token-secret" not in str(err.value)
    assert Settings(token=GOOD_TOKEN).require_token() == GOOD_TOKEN
    assert GOOD_TOKEN not in repr(Settings(token=GOOD_TOKEN))


def test_log_filter_redacts_the_token():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactToken(GOOD_TOKEN))
    logger = logging.getLogger("redact-test")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("login with %s failed", GOOD_TOKEN)
        try:
            raise RuntimeError(f"bad {GOOD_TOKEN}")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert GOOD_TOKEN not in out
    assert "[token]" in out and "RuntimeError: bad [token]" in out  # the traceback kept, redacted


@pytest.mark.parametrize("token, expected", [("", "DISCORD_TOKEN is not set"), ("abc.def", "does not look like")])
def test_run_without_a_valid_token_exits_2_with_one_line(tmp_path, token, expected):
    env = {"PATH": "", "DISCORD_TOKEN": token, "HF_HUB_OFFLINE": "1", "EMOTION_DB": str(tmp_path / "x.db")}
    proc = subprocess.run([sys.executable, "-m", "bot"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 2
    assert expected in proc.stderr and ".env" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    if token:
        assert token not in proc.stderr


def test_run_with_a_missing_model_folder_exits_2(tmp_path):
    env = {"PATH": "", "DISCORD_TOKEN": GOOD_TOKEN, "EMOTION_MODEL": str(tmp_path / "missing"),
           "EMOTION_MODELS_DIR": str(tmp_path / "models"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "bot"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert GOOD_TOKEN not in proc.stdout + proc.stderr


def test_predict_prints_label_emoji_and_probability(tiny_model_dir, tiny_classifier, capsys):
    assert main(["predict", "--model", str(tiny_model_dir), "I'm so happy with my new phone!"]) == 0
    out = capsys.readouterr().out
    expected = tiny_classifier.predict(["I'm so happy with my new phone!"])[0]
    assert expected.label in out and f"{expected.score:.1%}" in out


def test_predict_json_top_k_and_stdin(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("i am so happy\n\nthis is terrible\n"))
    assert main(["predict", "--model", str(tiny_model_dir), "--json", "--top-k", "3"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == ["i am so happy", "this is terrible"]
    assert all(len(r["top"]) == 3 and r["top"][0]["label"] == r["label"] for r in rows)


def test_predict_on_a_missing_folder_is_one_clear_error(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path / "nope"), "hi"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_every_command_and_option_has_help():
    import argparse

    from bot.cli import build_parser

    def walk(parser, path):
        seen = 0
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {a.dest for a in action._choices_actions}
                for name, sub in action.choices.items():
                    assert name in helped, f"{path} {name} has no help line"
                    seen += 1 + walk(sub, f"{path} {name}")
            elif action.dest != "help":
                assert action.help, f"{path} {action.option_strings or action.dest} has no help"
        return seen

    assert walk(build_parser(), "emotion-machine") >= 8


def test_version_is_the_installed_package_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"emotion-machine {version('emotion-machine')}"


def test_the_license_file_matches_pyproject():
    from tests.helpers import ROOT

    assert '\nlicense = "MIT"\n' in (ROOT / "pyproject.toml").read_text()
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text
