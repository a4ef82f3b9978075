"""Mapping a label into another label set: what a model switch does to the corrections stored before it."""

from __future__ import annotations

import pytest

from model.labels import (
    EKMAN,
    GOEMOTIONS,
    GOEMOTIONS_TO_EKMAN,
    GOEMOTIONS_TO_SEED13,
    SEED13,
    label_set_named,
    translate,
)


def test_every_goemotions_label_maps_as_its_own_table_says():
    assert [translate(g, SEED13) for g in GOEMOTIONS] == [GOEMOTIONS_TO_SEED13[g] for g in GOEMOTIONS]
    assert [translate(g, EKMAN) for g in GOEMOTIONS] == [GOEMOTIONS_TO_EKMAN[g] for g in GOEMOTIONS]
    # the seed's table wins where Ekman's would also land inside the seed's set
    assert translate("curiosity", SEED13) == "confusion" and translate("remorse", SEED13) == "guilt"


def test_ekman_and_the_seed_map_both_ways_and_the_rest_is_none():
    assert translate("joy", SEED13) == "happiness" and translate("happiness", EKMAN) == "joy"
    assert translate("shame", EKMAN) == "sadness" and translate("confusion", EKMAN) == "surprise"
    assert translate("sarcasm", EKMAN) is None  # no Ekman emotion: listed, never guessed
    assert translate("happiness", GOEMOTIONS) is None  # coarse → fine is not known
    assert translate(" Anger ", EKMAN) == "anger"  # the model's own spelling
    assert translate("pizza", ["pizza", "pasta"]) == "pizza" and translate("joy", ["pizza"]) is None


def test_label_sets_by_name():
    assert label_set_named("Ekman") == EKMAN
    with pytest.raises(ValueError, match="unknown label set 'emotions': choose one of seed13, goemotions, ekman"):
        label_set_named("emotions")
