"""Model folders and data for the training tests, built once a session (read-only by convention)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.tiny import build_tiny_model
from tests.helpers.training import write_goemotions


@pytest.fixture(scope="session")
def word_model_dir(tmp_path_factory) -> Path:
    """A tiny seed-13 model to fine-tune."""
    return build_tiny_model(tmp_path_factory.mktemp("word") / "model")


@pytest.fixture(scope="session")
def goemotions_dir(tmp_path_factory) -> Path:
    """A tiny GoEmotions-format folder (see :func:`tests.helpers.training.write_goemotions`)."""
    return write_goemotions(tmp_path_factory.mktemp("goemotions") / "goemotions")


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory) -> Path:
    """A tiny seed-13 model whose head gets replaced for whichever label set is trained.

    Its word embeddings are redrawn wider (std 0.5, not BERT's 0.02) so that [CLS] depends on
    the words, as a pretrained encoder's does; from 0.02 a 2-layer random BERT gives nearly the
    same [CLS] for every text and a few dozen steps cannot tell the texts apart.
    """
    import torch
    from transformers import BertForSequenceClassification

    folder = build_tiny_model(tmp_path_factory.mktemp("base") / "model")
    model = BertForSequenceClassification.from_pretrained(folder)
    torch.manual_seed(0)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight.normal_(0.0, 0.5)
    model.save_pretrained(folder)
    return folder
