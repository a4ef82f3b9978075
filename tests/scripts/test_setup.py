"""scripts/setup installs only when pyproject.toml (or the extras asked for) changed, and builds without downloads.

The venv here is a fake: its ``python`` logs every call and answers pip and the import checks itself, so the
script's decisions are checked in milliseconds and offline; the stamp helper runs on the real interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
case "$1" in
  -m|-c) exit 0 ;;  # pip installs, and torch / setuptools are present
  *) exec "$REAL_PYTHON" "$@" ;;
esac
"""


@pytest.fixture
def checkout(tmp_path):
    """A copy of the scripts and pyproject.toml with a complete (fake) .venv."""
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("python", FAKE_PYTHON), ("emotion-machine", "#!/bin/sh\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return tmp_path


def setup(checkout, extras: str = "") -> list[str]:
    """Run scripts/setup; the pip commands it ran."""
    log = checkout / "calls.log"
    log.write_text("")
    env = {**os.environ, "FAKE_LOG": str(log), "REAL_PYTHON": sys.executable, "EXTRAS": extras, "WITH_MINILM": "0"}
    out = subprocess.run(["bash", str(checkout / "scripts" / "setup")], env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    return [line for line in log.read_text().splitlines() if line.startswith("-m pip")]


def test_setup_installs_once_then_only_when_pyproject_or_the_extras_change(checkout):
    first = setup(checkout)
    assert len(first) == 1 and "-e ." in first[0]
    assert "--no-build-isolation" in first[0]  # setuptools is in the venv: nothing to download to build
    assert setup(checkout) == []  # unchanged: no pip, no network
    assert len(setup(checkout, "test")) == 1  # an extra not installed yet
    assert setup(checkout) == [] and setup(checkout, "test") == []  # installed extras stay installed
    with (checkout / "pyproject.toml").open("a") as f:
        f.write("\n# changed\n")
    assert len(setup(checkout)) == 1


def test_an_incomplete_venv_is_installed_again(checkout):
    setup(checkout)
    (checkout / ".venv" / "bin" / "emotion-machine").unlink()
    assert len(setup(checkout)) == 1


def test_a_failed_install_is_tried_again(checkout):
    fake = checkout / ".venv" / "bin" / "python"
    fake.write_text(FAKE_PYTHON.replace("-m|-c) exit 0", "-m) exit 1 ;;\n  -c) exit 0"))
    log = checkout / "calls.log"
    env = {**os.environ, "FAKE_LOG": str(log), "REAL_PYTHON": sys.executable, "WITH_MINILM": "0"}
    out = subprocess.run(["bash", str(checkout / "scripts" / "setup")], env=env, capture_output=True, timeout=30)
    assert out.returncode != 0
    fake.write_text(FAKE_PYTHON)
    assert len(setup(checkout)) == 1
