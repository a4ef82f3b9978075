"""Crash safety: a correction whose add_correction() returned survives SIGKILL, on both backends."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bot.store import is_postgres_url
from tests.bot.store.backends import peek
from tests.helpers import ROOT

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from bot.store import Correction, PredictionRow, open_store

    async def main(target):
        store = await open_store(target, labels=["joy", "anger"], flush_interval=0.01, batch_size=20)
        i = 0
        while True:
            i += 1
            # Background prediction batches run concurrently with the corrections.
            await store.record_prediction(PredictionRow(1, 2, i, 3, "joy", 0.5))
            await store.add_correction(Correction(
                text=f"text {i} \\x00 😀", label="joy" if i % 2 else "anger",
                guild_id=1, message_id=i, corrector_id=1, author_id=2))
            print(i, flush=True)

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
async def test_returned_corrections_survive_sigkill(tmp_path: Path, target: str, opener):
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    db = target
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    returned: list[int] = []
    deadline = time.monotonic() + 20
    try:
        assert proc.stdout is not None
        while len(returned) < 60:  # kill mid-stream, while it is still writing
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"child died early: {proc.stderr.read() if proc.stderr else ''}")
            returned.append(int(line))
            assert time.monotonic() < deadline, "child too slow"
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    returned += [int(x) for x in rest.split()]  # printed before the kill, still in the pipe

    if not is_postgres_url(db):
        con = sqlite3.connect(db)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        con.close()
    store = await opener()
    try:
        rows = await peek(store, "SELECT message_id, text, label FROM corrections")
        saved = {mid: (text, label) for mid, text, label in rows}
        missing = [i for i in returned if i not in saved]
        assert not missing, f"acknowledged corrections lost: {missing[:10]}"
        i = returned[-1]
        # NUL reads back as U+FFFD on every backend (PostgreSQL cannot store it; records.storable)
        assert saved[i] == (f"text {i} \ufffd 😀", "joy" if i % 2 else "anger")
    finally:
        await store.close()
