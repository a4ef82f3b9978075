"""Light modules stay light: the bot, the shell and the CLI start fast and render training events
without loading torch and transformers (about 1.4 s). The import graph itself is checked in
``tests/test_layers.py``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT

LIGHT = ["model.finetune_config", "model.train_config", "model.eval_config", "model.progress", "model.labels",
         "model.defaults", "model.registry", "model.jobs", "model.worker", "bot.settings", "bot.services",
         "bot.store", "bot.render", "bot.cli"]
HEAVY = ("torch", "transformers")


@pytest.mark.parametrize("module", LIGHT)
def test_light_modules_do_not_import_torch_or_transformers(module):
    """A fresh interpreter per module: in this one, other tests have long imported torch."""
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"import {module} loads {out.stdout.strip()}"


def test_building_the_command_line_loads_no_torch():
    """Every `emotion-machine` command parses its options before anything heavy is imported."""
    code = "import sys, bot.cli; bot.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
