"""`emotion-machine soup`: the mean of models trained from one base, and clear refusals otherwise."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from model import soup, train
from model.classifier import Classifier
from model.labels import EKMAN
from model.registry import Registry
from tests.helpers import cli, fast_train_config


@pytest.fixture(scope="module")
def two_runs(goemotions_dir, base_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    paths = []
    # As with the real recipe: one base and seed, other learning rates and lengths.
    for name, epochs, lr in (("a", 30, 3e-3), ("b", 40, 2e-3)):
        config = fast_train_config(base_dir, goemotions_dir, tmp, labels="ekman", multi_label=True, epochs=epochs,
                                   learning_rate=lr, output=str(tmp / name))
        paths.append(train.run(config).path)
    return paths


def weights(path) -> dict[str, torch.Tensor]:
    return AutoModelForSequenceClassification.from_pretrained(path).state_dict()


def test_the_soup_is_the_mean_of_the_weights_and_the_bot_can_serve_it(two_runs, tmp_path, capsys):
    out = tmp_path / "soup"
    assert cli("soup", *two_runs, "--output", str(out)) == 0, capsys.readouterr().err
    assert "the mean of 2 models" in capsys.readouterr().out
    a, b, mean = weights(two_runs[0]), weights(two_runs[1]), weights(out)
    head = "classifier.weight"
    assert not torch.allclose(a[head], b[head])  # two different models went in
    for key, value in mean.items():
        if value.is_floating_point():
            assert torch.allclose(value, (a[key] + b[key]) / 2, atol=1e-6), key
        else:
            assert torch.equal(value, a[key]), key
    meta = json.loads((out / "emotion_machine.json").read_text())
    assert meta["kind"] == "soup" and meta["parents"] == list(two_runs) and meta["version"] == "soup"
    assert json.loads((out / "config.json").read_text()).get("label_thresholds") == {}  # stale ones dropped
    clf = Classifier.load(out, device="cpu")
    assert clf.multi_label and clf.labels == EKMAN and clf.version == "soup"
    texts = ["so angry today", "i am so happy", "really sad feeling", "wow today", "i feel scared"]
    tops = [[p.label for p in Classifier.load(path, device="cpu").predict(texts)] for path in two_runs]
    agreed = [(t, a) for t, a, b in zip(texts, *tops) if a == b]
    assert len(agreed) >= 3, tops
    assert [p.label for p in clf.predict([t for t, _ in agreed])] == [a for _, a in agreed]


def test_a_soup_can_be_registered_and_deployed(two_runs, tmp_path):
    result = soup.average(two_runs, output=None, models_dir=str(tmp_path / "models"), deploy=True)
    registry = Registry(tmp_path / "models")
    assert result["version"] == "v1" and registry.current_name() == "v1" and result["deployed"]
    assert registry.get("v1").metadata["kind"] == "soup"


def test_models_that_cannot_be_averaged_are_refused_clearly(two_runs, goemotions_dir, base_dir, tmp_path, capsys):
    assert cli("soup", two_runs[0], "--output", str(tmp_path / "x")) == 2
    assert "at least two models" in capsys.readouterr().err
    assert cli("soup", two_runs[0], str(tmp_path / "missing"), "--output", str(tmp_path / "x")) == 2
    assert "missing is not a model folder" in capsys.readouterr().err
    other = train.run(fast_train_config(base_dir, goemotions_dir, tmp_path, labels="goemotions", multi_label=True,
                                        epochs=1, output=str(tmp_path / "go28"))).path
    assert cli("soup", two_runs[0], other, "--output", str(tmp_path / "x")) == 2
    err = capsys.readouterr().err
    assert "has labels" in err and "same base and label set" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert cli("soup", two_runs[0], str(broken), "--output", str(tmp_path / "x")) == 2
    assert "broken could not be loaded" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing half-made is left behind
