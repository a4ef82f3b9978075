"""Opening a damaged database, and opening one on a read-only filesystem."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import bot.store.connection as connection
from bot.store import Correction, Store, StoreError
from tests.helpers import ROOT

LABELS = ("anger", "joy", "sadness", "neutral")


async def _filled(path: Path, n: int = 400) -> Path:
    """A database spread over enough pages that one in the middle is an ordinary b-tree page."""
    store = await Store.open(path, labels=LABELS)
    try:
        await store.add_examples([Correction(f"text {i} " + "x" * 400, LABELS[i % 4], source="import")
                                  for i in range(n)])
    finally:
        await store.close()  # the last connection checkpoints the WAL into the file
    return path


def _corrupt_a_middle_page(path: Path) -> None:
    data = path.read_bytes()
    page_size = int.from_bytes(data[16:18], "big")
    pages = len(data) // page_size
    assert pages > 20
    with open(path, "r+b") as f:
        f.seek((pages // 2) * page_size)  # a page boundary, far from the header page
        f.write(random.Random(1).randbytes(page_size))


async def test_a_database_with_a_corrupted_page_is_refused_naming_the_file_and_the_recovery(tmp_path):
    good = await _filled(tmp_path / "bot.db")
    bad = tmp_path / "damaged.db"
    shutil.copy(good, bad)
    _corrupt_a_middle_page(bad)
    with pytest.raises(StoreError) as err:
        await Store.open(bad, labels=LABELS)
    assert err.value.reason == "corrupt"
    message = str(err.value)
    assert str(bad) in message and "is damaged" in message
    assert f'sqlite3 {bad} ".recover" | sqlite3 {tmp_path / "damaged-recovered.db"}' in message
    store = await Store.open(good, labels=LABELS)  # the undamaged original still opens
    await store.close()


async def test_a_damaged_database_still_opens_read_only_to_salvage_what_is_left(tmp_path, caplog):
    bad = await _filled(tmp_path / "bot.db")
    _corrupt_a_middle_page(bad)
    with caplog.at_level(logging.WARNING, logger="bot.store"):
        store = await Store.open(bad, labels=LABELS, read_only=True)
    try:
        assert "is damaged" in caplog.text and ".recover" in caplog.text
        with pytest.raises(StoreError, match="read-only"):
            await store.add_correction(Correction("new", "joy", message_id=1, corrector_id=1))
    finally:
        await store.close()


async def test_the_check_is_skipped_with_a_log_line_above_the_size_bound(tmp_path, monkeypatch, caplog):
    bad = await _filled(tmp_path / "bot.db")
    _corrupt_a_middle_page(bad)
    monkeypatch.setattr(connection, "QUICK_CHECK_MAX_BYTES", 1024)
    with caplog.at_level(logging.INFO, logger="bot.store"):
        store = await Store.open(bad, labels=LABELS)
    await store.close()
    assert "skipped the integrity check" in caplog.text and "PRAGMA quick_check" in caplog.text


async def test_read_only_open_of_a_missing_file_says_so(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        await Store.open(tmp_path / "nope.db", read_only=True)
    assert not (tmp_path / "nope.db").exists()


READ_ONLY_CHILD = textwrap.dedent("""
    import argparse, asyncio, io, sys
    from bot.cli.data import run_export
    from bot.store import Store, StoreError
    from bot.export_import import export_examples

    async def main(path):
        try:
            await Store.open(path)
            print("read-write open: worked")
        except StoreError as exc:
            print("read-write open:", exc.reason)
        store = await Store.open(path, read_only=True)
        try:
            out = io.StringIO()
            print("exported", await export_examples(store, out, "csv"))
        finally:
            await store.close()

    asyncio.run(main(sys.argv[1]))
    sys.stdout.flush()
    sys.exit(run_export(argparse.Namespace(db=sys.argv[1], output="-", format="jsonl", since=None)))
""")


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-Urm", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


async def test_export_works_on_a_read_only_filesystem(tmp_path):
    """A real read-only mount (root ignores chmod): a WAL database cannot even be opened read-write there.

    ``unshare -Urm`` gives the child its own mount namespace in which the folder is bound read-only.
    """
    if not _unshare_works():
        pytest.skip("needs `unshare -Urm` (user and mount namespaces) to make a read-only mount")
    folder = tmp_path / "ro"
    folder.mkdir()
    await _filled(folder / "bot.db", n=30)
    script = (f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && '
              f'exec "{sys.executable}" -c "$0" "{folder / "bot.db"}"')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(["unshare", "-Urm", "sh", "-c", script, READ_ONLY_CHILD], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["read-write open: cantopen", "exported 30"]
    assert len([json.loads(line) for line in lines[2:]]) == 30  # `emotion-machine export` opens it read-only too
    assert sorted(p.name for p in folder.iterdir()) == ["bot.db"]


async def test_a_correction_with_a_lone_surrogate_is_stored_repaired_not_refused(tmp_path):
    """Discord's JSON may carry a lone ``\\ud800``: sqlite3 would raise UnicodeEncodeError on it."""
    from bot.store import Correction, Store

    store = await Store.open(tmp_path / "s.db")
    try:
        await store.add_correction(Correction("sad \ud83d\ude22 and \ud800 odd", "sadness", guild_id=1, channel_id=2,
                                              message_id=3, author_id=4, corrector_id=5))
        assert await store.corrections_for_training() == [("sad 😢 and \ufffd odd", "sadness")]
    finally:
        await store.close()
