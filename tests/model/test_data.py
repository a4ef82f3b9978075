"""Data loaders on small fixtures written here: every source ends as a text/label Dataset."""

from __future__ import annotations

import json

import pytest

from model import data
from model.data import DataError
from model.labels import GOEMOTIONS, SEED13


def test_pairs_become_a_text_label_dataset():
    ds = data.from_pairs([(" i am so happy ", "happiness"), ("ugh", "anger")])
    assert ds.column_names == ["text", "label"]
    assert ds["text"] == ["i am so happy", "ugh"] and ds["label"] == ["happiness", "anger"]
    assert len(data.from_pairs([])) == 0


def test_pairs_refuse_blank_text_or_label():
    with pytest.raises(DataError, match="example 1: empty label"):
        data.from_pairs([("fine", "neutral"), ("hm", " ")])


def test_csv_with_header(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('Text,label,extra\n"hello, you",love,x\nsad day,sadness,y\n', encoding="utf-8")
    ds = data.load_examples(path)
    assert ds["text"] == ["hello, you", "sad day"] and ds["label"] == ["love", "sadness"]


def test_csv_bad_row_names_its_line(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("text,label\nfine,neutral\nmissing label,\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"c\.csv:3: empty or missing label"):
        data.load_csv(path)
    path.write_text("words,tag\nfine,neutral\n", encoding="utf-8")
    with pytest.raises(DataError, match="header must name"):
        data.load_csv(path)


def test_jsonl_and_its_bad_row_line_number(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"text": "wow", "label": "surprise"}, {"text": "lol", "label": "happiness"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert data.load_examples(path)["label"] == ["surprise", "happiness"]
    path.write_text(json.dumps(rows[0]) + "\n" + '{"text": "oops"\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl:2: not valid JSON"):
        data.load_jsonl(path)
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"text": "x", "label": 3}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl:2: .*label"):
        data.load_jsonl(path)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        data.load_examples(tmp_path / "nope.csv")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unknown data format"):
        data.load_examples(tmp_path / "x.txt")


@pytest.fixture
def goemotions_dir(tmp_path):
    folder = tmp_path / "goemotions"
    folder.mkdir()
    (folder / "labels.txt").write_text("\n".join(GOEMOTIONS) + "\n", encoding="utf-8")
    ids = {name: i for i, name in enumerate(GOEMOTIONS)}
    rows = [
        ("I love this", f"{ids['love']}", "a1"),
        ("haha so funny and great", f"{ids['amusement']},{ids['joy']}", "a2"),  # both → happiness/joy
        ("what? why?!", f"{ids['confusion']},{ids['anger']}", "a3"),  # two different targets
        ("meh", f"{ids['neutral']}", "a4"),
        ("so embarrassing", f"{ids['embarrassment']}", "a5"),
    ]
    (folder / "train.tsv").write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    (folder / "dev.tsv").write_text(f"ok then\t{ids['neutral']}\tb1\n", encoding="utf-8")
    return folder


def test_goemotions_keeps_rows_with_exactly_one_label_after_mapping(goemotions_dir):
    raw = data.load_goemotions(goemotions_dir)
    assert raw["label"] == ["love", "neutral", "embarrassment"]  # multi-label rows dropped unmapped
    seed = data.load_examples(goemotions_dir, target="seed13")
    assert list(zip(seed["text"], seed["label"])) == [
        ("I love this", "love"), ("haha so funny and great", "happiness"), ("meh", "neutral"),
        ("so embarrassing", "shame")]
    ekman = data.load_goemotions(goemotions_dir, target="ekman")
    assert ekman["label"] == ["joy", "joy", "neutral", "sadness"]
    assert data.load_goemotions(goemotions_dir, "dev", target="seed13")["label"] == ["neutral"]
    assert data.has_split(goemotions_dir, "dev") and not data.has_split(goemotions_dir / "labels.txt", "dev")


def test_goemotions_bad_ids_name_the_line(goemotions_dir):
    with open(goemotions_dir / "train.tsv", "a", encoding="utf-8") as f:
        f.write("broken\t99\tz9\n")
    with pytest.raises(DataError, match=r"train\.tsv:6: label ids '99'"):
        data.load_goemotions(goemotions_dir)
    with pytest.raises(DataError, match="unknown label set"):
        data.load_goemotions(goemotions_dir, target="plutchik")


def test_target_for_picks_the_mapping_that_fits_the_model():
    assert data.target_for(SEED13) == "seed13"
    assert data.target_for(GOEMOTIONS) == "goemotions"
    with pytest.raises(DataError, match="no GoEmotions mapping"):
        data.target_for(["pos", "neg"])


def test_hub_name_is_recognised_without_loading():
    assert data.is_hub_source("google-research-datasets/go_emotions")
    assert data.is_hub_source("hub:go_emotions")
    assert not data.is_hub_source("data/replay.csv")


def test_check_labels_names_unknown_labels_and_the_valid_set():
    ds = data.from_pairs([("a", "happiness"), ("b", "joy"), ("c", "joy")])
    data.check_labels(data.from_pairs([("a", "happiness")]), SEED13)
    with pytest.raises(DataError, match=r"'joy' \(2x\).*sadness, anger"):
        data.check_labels(ds, SEED13)


def test_replay_sample_is_sized_by_ratio_and_seeded():
    replay = data.from_pairs((f"text {i}", "neutral") for i in range(50))
    a = data.replay_sample(replay, 10, 2.0, seed=1)
    assert len(a) == 20 and a["text"] == data.replay_sample(replay, 10, 2.0, seed=1)["text"]
    assert len(data.replay_sample(replay, 10, 100.0)) == 50
    assert len(data.replay_sample(replay, 10, 0.0)) == 0
    with pytest.raises(DataError):
        data.replay_sample(replay, 10, -1)
