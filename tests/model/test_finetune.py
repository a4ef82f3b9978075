"""The fine-tune pipeline on a tiny model: it learns corrections, the gate refuses a worse model."""

from __future__ import annotations

from pathlib import Path

import pytest

from model import finetune
from model.classifier import Classifier
from model.data import DataError
from model.finetune import FinetuneCancelled, gate, split_holdout
from model.labels import GOEMOTIONS, SEED13
from model.progress import TrainingEvent
from model.registry import Registry
from tests.helpers import build_tiny_model, corrections, fast_finetune_config


def predict(folder, texts) -> list[str]:
    return [p.label for p in Classifier.load(folder, device="cpu").predict(texts)]


def test_learns_corrections_the_base_model_gets_wrong(tmp_path, word_model_dir):
    texts = ["i am so happy today", "this is terrible and sad", "wow really what"]
    before = predict(word_model_dir, texts)
    # a different label for each text, and never the one the random model already says
    targets = [next(lb for lb in SEED13[3 * i:] if lb != p) for i, p in enumerate(before)]
    assert len(set(targets)) == 3 and all(t != p for t, p in zip(targets, before))
    events: list[TrainingEvent] = []
    result = finetune.run([*zip(texts, targets)] * 4, fast_finetune_config(tmp_path, word_model_dir, force=True),
                          on_event=events.append)

    assert result.deployed and result.version == "v1" and "forced" in result.reason
    assert result.holdout == 0 and result.examples == 12 and result.before == {} and result.after == {}
    registry = Registry(tmp_path / "models")
    assert registry.current().name == "v1"
    assert predict(registry.current_path(), texts) == targets
    meta = registry.current().metadata
    assert meta["parent"] is None and meta["base"] == str(word_model_dir)
    assert meta["hyperparameters"]["learning_rate"] == 5e-3 and meta["examples"]["corrections"] == 12

    assert all(isinstance(e, TrainingEvent) for e in events)
    stages = [e.stage for e in events if e.kind == "stage"]
    assert stages == ["tokenize", "train", "save"]
    progress = [e for e in events if e.kind == "progress"]
    assert progress and progress[-1].step == progress[-1].max_steps == 120 and progress[-1].fraction == 1.0
    assert all(e.stage == "train" and e.loss is not None and e.epoch > 0 for e in progress)
    assert TrainingEvent.from_dict(progress[0].as_dict()) == progress[0]  # what crosses the job's pipe


def test_without_hold_out_or_replay_it_refuses_before_training(tmp_path, word_model_dir):
    result = finetune.run([("i am so happy", "happiness")], fast_finetune_config(tmp_path, word_model_dir))
    assert not result.deployed and result.version is None
    assert "nothing to evaluate" in result.reason and "no hold-out" in result.reason
    assert Registry(tmp_path / "models").list() == []


def test_labels_outside_the_model_are_refused(tmp_path, word_model_dir):
    with pytest.raises(DataError, match=r"'joy' \(1x\)"):
        finetune.run([("i am so happy", "joy")], fast_finetune_config(tmp_path, word_model_dir, force=True))


def test_gate_refuses_a_worse_candidate(tmp_path, word_model_dir):
    # v1 learns every text (no hold-out, forced), so it gets any hold-out of them right
    first = finetune.run(corrections() * 2, fast_finetune_config(tmp_path, word_model_dir, force=True, min_holdout=100))
    assert first.deployed and first.version == "v1"
    # the candidate: the random base, not trained at all (lr 0); the gate compares it with v1
    second = finetune.run(corrections(), fast_finetune_config(tmp_path, word_model_dir, learning_rate=0.0,
                                                              epochs=1, min_holdout=6, holdout=0.25))
    assert second.holdout == 3 and second.eval_set == "holdout"
    assert second.before["macro_f1"] > second.after["macro_f1"]
    assert not second.deployed and second.version is None and "worse" in second.reason
    registry = Registry(tmp_path / "models")
    assert registry.current().name == "v1" and [v.name for v in registry.list()] == ["v1"]


def test_gate_passes_a_candidate_not_worse_and_next_run_starts_from_current(tmp_path, word_model_dir):
    first = finetune.run(corrections() * 2, fast_finetune_config(tmp_path, word_model_dir, min_holdout=6, holdout=0.25))
    assert first.eval_set == "holdout" and first.holdout == 3
    assert first.after["macro_f1"] == 1.0 > first.before["macro_f1"]  # the random base vs the keyword learner
    assert first.deployed and first.version == "v1" and "worse" not in first.reason
    # base None: start from the current version, record it as the parent; deploy=False saves only
    second = finetune.run(corrections(), fast_finetune_config(tmp_path, word_model_dir, base=None, epochs=1,
                                                              min_holdout=6, holdout=0.25, save_refused=True,
                                                              deploy=False))
    assert second.parent == "v1" and second.base == first.path and second.version == "v2"
    assert not second.deployed and ("deploy=False" in second.reason or "worse" in second.reason)
    registry = Registry(tmp_path / "models")
    assert registry.current().name == "v1" and registry.get("v2").metadata["parent"] == "v1"


def test_predicted_labels_come_back_in_input_order(tmp_path, word_model_dir):
    trained = finetune.run(corrections() * 2, fast_finetune_config(tmp_path, word_model_dir, force=True))
    clf = Classifier.load(trained.path, device="cpu")
    texts = ["i hate this why", "i am so happy today lol", "angry", "wow this is great and good", "not ok"] * 3
    ds = finetune.to_dataset((t, "neutral") for t in texts)
    config = fast_finetune_config(tmp_path, word_model_dir, eval_batch_size=4)
    got = finetune.predict_labels(clf.model, clf.tokenizer, ds, config, str(tmp_path / "out"))
    assert got == [p.label for p in clf.predict(texts)] and len(set(got)) > 1


def test_gate_rules():
    b = {"eval_set": "holdout", "examples": 9, "macro_f1": 0.5, "accuracy": 0.6}
    assert gate(b, {**b, "macro_f1": 0.6})[0]
    assert gate(b, dict(b))[0]  # equal is not worse
    assert not gate(b, {**b, "accuracy": 0.5})[0]  # same F1, lower accuracy
    ok, reason = gate(b, {**b, "macro_f1": 0.4})
    assert not ok and "0.500 → 0.400" in reason and "holdout" in reason
    assert gate(b, {**b, "macro_f1": 0.4}, force=True) == (True, gate(b, {**b, "macro_f1": 0.4}, force=True)[1])
    assert gate({}, {}) == (False, "no evaluation data")
    assert gate({}, {}, force=True)[0]


def test_hold_out_is_stratified_by_distinct_text():
    ds = finetune.to_dataset(corrections() * 3 + [("lonely", "sadness")])
    train, holdout, note = split_holdout(ds, 0.25, min_texts=6, seed=1)
    assert len(holdout) == 3 and sorted(holdout["label"]) == ["anger", "happiness", "sadness"]
    assert not set(holdout["text"]) & set(train["text"])  # repeats never straddle the split
    assert len(train) == sum(t not in set(holdout["text"]) for t in ds["text"]) and "3 of 13" in note
    assert split_holdout(ds, 0.25, min_texts=100, seed=1)[1] is None


@pytest.fixture
def goemotions_replay(tmp_path) -> Path:
    """A GoEmotions-shaped folder whose texts the tiny vocabulary knows."""
    folder = tmp_path / "goemotions"
    folder.mkdir()
    (folder / "labels.txt").write_text("\n".join(GOEMOTIONS) + "\n", encoding="utf-8")
    ids = {name: i for i, name in enumerate(GOEMOTIONS)}
    rows = [("so happy", "joy"), ("love you", "love"), ("so sad", "sadness"), ("angry", "anger"),
            ("scared", "fear"), ("what", "confusion"), ("ok", "neutral"), ("gross", "disgust")] * 3
    (folder / "train.tsv").write_text("".join(f"{t}\t{ids[lb]}\tx\n" for t, lb in rows), encoding="utf-8")
    (folder / "dev.tsv").write_text("".join(f"{t}\t{ids[lb]}\ty\n" for t, lb in rows[:8]), encoding="utf-8")
    return folder


def test_replay_is_mapped_mixed_in_and_used_by_the_gate_without_hold_out(tmp_path, word_model_dir, goemotions_replay):
    config = fast_finetune_config(tmp_path, word_model_dir, epochs=2, replay=str(goemotions_replay), replay_ratio=2.0)
    result = finetune.run(corrections()[:3], config)
    assert result.eval_set == "replay" and result.holdout == 0
    assert result.replay_examples == 6 and result.train_examples == 9
    assert result.before["examples"] == 8 and {"accuracy", "macro_f1"} <= set(result.after)
    with pytest.raises(DataError, match="replay data"):
        finetune.run(corrections()[:3], fast_finetune_config(tmp_path, word_model_dir, replay=str(goemotions_replay),
                                                                  replay_map="ekman"))


def test_should_stop_cancels_before_anything_is_saved(tmp_path, word_model_dir):
    steps = []

    def stop_after_three() -> bool:
        steps.append(1)
        return len(steps) > 3

    with pytest.raises(FinetuneCancelled):
        finetune.run(corrections(), fast_finetune_config(tmp_path, word_model_dir, force=True),
                     should_stop=stop_after_three)
    assert Registry(tmp_path / "models").list() == []


def test_cli_finetune_from_the_store_then_models_commands(tmp_path, word_model_dir, monkeypatch, capsys):
    import asyncio

    from bot.cli import common, main
    from bot.store import Correction, Store

    async def fill(db):
        store = await Store.open(db)
        try:
            await store.add_examples([Correction(t, lb, source="import") for t, lb in corrections()])
        finally:
            await store.close()

    db = tmp_path / "emotion.db"
    asyncio.run(fill(db))
    for var in ("EMOTION_REPLAY_PATH", "EMOTION_MODELS_DIR", "EMOTION_DB", "EMOTION_MIN_CORRECTIONS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env is read

    def cli(*argv: str) -> int:
        return main(list(argv))

    models = str(tmp_path / "models")
    # the same minimum of corrections as /retrain (EMOTION_MIN_CORRECTIONS, 20 by default)
    assert cli("finetune", "--db", str(db), "--models-dir", models, "--force") == common.EXIT_FAILED
    assert "Only 12 corrections so far; retraining needs at least 20" in capsys.readouterr().err
    assert cli("finetune", "--db", str(db), "--models-dir", models, "--base", str(word_model_dir), "--epochs", "2",
               "--lr", "3e-3", "--batch-size", "4", "--threads", "1", "--force", "--min-corrections", "10") == 0
    out = capsys.readouterr().out
    assert "Deployed v1: forced" in out and "Saved as v1, now current" in out and "12 corrections" in out
    assert cli("models", "list", "--models-dir", models) == 0 and "* v1" in capsys.readouterr().out

    current = Registry(models).current()  # the registry alone records versions (no copy in the store)
    assert current.name == "v1" and current.path.name == "v1"
    assert cli("models", "rollback", "--models-dir", models) == common.EXIT_FAILED
    assert "no earlier deployed version" in capsys.readouterr().err
    assert cli("models", "prune", "--keep", "1", "--models-dir", models) == 0
    assert "nothing to delete" in capsys.readouterr().out
    # without --force and too few corrections for a hold-out: trained nothing, exit 3
    assert cli("finetune", "--db", str(db), "--models-dir", models, "--threads", "1",
               "--min-corrections", "1") == common.EXIT_NOT_DEPLOYED
    assert "nothing to evaluate" in capsys.readouterr().out


# --------------------------------------------------------------------------- multi-label models


@pytest.fixture(scope="session")
def multi_label_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("multi") / "model", multi_label=True)


def test_multi_label_model_learns_corrections_with_one_hot_targets(tmp_path, multi_label_dir):
    """Every model `train` makes is multi-label; fine-tuning one used to crash on the target shape."""
    texts = ["i am so happy today", "this is terrible and sad", "wow really what"]
    before = predict(multi_label_dir, texts)
    targets = [next(lb for lb in SEED13[3 * i:] if lb != p) for i, p in enumerate(before)]
    result = finetune.run([*zip(texts, targets)] * 4,
                          fast_finetune_config(tmp_path, multi_label_dir, force=True, learning_rate=1e-2))

    assert result.deployed and "thresholds kept from the base" in result.reason
    clf = Classifier.load(result.path, device="cpu")
    assert clf.multi_label  # still a sigmoid model, so the bot keeps applying its thresholds
    assert [p.label for p in clf.predict(texts)] == targets
    meta = Registry(tmp_path / "models").current().metadata
    assert meta["loss"] == "bce" and meta["multi_label"] is True and meta["thresholds"] == "kept from the base"


def test_multi_label_fine_tune_keeps_the_loss_and_thresholds_the_base_was_trained_with(tmp_path, multi_label_dir):
    import json
    import shutil

    base = tmp_path / "trained"
    shutil.copytree(multi_label_dir, base)
    weights = {lb: (3.0 if lb == "sadness" else 1.0) for lb in SEED13}
    (base / "emotion_machine.json").write_text(json.dumps({"recipe": {"loss": "weighted-bce"}, "pos_weight": weights}))
    config_path = base / "config.json"
    config = json.loads(config_path.read_text())
    config["label_thresholds"] = dict.fromkeys(SEED13, 0.3)
    config_path.write_text(json.dumps(config))

    kind, pos_weight, source = finetune.base_loss(str(base), SEED13, True)
    assert kind == "weighted-bce" and source == "the base's training record"
    assert pos_weight.tolist() == [weights[lb] for lb in SEED13]

    result = finetune.run(corrections() * 2, fast_finetune_config(tmp_path, base, force=True, epochs=5))
    meta = Registry(tmp_path / "models").current().metadata
    assert meta["loss"] == "weighted-bce" and meta["pos_weight"]["sadness"] == 3.0
    assert Classifier.load(result.path, device="cpu").thresholds.tolist() == pytest.approx([0.3] * 13)
    # the next fine-tune of this version reads the loss from the version's own record
    assert finetune.base_loss(result.path, SEED13, True)[0] == "weighted-bce"


def test_a_recorded_loss_that_does_not_fit_falls_back_to_the_model_type(tmp_path, word_model_dir):
    import shutil

    base = tmp_path / "single"
    shutil.copytree(word_model_dir, base)
    (base / "emotion_machine.json").write_text('{"loss": "weighted-bce"}')
    assert finetune.base_loss(str(base), SEED13, False)[:2] == ("ce", None)
    assert finetune.base_loss(str(tmp_path / "missing"), SEED13, True)[:2] == ("bce", None)
