"""Model versions on disk: ``v1``, ``v2``, … under one root, and an atomic ``current`` pointer.

Layout::

    data/models/
        v1/  config.json, model.safetensors, tokenizer files, emotion_machine.json
        v2/  …
        current          one line: the version the bot loads ("v2")
        history.jsonl    every change of ``current`` (what ``rollback()`` walks back through)
        .tmp-v3-<pid>-…  a save in progress (or one killed mid-way: cleaned up later)

Why it survives a kill at any moment: a version is written in full to a temp folder inside the
root, then renamed into place in one ``os.rename`` (atomic on one filesystem); ``current`` is
written to a temp file and ``os.replace``d. A reader therefore sees the old state or the new
one, never a half-written model. Deleting goes the same way round (rename away, then remove).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

META_FILE = "emotion_machine.json"
#: A server's version holds only its head (model/heads.py): these weights and the metadata.
HEAD_FILE = "head.safetensors"
CURRENT_FILE = "current"
HISTORY_FILE = "history.jsonl"
DEFAULT_ROOT = "data/models"

_VERSION = re.compile(r"^v(\d+)$")
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
#: A temp folder older than this is abandoned even if its pid is alive (pid reuse).
STALE_AFTER_S = 6 * 3600


class RegistryError(RuntimeError):
    """A registry operation cannot be done; the message says why and what to run instead."""


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One saved version: its name (``v3``), folder and metadata."""

    name: str
    path: Path
    metadata: dict[str, Any] = field(repr=False, hash=False, compare=False)

    @property
    def number(self) -> int:
        return int(self.name[1:])

    @property
    def created(self) -> str:
        return str(self.metadata.get("created", ""))


def version_number(name: str) -> int:
    """``v3`` → 3; anything else is a RegistryError naming the expected shape."""
    m = _VERSION.match(str(name).strip())
    if not m:
        raise RegistryError(f"{name!r} is not a version name: versions are named v1, v2, …")
    return int(m.group(1))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new content, never a mix (nor an empty file).

    A temp file in the same folder, fsynced, then ``os.replace``d over ``path``; a failure removes the temp file.
    """
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


#: A saved model has one of these (sharded checkpoints have the index).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                "pytorch_model.bin", "pytorch_model.bin.index.json")


def _incomplete(folder: Path) -> str | None:
    """Why ``folder`` is not a loadable model (cheap checks: files, config.json parses), or None."""
    if (folder / HEAD_FILE).is_file():
        return None if (folder / META_FILE).is_file() else f"it has no {META_FILE}"
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "it has no config.json"
    except (OSError, ValueError) as exc:
        return f"its config.json cannot be read ({type(exc).__name__})"
    if not isinstance(config, dict):
        return "its config.json is not a JSON object"
    if not any((folder / n).is_file() for n in WEIGHT_FILES):
        return f"it has no weights ({' or '.join(WEIGHT_FILES[::2])})"
    return None


#: Where the servers' own lines of versions live, one folder per server id, inside the base's root.
SERVERS_DIR = "servers"


def server_root(models_dir: str | os.PathLike, guild_id: int) -> Path:
    """The folder of one server's line of versions (heads on the base: model/heads.py)."""
    return Path(models_dir).expanduser() / SERVERS_DIR / str(int(guild_id))


def server_lines(models_dir: str | os.PathLike) -> list[int]:
    """Ids of the servers that have a line of versions (trained at least once), sorted."""
    root = Path(models_dir).expanduser() / SERVERS_DIR
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Registry:
    """The versions under ``root``; cheap to create, holds no state beyond the path."""

    def __init__(self, root: str | os.PathLike = DEFAULT_ROOT) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r})"

    # ------------------------------------------------------------------ reading

    def list(self) -> list[ModelVersion]:
        """Committed versions, oldest first. Temp and half-deleted folders are skipped (and stale ones removed)."""
        if not self.root.is_dir():
            return []
        self._clean_stale()
        versions = []
        for child in self.root.iterdir():
            if not _VERSION.match(child.name) or not child.is_dir():
                continue
            meta = self._read_meta(child)
            if meta is not None:
                versions.append(ModelVersion(child.name, child, meta))
        return sorted(versions, key=lambda v: v.number)

    def get(self, name: str) -> ModelVersion:
        """The version called ``name``; RegistryError listing the ones there are if missing."""
        version_number(name)
        path = self.root / name.strip()
        meta = self._read_meta(path) if path.is_dir() else None
        if meta is None:
            have = ", ".join(v.name for v in self.list()) or "none"
            raise RegistryError(f"model version {name!r} does not exist in {self.root} (versions: {have})")
        return ModelVersion(path.name, path, meta)

    def current_name(self) -> str | None:
        """What the ``current`` pointer says, unchecked; None when there is none."""
        try:
            name = (self.root / CURRENT_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return name or None

    def current(self) -> ModelVersion | None:
        """The current version, or None when nothing has been deployed yet.

        A pointer to a missing version is an error rather than a silent fallback: the bot
        would otherwise start on a model nobody chose.
        """
        name = self.current_name()
        if name is None:
            return None
        try:
            return self.get(name)
        except RegistryError:
            raise RegistryError(
                f"{self.root / CURRENT_FILE} points at {name!r}, which is missing. "
                "Fix: `emotion-machine models rollback VERSION` with a version from `models list`.") from None

    def current_path(self) -> Path | None:
        """Folder of the current version (what ``Classifier.load`` takes), or None."""
        version = self.current()
        return version.path if version else None

    def history(self) -> list[dict[str, Any]]:
        """Every change of ``current``, oldest first (a torn last line is skipped)."""
        try:
            lines = (self.root / HISTORY_FILE).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    # ------------------------------------------------------------------ changing current

    def set_current(self, name: str, *, reason: str = "set") -> ModelVersion:
        """Point ``current`` at ``name`` and note it in the history.

        Validate, record, then move the pointer (atomically) last: whatever fails raises with
        ``current`` where it was, never after it moved.
        """
        version = self.get(name)
        problem = _incomplete(version.path)
        if problem:
            raise RegistryError(f"{version.name} ({version.path}) is not a complete model: {problem}; "
                                f"current is still {self.current_name() or 'the base model'}")
        self._record(version.name, reason)
        write_atomic(self.root / CURRENT_FILE, version.name + "\n")
        log.info("current model version: %s (%s)", version.name, reason)
        return version

    def clear_current(self, *, reason: str = "cleared") -> None:
        """No version is current any more: the bot serves its base model (``EMOTION_MODEL``) on its next start.

        What a failed first deploy does, so a restart does not load a model that cannot load.
        """
        previous = self.current_name()
        if previous is None:
            return
        self._record(None, reason)
        (self.root / CURRENT_FILE).unlink(missing_ok=True)
        _fsync_dir(self.root)
        log.info("no current model version (was %s): %s", previous, reason)

    def _record(self, name: str | None, reason: str) -> None:
        """Append a change of ``current`` to the history; RegistryError (pointer untouched) if it cannot."""
        entry = {"version": name, "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "reason": reason}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / HISTORY_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
        except OSError as exc:
            raise RegistryError(f"could not record the change in {self.root / HISTORY_FILE} ({exc.strerror or exc}); "
                                f"current is still {self.current_name() or 'the base model'}") from exc

    def rollback(self, name: str | None = None) -> ModelVersion:
        """Make ``name`` current; None means the newest *older* version that was ever current.

        Walking back skips candidates that were saved but never deployed, so repeated rollbacks
        go v3 → v2 → v1 rather than onto a model the gate refused. Without a history (versions
        copied in by hand) it takes the newest version below the current one.
        """
        if name is not None:
            return self.set_current(name, reason="rollback")
        current = self.current()
        if current is None:
            raise RegistryError("nothing to roll back: no version is current yet")
        versions = {v.name: v for v in self.list()}
        deployed = {e.get("version") for e in self.history()}
        older = [v for v in versions.values() if v.number < current.number]
        candidates = [v for v in older if v.name in deployed] if deployed else older
        if not candidates:
            raise RegistryError(
                f"no earlier deployed version to roll back to from {current.name}: name one explicitly "
                f"(versions: {', '.join(versions) or 'none'}), or delete {self.root / CURRENT_FILE} "
                "to go back to the base model (EMOTION_MODEL)")
        return self.set_current(max(candidates, key=lambda v: v.number).name, reason=f"rollback from {current.name}")

    # ------------------------------------------------------------------ writing versions

    def allocate(self) -> tuple[str, Path]:
        """A new version name and an empty temp folder inside the root to save it into.

        The name is a reservation, not a promise: :meth:`commit` takes the next free number
        if another process committed this one in the meantime.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        numbers = [v.number for v in self.list()]
        numbers += [int(m.group(1)) for p in self.root.glob(f"{_TMP_PREFIX}v*-*")
                    if (m := re.match(rf"{re.escape(_TMP_PREFIX)}v(\d+)-", p.name))]
        name = f"v{max(numbers, default=0) + 1}"
        tmp = self.root / f"{_TMP_PREFIX}{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        return name, tmp

    def commit(self, tmp_dir: str | os.PathLike, metadata: dict[str, Any]) -> ModelVersion:
        """Write ``metadata`` into ``tmp_dir`` and rename it into place as the next version.

        Does not touch ``current``: deploying is a separate, deliberate :meth:`set_current`.
        """
        tmp = Path(tmp_dir)
        if tmp.parent.resolve() != self.root.resolve() or not tmp.name.startswith(_TMP_PREFIX):
            raise RegistryError(f"{tmp} was not allocated by this registry (use Registry.allocate())")
        if not (tmp / "config.json").is_file() and not (tmp / HEAD_FILE).is_file():
            raise RegistryError(f"{tmp} holds no saved model (config.json is missing)")
        m = re.match(rf"{re.escape(_TMP_PREFIX)}v(\d+)-", tmp.name)
        number = int(m.group(1)) if m else 1
        meta = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **metadata}
        for _ in range(1000):
            name = f"v{number}"
            meta["version"] = name
            write_atomic(tmp / META_FILE, json.dumps(meta, indent=2, default=str) + "\n")
            _fsync_dir(tmp)
            target = self.root / name
            if not target.exists():
                try:
                    os.rename(tmp, target)
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    # lost a race for this number to another process: take the next one
                else:
                    _fsync_dir(self.root)
                    log.info("saved model version %s", name)
                    return ModelVersion(name, target, meta)
            number += 1
        raise RegistryError(f"could not find a free version number in {self.root}")

    def discard(self, tmp_dir: str | os.PathLike) -> None:
        """Remove an allocated temp folder that will not be committed."""
        shutil.rmtree(tmp_dir, ignore_errors=True)

    def prune(self, keep: int) -> list[str]:
        """Delete all but the ``keep`` newest versions; the current one is always kept. Returns the deleted names."""
        if keep < 1:
            raise RegistryError(f"prune needs keep >= 1, not {keep}")
        versions = self.list()
        current = self.current_name()
        keep_names = {v.name for v in versions[-keep:]} | {current}
        deleted = []
        for version in versions:
            if version.name in keep_names:
                continue
            trash = self.root / f"{_TRASH_PREFIX}{version.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(version.path, trash)  # gone from list() at once, even if the rmtree is cut short
            shutil.rmtree(trash, ignore_errors=True)
            deleted.append(version.name)
        if deleted:
            log.info("pruned model versions: %s", ", ".join(deleted))
        return deleted

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _read_meta(path: Path) -> dict[str, Any] | None:
        try:
            meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            return None
        return meta if isinstance(meta, dict) else None

    def _clean_stale(self) -> None:
        """Remove temp/trash folders whose writer is dead (or that are very old)."""
        now = time.time()
        for child in self.root.iterdir():
            if not child.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)):
                continue
            m = re.search(r"-(\d+)-[0-9a-f]{8}$", child.name)
            try:
                age = now - child.stat().st_mtime
            except FileNotFoundError:
                continue
            dead = m is None or not _pid_alive(int(m.group(1)))
            if dead or age > STALE_AFTER_S or child.name.startswith(_TRASH_PREFIX):
                if child.name.startswith(_TRASH_PREFIX) and not dead and age < 60:
                    continue  # a prune in progress in another process
                log.info("removing abandoned %s", child.name)
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
