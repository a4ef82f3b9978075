"""The real loading code on a tiny model folder, and every load error's message."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from model.classifier import Classifier, ModelLoadError, resolve_device
from model.labels import FALLBACK_EMOJI, SEED13, emoji_for, labels_from_config
from tests.helpers.tiny import build_tiny_model


def test_loads_local_folder_with_labels_from_config(tiny_classifier):
    assert tiny_classifier.labels == SEED13
    assert tiny_classifier.device == torch.device("cpu")
    assert not tiny_classifier.multi_label


def test_predict_returns_distribution_in_input_order(tiny_classifier):
    texts = ["i am so happy", "", "why " * 500, "😀 مرحبا", "sad"]
    preds = tiny_classifier.predict(texts, batch_size=2)
    assert len(preds) == len(texts)
    for text, pred in zip(texts, preds):
        assert set(pred.scores) == set(SEED13)
        assert sum(pred.scores.values()) == pytest.approx(1.0, abs=1e-4)
        assert pred.label == max(pred.scores, key=pred.scores.get)
        assert pred.score == pytest.approx(pred.scores[pred.label])
        # batching and sorting must not change a text's answer
        alone = tiny_classifier.predict([text])[0]
        assert alone.label == pred.label and alone.score == pytest.approx(pred.score, abs=1e-5)


def test_long_input_is_truncated_to_max_length(tiny_classifier):
    ids = tiny_classifier.encode(["happy " * 4000])[0]
    assert len(ids) == 64


def test_top_k_is_sorted(tiny_classifier):
    top = tiny_classifier.predict(["i love you"])[0].top(3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]


def test_multi_label_model_uses_sigmoid_and_thresholds(tmp_path):
    folder = build_tiny_model(tmp_path / "ml", multi_label=True)
    clf = Classifier.load(folder, device="cpu")
    assert clf.multi_label
    pred = clf.predict(["i am so happy"])[0]
    assert all(0 < p < 1 for p in pred.scores.values())
    assert sum(pred.scores.values()) > 1.5  # independent sigmoids, not a softmax
    assert set(pred.labels) == {lb for lb, p in pred.scores.items() if p >= 0.5}
    config = json.loads((folder / "config.json").read_text())
    config["label_thresholds"] = dict.fromkeys(SEED13, 0.99)
    (folder / "config.json").write_text(json.dumps(config))
    assert Classifier.load(folder, device="cpu").predict(["i am so happy"])[0].labels == ()


def test_int8_quantization_keeps_the_answer(tiny_model_dir, tiny_classifier):
    q = Classifier.load(tiny_model_dir, device="cpu", quantize="int8")
    assert q.quantized
    texts = ["i am so happy", "this is terrible", "what why how"]
    for a, b in zip(q.predict(texts), tiny_classifier.predict(texts)):
        assert a.scores[b.label] == pytest.approx(b.score, abs=0.02)


def test_an_unknown_quantize_mode_is_refused_not_ignored(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="quantize must be one of auto, int8, none, got .dynamic."):
        Classifier.load(tiny_model_dir, device="cpu", quantize="dynamic")


def test_version_comes_from_metadata_file(tmp_path):
    folder = build_tiny_model(tmp_path / "m")
    (folder / "emotion_machine.json").write_text(json.dumps({"version": "v7"}))
    assert Classifier.load(folder, device="cpu").version == "v7"


def test_missing_folder_names_the_fix(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist.*EMOTION_MODEL"):
        Classifier.load(str(tmp_path / "nope"))


def test_folder_without_config_is_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="incomplete or corrupt.*config.json"):
        Classifier.load(tmp_path / "empty")


def test_corrupt_weights_are_reported(tmp_path, tiny_model_dir):
    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="incomplete or corrupt"):
        Classifier.load(folder)


def test_corrupt_config_is_reported(tmp_path, tiny_model_dir):
    folder = tmp_path / "badcfg"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "config.json").write_text("{ not json")
    with pytest.raises(ModelLoadError, match="incomplete or corrupt"):
        Classifier.load(folder)


def test_unreachable_hub_id_suggests_a_local_folder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="hub.*local folder"):
        Classifier.load("boltuix/bert-emotion")


def test_model_without_labels_is_refused(tmp_path):
    from transformers import AutoConfig

    folder = build_tiny_model(tmp_path / "nolabels")
    config = AutoConfig.from_pretrained(folder)
    config.id2label = {i: f"LABEL_{i}" for i in range(13)}
    config.label2id = {v: k for k, v in config.id2label.items()}
    config.save_pretrained(folder)
    with pytest.raises(ModelLoadError, match="id2label"):
        Classifier.load(folder)


def test_device_setting():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type in {"cpu", "cuda"}
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            resolve_device("cuda:1")
    with pytest.raises(ModelLoadError, match="unknown device"):
        resolve_device("tpu9")


def test_emoji_fallback_and_label_checks():
    assert emoji_for("happiness") == "😄"
    assert emoji_for("Sarcasm ") == "🙃"
    assert emoji_for("quux") == FALLBACK_EMOJI
    with pytest.raises(ValueError, match="no id2label"):
        labels_from_config({})
    assert labels_from_config({"1": "b", "0": "a"}) == ("a", "b")


def test_a_bad_metadata_file_falls_back_to_the_folder_name(tmp_path):
    folder = build_tiny_model(tmp_path / "v3")
    (folder / "emotion_machine.json").write_text("{ broken")
    assert Classifier.load(folder, device="cpu").version == "v3"
