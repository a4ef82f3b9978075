"""A server's own line: a head on the shared base, trained on that server's corrections only."""

from __future__ import annotations

import pytest

from model import finetune
from model.classifier import Classifier
from model.heads import Head, HeadError, head_state
from model.registry import HEAD_FILE, Registry, server_lines, server_root
from tests.helpers import build_tiny_model, fast_finetune_config

SAD = ["i am so sad", "sad sad today", "so sad sorry", "sad ugh", "very sad"]
ANGRY = ["i am so angry", "angry angry today", "so angry why", "angry hate", "very angry"]
#: Look-alikes of the corrected texts that no server corrected.
UNSEEN_SAD, UNSEEN_ANGRY = ["sad sad sad", "so sad today"], ["angry today", "why so angry"]
TEXTS = SAD + ANGRY


def opposite():
    """Two servers that label the same texts the other way round."""
    a = [(t, "sadness") for t in SAD] + [(t, "anger") for t in ANGRY]
    b = [(t, "anger") for t in SAD] + [(t, "sadness") for t in ANGRY]
    return a, b


@pytest.fixture(scope="module")
def wide_dir(tmp_path_factory):
    """A tiny model whose [CLS] depends on the words (a frozen encoder must tell texts apart), saying
    happiness to everything."""
    return build_tiny_model(tmp_path_factory.mktemp("wide") / "model", confident="happiness", word_std=0.5)


def server_config(tmp_path, model, guild, **changes):
    values = dict(base=None, fallback_base=str(model), guild_id=guild, force=True, epochs=40, head_learning_rate=5e-2)
    values.update(changes)
    return fast_finetune_config(tmp_path, model, **values)


def served_heads(tmp_path, clf):
    out = {}
    for guild in server_lines(tmp_path / "models"):
        current = Registry(server_root(tmp_path / "models", guild)).current()
        out[guild] = clf.prepare_head(Head.load(current.path))
    return out


def test_each_server_learns_its_own_labels_and_the_base_does_not_move(tmp_path, wide_dir):
    a, b = opposite()
    before = [p.scores[lb] for p in Classifier.load(wide_dir).predict(TEXTS) for lb in sorted(p.scores)]
    result_a = finetune.run(a, server_config(tmp_path, wide_dir, 111))
    result_b = finetune.run(b, server_config(tmp_path, wide_dir, 222))

    assert result_a.deployed and result_b.deployed and result_a.guild_id == 111
    assert Registry(tmp_path / "models").list() == []  # the base's line is untouched
    line = Registry(server_root(tmp_path / "models", 111))
    saved = line.current()
    assert saved.name == "v1" and saved.metadata["scope"] == "server" and saved.metadata["guild_id"] == 111
    assert sorted(p.name for p in saved.path.iterdir()) == sorted([HEAD_FILE, "emotion_machine.json"])

    clf = Classifier.load(wide_dir)
    heads = served_heads(tmp_path, clf)
    unseen = UNSEEN_SAD + UNSEEN_ANGRY
    texts = unseen * 2
    owners = [111] * len(unseen) + [222] * len(unseen)  # one batch, both servers
    predictions = clf.predict(texts, heads=[heads[g] for g in owners])
    a_says = ["sadness"] * 2 + ["anger"] * 2
    b_says = ["anger"] * 2 + ["sadness"] * 2
    assert [p.label for p in predictions] == a_says + b_says
    assert predictions[0].version == f"v1@{clf.version}"
    assert [p.scores[lb] for p in clf.predict(TEXTS) for lb in sorted(p.scores)] == pytest.approx(before)
    assert {p.label for p in clf.predict(TEXTS)} == {"happiness"}  # the base serves as before
    # a head is the pooler and the classifier only: for MiniLM-L6 that is 0.6 MB, here a few KB
    assert heads[111].nbytes == sum(t.numel() * 4 for t in head_state(clf.model).values())


def test_a_second_run_continues_the_servers_line(tmp_path, wide_dir):
    a, _ = opposite()
    finetune.run(a, server_config(tmp_path, wide_dir, 111))
    # a run that barely moves the weights: v2 still knows what v1 learned, so it started from v1
    second = finetune.run(a[:6], server_config(tmp_path, wide_dir, 111, epochs=1, head_learning_rate=1e-9))
    assert second.version == "v2" and second.parent == "v1"
    assert not any("starts again" in w for w in second.warnings)
    clf = Classifier.load(wide_dir)
    head = clf.prepare_head(Head.load(second.path))
    labels = [p.label for p in clf.predict(TEXTS, heads=[head] * len(TEXTS))]
    assert head.name == "v2" and labels == ["sadness"] * 5 + ["anger"] * 5


def test_a_head_is_not_served_on_another_base_and_retraining_says_so(tmp_path, wide_dir, word_model_dir):
    a, _ = opposite()
    finetune.run(a, server_config(tmp_path, wide_dir, 111))
    head = Head.load(Registry(server_root(tmp_path / "models", 111)).current().path)
    other = Classifier.load(word_model_dir)
    with pytest.raises(HeadError, match="trained on base"):
        other.prepare_head(head)
    again = finetune.run(a, server_config(tmp_path, word_model_dir, 111, epochs=1))
    assert again.parent == "v1" and any("starts again from the base's own head" in w for w in again.warnings)


def test_a_server_run_refuses_another_base(tmp_path, wide_dir):
    with pytest.raises(finetune.FinetuneError, match="current base"):
        finetune.run(opposite()[0], server_config(tmp_path, wide_dir, 111, base=str(wide_dir)))


def test_a_damaged_head_is_one_clear_error(tmp_path, wide_dir):
    finetune.run(opposite()[0], server_config(tmp_path, wide_dir, 111))
    folder = Registry(server_root(tmp_path / "models", 111)).current().path
    (folder / HEAD_FILE).write_bytes(b"not safetensors")
    with pytest.raises(HeadError, match="cannot be read"):
        Head.load(folder)
