"""Does ``.venv`` need ``pip install -e .``? A stamp of the last install answers without pip or the network.

The stamp holds the hash of ``pyproject.toml`` and the extras installed with it; ``scripts/setup`` installs
only when the hash changed or an extra is asked for that is not installed yet. Standard library only::

    python scripts/venv_stamp.py check  STAMP PYPROJECT [EXTRAS]   # exit 0: up to date, 1: install
    python scripts/venv_stamp.py record STAMP PYPROJECT [EXTRAS]   # after a successful install
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path


def fingerprint(pyproject: Path) -> str:
    return hashlib.sha256(pyproject.read_bytes()).hexdigest()


def parse_extras(text: str) -> set[str]:
    return {e.strip() for e in text.split(",") if e.strip()}


def read(stamp: Path) -> dict:
    """The stamp's content; {} when it is missing or unreadable (then the install runs)."""
    try:
        state = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def needs_install(stamp: Path, pyproject: Path, extras: set[str]) -> bool:
    state = read(stamp)
    return state.get("pyproject") != fingerprint(pyproject) or not extras <= set(state.get("extras", []))


def record(stamp: Path, pyproject: Path, extras: set[str]) -> None:
    """Remember this install; extras installed earlier with the same pyproject.toml stay installed."""
    state, digest = read(stamp), fingerprint(pyproject)
    kept = set(state.get("extras", [])) if state.get("pyproject") == digest else set()
    stamp.write_text(json.dumps({"pyproject": digest, "extras": sorted(kept | extras)}) + "\n")


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4) or argv[0] not in ("check", "record"):
        print(__doc__, file=sys.stderr)
        return 2
    command, stamp, pyproject = argv[0], Path(argv[1]), Path(argv[2])
    extras = parse_extras(argv[3] if len(argv) == 4 else "")
    if command == "check":
        return 1 if needs_install(stamp, pyproject, extras) else 0
    record(stamp, pyproject, extras)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
