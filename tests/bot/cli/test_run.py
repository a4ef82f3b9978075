"""`emotion-machine run` refusing to start: one line naming the fix, exit 2, nothing sent before the checks.

Each test runs the real command in a child process against the local fake Discord (as test_shutdown does).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

from tests.bot.test_shutdown import LAUNCH
from tests.helpers.fake_discord import TOKEN, FakeDiscord


async def _run_bot(tmp_path, model_dir, api_base: str, gateway_url: str, **env_extra: str) -> tuple[int, str]:
    """Run `emotion-machine run` until it exits; its exit status and stderr (logs at ERROR only)."""
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH)
    env = {**os.environ, "DISCORD_TOKEN": TOKEN, "EMOTION_MODEL": str(model_dir),
           "EMOTION_DB": str(tmp_path / "bot.db"), "EMOTION_MODELS_DIR": str(tmp_path / "models"),
           "EMOTION_QUANTIZE": "none", "EMOTION_LOG_LEVEL": "ERROR", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.getcwd(), **env_extra}
    proc = await asyncio.create_subprocess_exec(sys.executable, str(script), api_base, gateway_url, env=env,
                                                cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, err.decode()


def _one_line(status: int, err: str) -> str:
    assert status == 2, err
    assert "Traceback" not in err and TOKEN not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("emotion-machine: error: ")
    return lines[0]


@pytest.fixture
async def fake():
    server = await FakeDiscord(TOKEN, reaction_429s=0).start()
    try:
        yield server
    finally:
        await server.stop()


async def test_a_token_refused_at_the_gateway_is_one_line(tmp_path, happy_model_dir):
    """REST still takes the token, the gateway closes IDENTIFY with 4004 (the token was reset)."""
    server = await FakeDiscord(TOKEN, reaction_429s=0, identify_close=4004).start()
    try:
        status, err = await _run_bot(tmp_path, happy_model_dir, server.api_base, server.gateway_url)
        assert any(r["op"] == 2 for c in server.connections for r in c.received)  # it did IDENTIFY
    finally:
        await server.stop()
    line = _one_line(status, err)
    assert "DISCORD_TOKEN" in line and "Developer Portal" in line and ".env" in line


async def test_discord_unreachable_at_start_is_one_line(tmp_path, happy_model_dir):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    status, err = await _run_bot(tmp_path, happy_model_dir, f"http://127.0.0.1:{port}/api/v10",
                                 f"ws://127.0.0.1:{port}/")
    line = _one_line(status, err)
    assert "cannot reach Discord" in line and "network" in line


def _inside_a_file(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path / "afile" / "emotion.db"


def _a_folder(tmp_path):
    (tmp_path / "afolder").mkdir()
    return tmp_path / "afolder"


def _unwritable(tmp_path):
    """A folder the bot may not write in; root may write anywhere but in /proc."""
    if os.geteuid() == 0:
        return Path("/proc/self/emotion.db")
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "emotion.db"


@pytest.mark.parametrize("where", [_inside_a_file, _a_folder, pytest.param(
    _unwritable, marks=pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc as root"))])
async def test_a_bad_database_fails_before_login_in_one_line(tmp_path, happy_model_dir, fake, where):
    db = where(tmp_path)
    status, err = await _run_bot(tmp_path, happy_model_dir, fake.api_base, fake.gateway_url, EMOTION_DB=str(db))
    line = _one_line(status, err)
    assert str(db) in line and "EMOTION_DB" in line
    assert fake.requests == [] and fake.connections == []  # refused before anything reached Discord


def test_shard_and_cluster_options_are_checked_before_anything_starts(monkeypatch, capsys, tmp_path):
    from bot.cli import main
    from bot.cli.run import shard_range

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    assert shard_range("0-3") == [0, 1, 2, 3] and shard_range("5") == [5]
    assert main(["run", "--shards", "0-3"]) == 2
    assert "--shards needs --shard-count" in capsys.readouterr().err
    assert main(["run", "--shards", "4-7", "--shard-count", "4"]) == 2
    assert "outside --shard-count 4 (shards are 0-3)" in capsys.readouterr().err
    assert main(["cluster", "--processes", "3", "--shard-count", "2"]) == 2
    assert "a process needs at least one shard" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--shards", "three"])
    assert "not a shard range like 0-3" in capsys.readouterr().err
