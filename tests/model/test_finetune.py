"""The fine-tune pipeline on a tiny model: it learns corrections, the gate refuses a worse model."""

from __future__ import annotations

from pathlib import Path

import pytest

from model import finetune
from model.classifier import Classifier
from model.data import DataError
from model.finetune import FinetuneCancelled, gate, split_holdout
from model.labels import EKMAN, GOEMOTIONS, SEED13
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


def test_labels_outside_the_model_are_mapped_where_known_and_the_rest_listed(tmp_path, word_model_dir):
    # stored under GoEmotions names, while the bot now serves a seed-13 model
    rows = [("i am so happy", "joy")] * 3 + [("angry and not ok", "annoyance")] * 2 + [("pizza", "pizza")]
    result = finetune.run(rows, fast_finetune_config(tmp_path, word_model_dir, force=True, epochs=2))
    assert result.examples == 5 and result.deployed
    assert result.mapped == {"joy→happiness": 3, "annoyance→anger": 2} and result.unmapped == {"pizza": 1}
    assert any("left out 1 corrections" in w and "'pizza' (1x)" in w for w in result.warnings)
    meta = Registry(tmp_path / "models").current().metadata
    assert meta["unmapped"] == {"pizza": 1} and meta["mapped"]["joy→happiness"] == 3
    with pytest.raises(DataError, match=r"'pizza' \(1x\).*none of them maps"):
        finetune.run([("pizza", "pizza")], fast_finetune_config(tmp_path, word_model_dir, force=True))


def test_map_labels_keeps_known_names_and_maps_between_sets():
    ds = finetune.to_dataset([("a", "Happiness"), ("b", "joy"), ("c", "sarcasm")])
    mapped, how, missing = finetune.map_labels(ds, EKMAN)
    assert mapped["label"] == ["joy", "joy"] and how == {"Happiness→joy": 1} and missing == {"sarcasm": 1}
    same = finetune.to_dataset([("a", "joy")])
    assert finetune.map_labels(same, EKMAN)[0] is same  # nothing to map: the Dataset passes through


def test_gate_refuses_a_worse_candidate(tmp_path, word_model_dir):
    # v1 learns every text (no hold-out, forced), so it gets any hold-out of them right
    first = finetune.run(corrections() * 2, fast_finetune_config(tmp_path, word_model_dir, force=True, min_holdout=100))
    assert first.deployed and first.version == "v1"
    # the candidate: the random base, not trained at all (lr 0); the gate compares it with v1
    second = finetune.run(corrections(), fast_finetune_config(tmp_path, word_model_dir, learning_rate=0.0,
                                                              epochs=1, min_holdout=6, holdout=0.25, min_verdict=3))
    assert second.holdout == 3 and second.eval_set == "holdout"
    assert second.before["holdout"]["macro_f1"] > second.after["holdout"]["macro_f1"]
    assert not second.deployed and second.version is None and "worse on the held-out" in second.reason
    registry = Registry(tmp_path / "models")
    assert registry.current().name == "v1" and [v.name for v in registry.list()] == ["v1"]


def test_gate_passes_a_candidate_not_worse_and_next_run_starts_from_current(tmp_path, word_model_dir):
    first = finetune.run(corrections() * 2, fast_finetune_config(tmp_path, word_model_dir, min_holdout=6,
                                                                 holdout=0.25, min_verdict=3))
    assert first.eval_set == "holdout" and first.holdout == 3
    # the random base vs the keyword learner
    assert first.after["holdout"]["macro_f1"] == 1.0 > first.before["holdout"]["macro_f1"]
    assert first.deployed and first.version == "v1" and "passed the gate" in first.reason
    # base None: start from the current version, record it as the parent; deploy=False saves only
    second = finetune.run(corrections(), fast_finetune_config(tmp_path, word_model_dir, base=None, epochs=1,
                                                              min_holdout=6, holdout=0.25, min_verdict=3,
                                                              save_refused=True, deploy=False))
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
    h = {"examples": 30, "macro_f1": 0.5, "accuracy": 0.6}
    r = {"examples": 2000, "macro_f1": 0.52, "accuracy": 0.4}

    def verdict(holdout=None, reference=None, **options):
        before = {k: v for k, v in (("holdout", h), ("reference", r)) if v is not None and
                  {"holdout": holdout, "reference": reference}[k] is not None}
        after = {k: v for k, v in (("holdout", holdout), ("reference", reference)) if v is not None}
        return gate(before, after, **options)

    assert verdict(holdout={**h, "macro_f1": 0.6})[0]
    assert verdict(holdout=dict(h))[0]  # equal is not worse
    assert not verdict(holdout={**h, "accuracy": 0.5})[0]  # same F1, lower accuracy
    ok, reason = verdict(holdout={**h, "macro_f1": 0.4})
    assert not ok and "0.500 → 0.400" in reason and "held-out corrections (30)" in reason
    assert verdict(holdout={**h, "macro_f1": 0.4}, force=True)[0]
    assert gate({}, {}) == (False, "no verdict possible: no evaluation data")
    assert gate({}, {}, force=True)[0]

    # (b) forgetting: more than one point of reference macro-F1 lost refuses, even with a better hold-out
    ok, reason = verdict(holdout={**h, "macro_f1": 0.9}, reference={**r, "macro_f1": 0.505})
    assert not ok and "forgets: loses 1.5 points" in reason and "0.520 → 0.505" in reason
    assert verdict(holdout={**h, "macro_f1": 0.9}, reference={**r, "macro_f1": 0.511})[0]  # 0.9 of a point
    assert verdict(reference={**r, "macro_f1": 0.50}, max_forgetting=0.05)[0]
    ok, reason = verdict(reference={**r, "macro_f1": 0.40}, force=True)
    assert ok and reason.startswith("forced although the candidate forgets")

    # a hold-out under min_verdict texts is reported with its numbers and decides nothing
    small = {"examples": 6, "macro_f1": 0.5, "accuracy": 0.5}
    ok, reason = gate({"holdout": small, "reference": r}, {"holdout": {**small, "macro_f1": 0.1}, "reference": r})
    assert ok and "held-out corrections (6)" in reason and "too few for a verdict" in reason and "needs 20" in reason
    ok, reason = gate({"holdout": small}, {"holdout": small})
    assert not ok and reason.startswith("no verdict possible") and "too few" in reason

    # metrics of versions saved before per-set metrics (one flat set) still compare
    flat = {"eval_set": "holdout", "examples": 25, "macro_f1": 0.5, "accuracy": 0.6}
    assert gate(flat, {**flat, "macro_f1": 0.7})[0]


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
    assert result.eval_set == "reference" and result.holdout == 0
    assert result.replay_examples == 6 and result.train_examples == 9 and result.replay_source == str(goemotions_replay)
    assert result.before["reference"]["examples"] == 8 and {"accuracy", "macro_f1"} <= set(result.after["reference"])
    assert any("too small for a verdict (0 held-out texts" in w for w in result.warnings)
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
    assert "Only 12 corrections from the servers that share theirs, imports and the shell so far; " \
           "retraining needs at least 20" in capsys.readouterr().err
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
    assert meta["loss"] == "bce" and meta["multi_label"] is True
    assert meta["thresholds"] == "per-label thresholds kept from the base"  # no replay: nothing to re-tune on


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


# --------------------------------------------------------------------------- forgetting: replay and the reference set


def _with_record(tmp_path, model_dir, record: dict) -> Path:
    """A copy of ``model_dir`` whose training record says ``record`` (what ``train`` writes)."""
    import json
    import shutil

    base = tmp_path / "recorded"
    shutil.copytree(model_dir, base)
    (base / "emotion_machine.json").write_text(json.dumps(record), encoding="utf-8")
    return base


def test_the_forgetting_gate_refuses_a_candidate_that_forgets_the_reference_set(tmp_path, word_model_dir,
                                                                               goemotions_replay):
    base = _with_record(tmp_path, word_model_dir, {"data": str(goemotions_replay)})
    # v1 knows the base's data: replayed from the base's own record, without being asked
    taught = [("so happy", "happiness"), ("love you", "love"), ("so sad", "sadness"), ("angry", "anger"),
              ("scared", "fear"), ("what", "confusion"), ("ok", "neutral"), ("gross", "disgust")]
    first = finetune.run(taught * 2, fast_finetune_config(tmp_path, base, force=True, epochs=20))
    assert first.replay_source == str(goemotions_replay) and first.replay_examples > 0
    assert first.after["reference"]["macro_f1"] == 1.0 and first.after["reference"]["examples"] == 8
    assert not any("no replay data" in w for w in first.warnings)

    # corrections that contradict what v1 knows, and no replay rows to hold it: it forgets
    wrong = [("so happy", "sadness"), ("so sad", "happiness"), ("angry", "fear"), ("scared", "anger")] * 3
    second = finetune.run(wrong, fast_finetune_config(tmp_path, word_model_dir, base=None, replay_ratio=0.0,
                                                      epochs=20))
    assert second.parent == "v1" and second.replay_source == str(goemotions_replay)  # carried forward by v1
    assert second.eval_set == "reference" and second.replay_examples == 0
    lost = second.before["reference"]["macro_f1"] - second.after["reference"]["macro_f1"]
    assert lost > 0.01
    assert not second.deployed and "forgets: loses" in second.reason and second.version is None
    assert Registry(tmp_path / "models").current().name == "v1"

    forced = finetune.run(wrong, fast_finetune_config(tmp_path, word_model_dir, base=None, replay_ratio=0.0,
                                                      epochs=20, force=True))
    assert forced.deployed and forced.reason.startswith("forced although the candidate forgets")


def test_without_replay_data_every_answer_says_so(tmp_path, word_model_dir, goemotions_replay):
    none = finetune.run(corrections(), fast_finetune_config(tmp_path, word_model_dir, force=True, epochs=1))
    assert none.replay_source is None and none.replay_examples == 0
    assert any(w.startswith("no replay data: the base records no training data") for w in none.warnings)

    off = finetune.run(corrections(), fast_finetune_config(tmp_path, _with_record(tmp_path, word_model_dir, {
        "data": str(goemotions_replay)}), force=True, epochs=1, replay="none"))
    assert off.replay_source is None and any("switched off" in w for w in off.warnings)

    gone = _with_record(tmp_path / "gone", word_model_dir, {"data": str(tmp_path / "moved-away")})
    moved = finetune.run(corrections(), fast_finetune_config(tmp_path, gone, force=True, epochs=1))
    assert moved.replay_source is None and any("not on this machine" in w for w in moved.warnings)


def test_a_multi_label_model_is_judged_on_every_label_of_a_reference_row(tmp_path, multi_label_dir, goemotions_replay):
    dev = goemotions_replay / "dev.tsv"  # a row with two labels: a multi-label model is scored on both
    ids = {name: i for i, name in enumerate(GOEMOTIONS)}
    dev.write_text(dev.read_text() + f"so happy love you\t{ids['joy']},{ids['love']}\tz\n", encoding="utf-8")
    result = finetune.run(corrections(), fast_finetune_config(tmp_path, multi_label_dir, epochs=5,
                                                              replay=str(goemotions_replay)))
    reference = result.before["reference"]
    assert reference["examples"] == 9 and "micro_f1" in reference  # multi-label scores, as `eval` computes them
    assert "micro_f1" in result.after["reference"]


def test_mix_weights_is_the_weighted_mean_of_two_models(word_model_dir):
    import torch

    model = Classifier.load(word_model_dir, device="cpu").model
    base = {k: v.clone() for k, v in model.state_dict().items()}
    tuned = {k: (v + 1.0 if v.is_floating_point() else v) for k, v in base.items()}
    finetune.mix_weights(model, base, tuned, 0.25)
    name = next(k for k, v in base.items() if v.is_floating_point())
    assert torch.allclose(model.state_dict()[name], base[name] + 0.25)
    finetune.mix_weights(model, base, tuned, 1.0)
    assert torch.equal(model.state_dict()[name], tuned[name])


def test_the_candidate_is_the_fine_tune_mixed_with_the_base(tmp_path, word_model_dir):
    import torch

    full = finetune.run(corrections() * 2, fast_finetune_config(tmp_path / "a", word_model_dir, force=True, mix=1.0))
    half = finetune.run(corrections() * 2, fast_finetune_config(tmp_path / "b", word_model_dir, force=True, mix=0.5))
    assert "weights: 0.5 of the fine-tune mixed with 0.5 of the base" in half.reason and "weights" not in full.reason
    base, tuned, mixed = (Classifier.load(p, device="cpu").model.state_dict()
                          for p in (word_model_dir, full.path, half.path))
    name = "classifier.weight"
    assert torch.allclose(mixed[name], (base[name] + tuned[name]) / 2, atol=1e-6)  # same seed, same training
    assert Registry(tmp_path / "b" / "models").current().metadata["mix"] == 0.5


def test_a_multi_label_candidate_gets_thresholds_re_tuned_on_the_held_out_rows(tmp_path, multi_label_dir,
                                                                              goemotions_replay):
    # 8 dev rows: 4 frozen as the reference set, 4 calibrate the gate's thresholds; all 8 re-tune the candidate's
    result = finetune.run(corrections(), fast_finetune_config(tmp_path, multi_label_dir, force=True, epochs=5,
                                                              replay=str(goemotions_replay), reference_size=4))
    assert "per-label thresholds re-tuned on 8 held-out rows" in result.reason
    meta = Registry(tmp_path / "models").current().metadata
    stored = Classifier.load(result.path, device="cpu").thresholds.tolist()
    assert meta["thresholds"].startswith("per-label thresholds re-tuned") and stored != pytest.approx([0.5] * 13)
