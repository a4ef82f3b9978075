"""`emotion-machine run` as a real process: log in to the local fake Discord, tag, then SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap

from tests.helpers.fake_discord import TOKEN, FakeDiscord

LAUNCH = textwrap.dedent("""
    import sys
    import discord.gateway, discord.http, yarl
    discord.http.Route.BASE = sys.argv[1]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sys.argv[2])
    from bot.cli import main
    sys.exit(main(["run", *sys.argv[3:]]))
""")


async def _wait(predicate, timeout: float, proc) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if proc.returncode is not None:
            raise AssertionError(f"the bot exited early with {proc.returncode}")
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def test_sigterm_finishes_in_flight_work_and_closes_cleanly(tmp_path, happy_model_dir):
    fake = await FakeDiscord(TOKEN, reaction_429s=0).start()
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH)
    db = tmp_path / "bot.db"
    env = {**os.environ, "DISCORD_TOKEN": TOKEN, "EMOTION_MODEL": str(happy_model_dir), "EMOTION_DB": str(db),
           "EMOTION_MODELS_DIR": str(tmp_path / "models"), "EMOTION_QUANTIZE": "none", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.getcwd()}
    proc = await asyncio.create_subprocess_exec(sys.executable, str(script), fake.api_base, fake.gateway_url,
                                                env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        await _wait(lambda: any(c.identify is not None for c in fake.connections), 60, proc)
        await asyncio.sleep(0.5)  # READY and GUILD_CREATE processed
        ids = [await fake.push_message(f"so happy {i}") for i in range(5)]
        await _wait(lambda: len(fake.reactions) >= 5, 30, proc)
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await fake.stop()
    log = output.decode()
    assert proc.returncode == 0, log
    assert "SIGTERM: shutting down" in log and "Traceback" not in log
    assert TOKEN not in log
    con = sqlite3.connect(db)
    try:
        rows = {r[0] for r in con.execute("SELECT message_id FROM predictions")}
        assert rows == set(ids)  # buffered predictions were flushed on close
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def test_the_startup_heap_is_frozen_out_of_full_collections():
    """`emotion-machine run` calls this before connecting (its real-process test runs through it)."""
    import gc

    from bot.client import freeze_startup_heap

    gc.unfreeze()
    try:
        freeze_startup_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # torch, transformers and discord.py are already imported here
        assert len(gc.get_objects(generation=2)) < frozen
    finally:
        gc.unfreeze()  # the rest of the test session collects normally
