"""What tests share besides fixtures (those are in the conftest.py files):

* ``ROOT``: the repository root
* :mod:`.tiny`: tiny BERT model folders (``build_tiny_model``, ``WORDS``)
* :mod:`.fake_discord`: a loopback fake of Discord's REST API and gateway (``FakeDiscord``, ``TOKEN``)
* :mod:`.worlds`: simcord builders (``build_guild``, ``running``, ``reactions``)
* :mod:`.training`: fast train and fine-tune configs, a tiny GoEmotions folder, ``corrections``, ``cli``

Names are imported on first use, so importing one module (the benchmarks spawn the fake Discord)
loads no torch.
"""

from __future__ import annotations

import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_HOMES = {
    "WORDS": "tiny", "build_tiny_model": "tiny",
    "TOKEN": "fake_discord", "FakeDiscord": "fake_discord", "first_of": "fake_discord",
    "build_guild": "worlds", "reactions": "worlds", "running": "worlds", "correct_all": "worlds",
    "cli": "training", "corrections": "training", "fast_finetune_config": "training",
    "fast_train_config": "training", "write_goemotions": "training", "write_sources": "training",
}

__all__ = ["ROOT", *_HOMES]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
