"""``emotion-machine predict``: stdin and arguments are treated alike, and bad input never loses the good lines."""

from __future__ import annotations

import io
import json
import sys

from bot.cli import main


def _stdin(data: bytes) -> io.TextIOWrapper:
    """What a real piped stdin is: bytes under a strict UTF-8 text layer."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="strict")


def test_invalid_utf8_on_stdin_is_reported_by_line_and_the_good_lines_are_classified(
        tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", _stdin(b"i am so happy\ncaf\xe9 latin-1\n\n   \nthis is terrible\r\n"))
    assert main(["predict", "--model", str(tiny_model_dir), "--json"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == ["i am so happy", "caf\ufffd latin-1", "this is terrible"]
    assert "stdin line 2 is not valid UTF-8" in err
    assert "skipped 2 blank texts" in err
    assert "Traceback" not in err


def test_blank_arguments_are_skipped_as_on_stdin(tiny_model_dir, capsys):
    assert main(["predict", "--model", str(tiny_model_dir), "i am so happy", "", "  \t", "sad"]) == 0
    out, err = capsys.readouterr()
    assert [line.split("\t")[-1] for line in out.splitlines()] == ["i am so happy", "sad"]
    assert "skipped 2 blank texts" in err


def test_undecodable_argument_bytes_are_replaced_not_a_crash(tiny_model_dir, capsys):
    # Python decodes argv with surrogateescape: b"caf\xe9" arrives as "caf\udce9".
    assert main(["predict", "--model", str(tiny_model_dir), "caf\udce9"]) == 0
    out, err = capsys.readouterr()
    assert out.rstrip("\n").endswith("\tcaf\ufffd")
    assert "argument 1 is not valid UTF-8" in err


def test_only_blank_texts_is_a_usage_error(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", _stdin(b"\n  \n"))
    assert main(["predict", "--model", str(tiny_model_dir)]) == 2
    assert "give one or more texts" in capsys.readouterr().err
