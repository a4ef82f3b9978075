"""Training on many labelled sets (model/sources.py): each set's labels mapped onto the 13, a row teaching only
what its set annotates, the mix, the fair label choice, per-source scores and the model card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model import losses, metrics, source_scores, sources
from model.data import DataError
from model.labels import SEED13
from tests.helpers import cli, write_sources


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_sources(tmp_path_factory.mktemp("sets") / "data")


def _all(source: str, root: Path) -> list[tuple[str, list[str]]]:
    return [row for split in sources.SPLITS for row in sources.rows(sources.SOURCES[source], split, root)]


# --------------------------------------------------------------------------- reading and mapping


def test_each_set_is_read_in_its_own_format_and_mapped_onto_the_seed_labels(root):
    seen = {name: {lb for _, labels in _all(name, root) for lb in labels} for name in sources.SOURCES}
    assert seen["dair-emotion"] == {"happiness", "sadness", "anger", "fear", "surprise", "love"}
    assert seen["meld"] == {"neutral", "happiness", "surprise", "anger", "sadness", "disgust", "fear"}
    assert seen["isear"] == {"happiness", "fear", "anger", "sadness", "disgust", "shame", "guilt"}
    assert seen["isarcasmeval_en"] == seen["mustard"] == {"sarcasm"}
    assert "sarcasm" not in seen["goemotions"]
    for name, labels in seen.items():  # nothing outside a set's scope
        assert labels <= set(sources.SOURCES[name].scope), name

    emocontext = dict(_all("emocontext", root))
    assert emocontext["i am so happy"] == ["happiness"] and emocontext["i am so ok"] == []  # others: no label
    xed = dict(_all("xed_en", root))
    assert xed["thanks you, my love"] == []  # trust only: dropped, the row stays a negative for the rest
    assert xed["happy today."] == ["happiness"]  # XED's tokenised text written as typed
    assert xed["i am so happy ok"] == ["surprise", "happiness"]  # multi-label kept, in the seed order
    assert xed["i am so ok"] == ["neutral"]  # neu_en.txt
    isear = dict(_all("isear", root))
    assert "when i was sorry | not fine" in isear  # a '|' inside the text, the stray á removed
    assert not any(t.startswith("[") for t in isear)  # bracketed non-answers dropped
    meld = dict(_all("meld", root))
    assert "i'm so happy" in meld  # curly quotes straightened


def test_splits_are_fixed_disjoint_and_the_sarcasm_rephrasings_only_train(root):
    for name, source in sources.SOURCES.items():
        splits = {split: {t for t, _ in sources.rows(source, split, root)} for split in sources.SPLITS}
        if name not in ("emocontext", "meld"):  # these two ship the same rows in each of their own files here
            assert not (splits["train"] & splits["dev"]) and not (splits["train"] & splits["test"]), name
        assert splits == {split: {t for t, _ in sources.rows(source, split, root)} for split in sources.SPLITS}
    assert sources.bucket("Hello  World") == sources.bucket("hello world")
    sarcasm = sources.SOURCES["isarcasmeval_en"]
    train = dict(sources.rows(sarcasm, "train", root))
    assert train["i am not happy"] == []  # an author's plain rewording: a negative
    assert not any(t.startswith("i am not") for t, _ in sources.rows(sarcasm, "dev", root))
    assert all(t.endswith(" lol") for t, _ in sources.rows(sarcasm, "test", root))  # task A is the test


def test_choosing_sources_by_name_terms_or_leaving_one_out(root, tmp_path):
    assert [s.name for s in sources.choose("all")] == list(sources.SOURCES)
    assert {s.name for s in sources.choose("commercial")} == {"goemotions", "xed_en", "isarcasmeval_en", "mustard"}
    assert [s.name for s in sources.choose("all,-meld,-isear")] == [n for n in sources.SOURCES
                                                                   if n not in ("meld", "isear")]
    assert [s.name for s in sources.choose("mustard, goemotions")] == ["mustard", "goemotions"]
    for bad in ("emotions", "all,-nope", ""):
        with pytest.raises(DataError, match="unknown source|no sources"):
            sources.choose(bad)
    with pytest.raises(DataError, match="no such folder.*--data-root"):
        sources.rows(sources.SOURCES["meld"], "train", tmp_path)
    with pytest.raises(DataError, match="unknown split"):
        sources.rows(sources.SOURCES["meld"], "validation", root)


def test_the_mix_gives_small_sets_a_fair_share_without_endless_repeats(root):
    chosen = sources.choose("goemotions,mustard")
    mixed, counts = sources.mix(chosen, 100, root, temperature=0.5, seed=1)
    n_go, n_mu = counts["goemotions"]["available"], counts["mustard"]["available"]
    expected = round(100 * n_mu ** 0.5 / (n_go ** 0.5 + n_mu ** 0.5))
    assert counts["mustard"]["taken"] == expected > round(100 * n_mu / (n_go + n_mu))  # more than its size share
    assert len(mixed) == sum(c["taken"] for c in counts.values())
    assert set(mixed["source"]) == {"goemotions", "mustard"}
    flat, _ = sources.mix(chosen, 10_000, root, temperature=0.0)
    assert flat["source"].count("mustard") == sources.MAX_REPEAT * n_mu  # capped at MAX_REPEAT passes
    again, _ = sources.mix(chosen, 100, root, temperature=0.5, seed=1)
    assert again["text"] == mixed["text"]  # seeded
    with pytest.raises(DataError, match="positive size"):
        sources.mix(chosen, 0, root)


# --------------------------------------------------------------------------- what a row teaches


def test_a_row_teaches_only_the_labels_its_set_annotates():
    y = sources.targets([["happiness"], [], ["sarcasm"], ["neutral"], ["anger"]],
                        ["dair-emotion", "emocontext", "mustard", "goemotions", "a correction"], SEED13)
    j = {lb: i for i, lb in enumerate(SEED13)}
    assert y[0, j["happiness"]] == 1 and y[0, j["sadness"]] == 0 and y[0, j["neutral"]] == sources.UNKNOWN
    assert y[1, j["happiness"]] == 0 and y[1, j["neutral"]] == sources.UNKNOWN  # others is not neutral
    assert y[2, j["sarcasm"]] == 1 and (y[2, [j[lb] for lb in SEED13 if lb != "sarcasm"]] == sources.UNKNOWN).all()
    assert y[3, j["sarcasm"]] == sources.UNKNOWN and y[3, j["neutral"]] == 1  # GoEmotions says nothing of sarcasm
    assert (y[4] >= 0).all() and y[4, j["anger"]] == 1  # a row of no known set: every label known


def test_the_loss_skips_unknown_targets_and_is_plain_bce_without_them():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([[1.0, 0.0, -1.0], [0.0, -1.0, -1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    for kind in ("bce", "weighted-bce", "focal"):
        loss = losses.make_loss(kind, multi_label=True, pos_weight=np.array([2.0, 1.0, 3.0], np.float32))
        value = loss(logits, y)
        value.backward()
        assert (logits.grad[y < 0] == 0).all() and (logits.grad[y >= 0] != 0).all(), kind
        other = logits.detach().clone()
        other[y < 0] += 5.0  # whatever the model says where the target is unknown, the loss is the same
        assert loss(other, y).item() == pytest.approx(value.item())
        logits.grad = None
    known = torch.tensor([[1.0, 0.0, 1.0]])
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits[:1], known)
    assert losses.make_loss("bce", multi_label=True)(logits[:1], known).item() == pytest.approx(plain.item())


def test_thresholds_and_scores_leave_unknown_entries_out():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    gold = (rng.random((60, 3)) > 0.6).astype(np.float32)
    probs = np.clip(gold * 0.5 + rng.random((60, 3)) * 0.6, 0, 1)
    plain = metrics.multi_label_scores(gold, probs >= 0.5, ["a", "b", "c"])
    assert plain["macro_f1"] == pytest.approx(f1_score(gold, probs >= 0.5, average="macro"), abs=1e-4)
    assert plain["micro_f1"] == pytest.approx(f1_score(gold, probs >= 0.5, average="micro"), abs=1e-4)
    masked = gold.copy()
    masked[:30, 2] = sources.UNKNOWN  # half of c's rows unknown: c is scored on the other half only
    probs_changed = probs.copy()
    probs_changed[:30, 2] = 1 - probs[:30, 2]  # so what the model says there cannot matter
    a = metrics.multi_label_scores(masked, probs >= 0.5, ["a", "b", "c"])
    b = metrics.multi_label_scores(masked, probs_changed >= 0.5, ["a", "b", "c"])
    assert a == b and a["per_label"]["c"]["support"] == int(gold[30:, 2].sum())
    assert metrics.tune_thresholds(probs, masked, ["a", "b", "c"]) == \
        metrics.tune_thresholds(probs_changed, masked, ["a", "b", "c"])


# --------------------------------------------------------------------------- the shown label


def test_a_multi_label_model_shows_the_label_furthest_above_its_own_threshold(tmp_path):
    from model.classifier import Classifier
    from tests.helpers import build_tiny_model

    folder = build_tiny_model(tmp_path / "m", multi_label=True)
    clf = Classifier.load(folder, device="cpu")
    probs = clf.predict(["i am so happy"])[0].scores
    raw_best = max(probs, key=probs.get)
    second = sorted(probs, key=probs.get)[-2]
    # the raw argmax's threshold sits above it, the runner-up's far below: the runner-up is the fairer answer
    clf.thresholds = torch.tensor([{raw_best: min(0.99, probs[raw_best] + 0.05), second: probs[second] / 4}.get(lb, 0.5)
                                   for lb in clf.labels])
    shown = clf.predict(["i am so happy"])[0]
    assert shown.label == second != raw_best and shown.score == pytest.approx(probs[second])
    assert shown.top(2)[0][0] == second and shown.ranking[-1] != second
    rel = metrics.relative_scores(np.array([[0.6, 0.2]]), [0.8, 0.1])
    assert rel[0, 1] > 0 > rel[0, 0]


# --------------------------------------------------------------------------- scores in each set's labels


def test_each_set_is_scored_in_its_own_labels():
    labels = list(SEED13)
    j = {lb: i for i, lb in enumerate(labels)}

    def probs(*tops: str) -> np.ndarray:
        p = np.full((len(tops), len(labels)), 0.1)
        for r, lb in enumerate(tops):
            p[r, j[lb]] = 0.9
        return p

    thresholds = dict.fromkeys(labels, 0.5)
    dair = sources.SOURCES["dair-emotion"]
    # neutral is not a dair label: the best dair label wins instead (a 0.3 for happiness here)
    p = probs("neutral", "anger")
    p[0, j["happiness"]] = 0.3
    assert source_scores.score(dair, p, [["happiness"], ["anger"]], labels, thresholds)["accuracy"] == 1.0
    emocontext = sources.SOURCES["emocontext"]  # outside its three labels the answer is "others"
    r = source_scores.score(emocontext, probs("love", "neutral", "sadness"), [[], [], ["anger"]], labels, thresholds)
    assert r["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    sarcasm = sources.SOURCES["mustard"]
    r = source_scores.score(sarcasm, probs("sarcasm", "anger", "sarcasm"), [["sarcasm"], ["sarcasm"], []],
                            labels, thresholds)
    assert r["f1"] == pytest.approx(0.5) and r["positives"] == 2
    assert "mustard" in source_scores.table({"mustard": r})


# --------------------------------------------------------------------------- train --sources, its card, eval --sources


def test_train_on_sources_records_them_writes_a_card_and_eval_scores_each(root, base_dir, tmp_path, capsys):
    out = tmp_path / "seed13"
    rc = cli("train", "--base", str(base_dir), "--sources", "all,-meld", "--data-root", str(root), "--labels",
             "seed13", "--multi-label", "--mix-size", "300", "--epochs", "4", "--lr", "3e-3", "--batch-size", "16",
             "--threads", "1", "--output", str(out))
    assert rc == 0, capsys.readouterr().err
    meta = json.loads((out / "emotion_machine.json").read_text())
    assert set(meta["sources"]) == set(sources.SOURCES) - {"meld"} and meta["text_form"] == "chat"
    assert meta["data"] == str((root / "goemotions").resolve())  # the replay a later /retrain uses
    assert sum(s["taken"] for s in meta["sources"].values()) == meta["examples"]["train"]
    assert set(meta["metrics"]["dev"]["by_source"]) == set(meta["sources"])
    assert json.loads((out / "config.json").read_text())["text_form"] == "chat"
    card = (out / "README.md").read_text()
    assert "| isear | first-person situation reports | unknown: research use | no |" in card
    assert "May a business use this model? **No.**" in card and "English only" in card
    assert "--sources all,-meld" in card and "## Figures" in card

    rc = cli("eval", "--model", str(out), "--sources", "all", "--data-root", str(root), "--out", str(tmp_path / "r"))
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "| meld |" in printed and "Ekman macro-F1" in printed and "sarcasm F1" in printed
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert set(report["sources"]) == set(sources.SOURCES) and 0 <= report["mean_accuracy"] <= 1
    # the tiny model learnt the keyword sets: better than chance on dair's six labels
    assert report["sources"]["dair-emotion"]["accuracy"] > 0.3

    commercial = tmp_path / "commercial"
    rc = cli("train", "--base", str(base_dir), "--sources", "commercial", "--data-root", str(root), "--labels",
             "seed13", "--multi-label", "--mix-size", "60", "--max-steps", "2", "--threads", "1",
             "--output", str(commercial))
    assert rc == 0, capsys.readouterr().err
    assert "May a business use this model? **Yes" in (commercial / "README.md").read_text()


def test_train_on_sources_needs_the_seed_labels_and_says_so(root, base_dir, tmp_path, capsys):
    rc = cli("train", "--base", str(base_dir), "--sources", "all", "--data-root", str(root),
             "--output", str(tmp_path / "x"))
    assert rc != 0 and "--labels seed13 --multi-label" in capsys.readouterr().err
    rc = cli("train", "--base", str(base_dir), "--sources", "all,emotions", "--labels", "seed13", "--multi-label",
             "--data-root", str(root), "--output", str(tmp_path / "y"))
    assert rc != 0 and "unknown source 'emotions'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
