"""Model versions on disk: list, current, rollback, prune, and surviving a kill mid-save."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from model.classifier import Classifier
from model.registry import META_FILE, Registry, RegistryError
from tests.helpers import ROOT


def save_version(registry: Registry, model_dir: Path, **meta) -> str:
    """Commit a copy of ``model_dir`` the way finetune does: allocate, write, commit."""
    name, tmp = registry.allocate()
    for f in model_dir.iterdir():
        shutil.copy2(f, tmp / f.name)
    return registry.commit(tmp, {"base": "tiny", **meta}).name


def test_empty_registry(tmp_path):
    registry = Registry(tmp_path / "models")
    assert registry.list() == [] and registry.current() is None and registry.current_path() is None
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()
    with pytest.raises(RegistryError, match="does not exist"):
        registry.set_current("v1")
    with pytest.raises(RegistryError, match="not a version name"):
        registry.set_current("latest")


def test_versions_are_numbered_and_current_is_loadable(tmp_path, tiny_model_dir):
    registry = Registry(tmp_path / "models")
    assert [save_version(registry, tiny_model_dir) for _ in range(3)] == ["v1", "v2", "v3"]
    assert [v.name for v in registry.list()] == ["v1", "v2", "v3"]
    assert registry.current() is None  # committing never deploys
    registry.set_current("v2")
    assert (registry.root / "current").read_text().strip() == "v2"
    assert registry.current_path() == registry.root / "v2"
    meta = registry.get("v2").metadata
    assert meta["version"] == "v2" and meta["base"] == "tiny" and meta["created"]
    clf = Classifier.load(registry.current_path(), device="cpu")
    assert clf.version == "v2"  # Classifier reads emotion_machine.json


def test_rollback_walks_back_through_deployed_versions_only(tmp_path, tiny_model_dir):
    registry = Registry(tmp_path / "models")
    for _ in range(4):
        save_version(registry, tiny_model_dir)
    registry.set_current("v1")
    registry.set_current("v2")
    # v3 was saved but never deployed (a refused candidate)
    registry.set_current("v4")
    assert registry.rollback().name == "v2"
    assert registry.rollback().name == "v1"
    with pytest.raises(RegistryError, match="no earlier deployed version"):
        registry.rollback()
    assert registry.rollback("v3").name == "v3"  # explicit: anything that exists
    assert [e["version"] for e in registry.history()] == ["v1", "v2", "v4", "v2", "v1", "v3"]


def test_rollback_without_history_takes_the_previous_number(tmp_path, tiny_model_dir):
    registry = Registry(tmp_path / "models")
    for _ in range(3):
        save_version(registry, tiny_model_dir)
    (registry.root / "current").write_text("v3\n")  # copied in by hand: no history
    assert registry.rollback().name == "v2"


def test_prune_keeps_newest_and_current(tmp_path, tiny_model_dir):
    registry = Registry(tmp_path / "models")
    for _ in range(5):
        save_version(registry, tiny_model_dir)
    registry.set_current("v1")
    assert registry.prune(keep=2) == ["v2", "v3"]
    assert [v.name for v in registry.list()] == ["v1", "v4", "v5"]
    assert registry.prune(keep=1) == ["v4"]
    assert [v.name for v in registry.list()] == ["v1", "v5"]
    assert not [p for p in registry.root.iterdir() if p.name.startswith(".")]
    with pytest.raises(RegistryError):
        registry.prune(keep=0)
    assert save_version(registry, tiny_model_dir) == "v6"  # numbers are never reused


def test_current_pointing_at_a_missing_version_is_a_clear_error(tmp_path, tiny_model_dir):
    registry = Registry(tmp_path / "models")
    save_version(registry, tiny_model_dir)
    (registry.root / "current").write_text("v9\n")
    with pytest.raises(RegistryError, match="points at 'v9'.*rollback"):
        registry.current()


def test_failure_inside_commit_leaves_current_alone(tmp_path, tiny_model_dir, monkeypatch):
    registry = Registry(tmp_path / "models")
    save_version(registry, tiny_model_dir)
    registry.set_current("v1")
    name, tmp = registry.allocate()
    shutil.copy2(tiny_model_dir / "config.json", tmp / "config.json")  # half a model

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "rename", boom)
    with pytest.raises(OSError):
        registry.commit(tmp, {"base": "tiny"})
    monkeypatch.undo()
    fresh = Registry(registry.root)
    assert [v.name for v in fresh.list()] == ["v1"] and fresh.current().name == "v1"
    # and a failed pointer write keeps the old pointer
    registry.discard(tmp)
    assert save_version(fresh, tiny_model_dir) == "v2"
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        fresh.set_current("v2")
    monkeypatch.undo()
    assert Registry(registry.root).current().name == "v1"


_SAVE_AND_HANG = textwrap.dedent("""
    import shutil, sys, time
    from pathlib import Path
    from model.registry import Registry
    registry = Registry(sys.argv[1])
    name, tmp = registry.allocate()
    shutil.copy2(Path(sys.argv[2]) / "config.json", tmp / "config.json")
    with open(tmp / "model.safetensors", "wb") as f:
        f.write(b"half a model")
        f.flush()
        print(name, flush=True)
        time.sleep(60)
""")


def test_sigkill_during_save_leaves_current_valid(tmp_path, tiny_model_dir):
    registry = Registry(tmp_path / "models")
    save_version(registry, tiny_model_dir)
    registry.set_current("v1")
    child = subprocess.Popen([sys.executable, "-c", _SAVE_AND_HANG, str(registry.root), str(tiny_model_dir)],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "v2"
        assert any(p.name.startswith(".tmp-v2-") for p in registry.root.iterdir())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    fresh = Registry(registry.root)
    assert fresh.current().name == "v1" and [v.name for v in fresh.list()] == ["v1"]
    assert not any(p.name.startswith(".tmp-") for p in fresh.root.iterdir())  # the dead writer's folder is gone
    assert Classifier.load(fresh.current_path(), device="cpu").version == "v1"
    assert save_version(fresh, tiny_model_dir) == "v2"


def test_commit_refuses_foreign_or_empty_folders(tmp_path):
    registry = Registry(tmp_path / "models")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(RegistryError, match="not allocated"):
        registry.commit(elsewhere, {})
    _, tmp = registry.allocate()
    with pytest.raises(RegistryError, match="config.json is missing"):
        registry.commit(tmp, {})
    assert not (tmp / META_FILE).exists()


def test_set_current_that_cannot_be_recorded_leaves_the_pointer_where_it_was(tmp_path, tiny_model_dir):
    """The pointer moves last: a failure before it (here the history) leaves current as it was."""
    registry = Registry(tmp_path / "models")
    save_version(registry, tiny_model_dir)
    save_version(registry, tiny_model_dir)
    registry.set_current("v1")
    (registry.root / "history.jsonl").unlink()
    (registry.root / "history.jsonl").mkdir()  # appending to it fails
    with pytest.raises(RegistryError, match="history.*current is still v1"):
        registry.set_current("v2")
    assert registry.current_name() == "v1"


@pytest.mark.parametrize("damage", ["config", "weights"])
def test_set_current_validates_the_version_before_moving_the_pointer(tmp_path, tiny_model_dir, damage):
    registry = Registry(tmp_path / "models")
    save_version(registry, tiny_model_dir)
    save_version(registry, tiny_model_dir)
    registry.set_current("v1")
    if damage == "config":
        (registry.root / "v2" / "config.json").write_text("")  # what an in-place rewrite killed mid-way left
    else:
        (registry.root / "v2" / "model.safetensors").unlink()
    with pytest.raises(RegistryError, match="v2.*not a complete model"):
        registry.set_current("v2")
    assert registry.current_name() == "v1"
    assert [e["version"] for e in registry.history()] == ["v1"]


def test_clear_current_goes_back_to_the_base_model_and_says_so_in_the_history(tmp_path, tiny_model_dir):
    registry = Registry(tmp_path / "models")
    save_version(registry, tiny_model_dir)
    registry.set_current("v1")
    registry.clear_current(reason="v1 could not be loaded")
    assert registry.current_name() is None and registry.current() is None
    assert registry.history()[-1]["version"] is None and registry.history()[-1]["reason"] == "v1 could not be loaded"
    registry.clear_current()  # nothing current: nothing to do, nothing recorded
    assert len(registry.history()) == 2
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()
