"""The /mood chart: the numbers behind it, the PNG it makes, and what its legend lists."""

from __future__ import annotations

import io
import logging
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor

import matplotlib.image
import pytest

from bot import charts
from bot.charts import (
    EMPTY_TEXT,
    HEIGHT_PX,
    OTHER,
    WIDTH_PX,
    aggregate,
    can_draw,
    label_totals,
    legend_labels,
    mood_chart,
    mood_figure,
    shares,
)
from model.labels import SEED13, emoji_for

DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]
ROWS = [
    ("2026-01-01", "happiness", 6), ("2026-01-01", "sadness", 2),
    ("2026-01-02", "happiness", 1), ("2026-01-02", "anger", 3),
    ("2026-01-03", "love", 4),
    ("2025-12-31", "fear", 50),  # outside the range: ignored
]


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def legend_texts(fig) -> list[str]:
    (ax,) = fig.axes
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_aggregate_counts_per_label_per_day_most_frequent_first():
    assert aggregate(ROWS, DAYS) == {
        "happiness": [6, 1, 0],
        "love": [0, 0, 4],
        "anger": [0, 3, 0],
        "sadness": [2, 0, 0],
    }
    assert label_totals(ROWS, DAYS) == [("happiness", 7), ("love", 4), ("anger", 3), ("sadness", 2)]
    assert label_totals(ROWS)[0] == ("fear", 50)  # no days: everything


def test_shares_of_each_day_sum_to_one_and_empty_days_are_zero():
    counts = aggregate(ROWS, [*DAYS, "2026-01-04"])
    fractions = shares(counts)
    assert fractions["happiness"] == [pytest.approx(0.75), pytest.approx(0.25), 0.0, 0.0]
    assert fractions["anger"][1] == pytest.approx(0.75)
    for i, expected in enumerate([1.0, 1.0, 1.0, 0.0]):
        assert sum(v[i] for v in fractions.values()) == pytest.approx(expected)
    assert shares({}) == {}


def test_more_than_eight_labels_keeps_the_top_eight_and_sums_the_rest_into_other():
    rows = [("2026-01-01", label, 100 - i) for i, label in enumerate(SEED13)]
    rows.append(("2026-01-02", "sarcasm", 1))  # 89 in all: still below the top 8
    counts = aggregate(rows, DAYS)
    assert list(counts) == [*SEED13[:8], OTHER]
    rest = SEED13[8:]
    assert counts[OTHER] == [sum(100 - SEED13.index(lb) for lb in rest), 1, 0]
    assert sum(map(sum, counts.values())) == sum(n for _, _, n in rows)


def test_chart_is_a_png_of_the_fixed_size_with_the_right_legend():
    png = mood_chart(ROWS, title="Mood in #general, last 3 days", days=DAYS)
    assert png_size(png) == (WIDTH_PX, HEIGHT_PX)
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert pixels.shape[:2] == (HEIGHT_PX, WIDTH_PX)

    fig = mood_figure(ROWS, title="Mood in #general, last 3 days", days=DAYS)
    texts = legend_texts(fig)
    # Top of the stack first: the least frequent label, down to the most frequent one.
    assert texts == legend_labels(["sadness", "anger", "love", "happiness"])
    assert [t.split()[-1] for t in texts] == ["sadness", "anger", "love", "happiness"]
    assert "fear" not in " ".join(texts)
    assert fig.texts[0].get_text() == "Mood in #general, last 3 days"
    # One set of bars per label (most frequent at the bottom), one bar per day it occurs.
    (ax,) = fig.axes
    assert [c.get_label() for c in ax.collections] == ["happiness", "love", "anger", "sadness"]
    bars = [[(round(p.vertices[0][0] + 0.4), round(p.vertices[1][1] - p.vertices[0][1], 4))
             for p in c.get_paths()] for c in ax.collections]
    assert bars[0] == [(0, 0.75), (1, 0.25)]  # happiness: (day index, share of the day)
    assert bars[1] == [(2, 1.0)] and bars[2] == [(1, 0.75)] and bars[3] == [(0, 0.25)]


def test_legend_shows_an_emoji_only_where_a_font_can_draw_it():
    texts = legend_labels([*SEED13, OTHER])
    for label, text in zip([*SEED13, OTHER], texts, strict=True):
        emoji = emoji_for(label).replace("\ufe0f", "")
        if label != OTHER and can_draw(emoji):
            assert text == f"{emoji} {label}"
        else:
            assert text == label
    assert texts[-1] == OTHER


def test_legend_falls_back_to_names_when_no_font_has_the_emoji(monkeypatch):
    monkeypatch.setattr(charts, "_family_for", lambda cp: "DejaVu Sans" if cp < 0x2000 else None)
    assert legend_labels(["happiness", "love", "custom"]) == ["happiness", "love", "custom"]
    fig = mood_figure(ROWS, title="Mood in 😄 land", days=DAYS)
    assert legend_texts(fig) == ["sadness", "anger", "love", "happiness"]
    assert fig.texts[0].get_text() == "Mood in land"  # the undrawable emoji is left out


def test_rendering_every_label_and_odd_titles_warns_about_nothing(caplog):
    rows = [(day, label, 1 + i) for i, label in enumerate([*SEED13, "custom-label"]) for day in DAYS]
    title = "Mood in 🤢🙃 $\\frac$ #général 😄"  # an undrawable emoji; '$' must not start mathtext
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")
        png = mood_chart(rows, title=title, days=DAYS)
    assert png_size(png) == (WIDTH_PX, HEIGHT_PX)
    assert not [r for r in caplog.records if r.name.startswith("matplotlib")]
    drawn = mood_figure(rows, title=title, days=DAYS).texts[0].get_text()
    assert "$\\frac$ #général" in drawn and can_draw(drawn)


def test_no_rows_gives_an_empty_chart_that_says_so():
    fig = mood_figure([], title="Mood in #quiet, last 14 days", days=DAYS)
    assert fig.axes == []
    assert EMPTY_TEXT in [t.get_text() for t in fig.texts]
    assert png_size(mood_chart([], title="Mood in #quiet", days=DAYS)) == (WIDTH_PX, HEIGHT_PX)
    assert aggregate([], DAYS) == {}


def test_a_channel_whose_rows_are_all_outside_the_range_is_empty():
    rows = [("2025-11-01", "happiness", 3), ("2025-11-02", "anger", 1)]
    assert aggregate(rows, DAYS) == {}
    fig = mood_figure(rows, title="Mood in #old", days=DAYS)
    assert fig.axes == [] and EMPTY_TEXT in [t.get_text() for t in fig.texts]


def test_one_day():
    rows = [("2026-01-03", "anger", 1), ("2026-01-03", "love", 3)]
    counts = aggregate(rows, ["2026-01-03"])
    assert counts == {"love": [3], "anger": [1]}
    assert shares(counts) == {"love": [0.75], "anger": [0.25]}
    fig = mood_figure(rows, title="Today", days=["2026-01-03"])
    assert [t.split()[-1] for t in legend_texts(fig)] == ["anger", "love"]
    assert png_size(mood_chart(rows, title="Today", days=["2026-01-03"])) == (WIDTH_PX, HEIGHT_PX)


def test_unknown_labels_get_distinct_colours():
    labels = ["custom-a", "custom-b", "custom-c", "happiness", OTHER]
    colours = charts._colours(labels)
    assert len(set(colours)) == len(labels)
    assert colours == charts._colours(labels)  # stable


def test_concurrent_renders_from_threads_give_the_same_png():
    with ThreadPoolExecutor(4) as pool:
        pngs = list(pool.map(lambda _: mood_chart(ROWS, title="t", days=DAYS), range(4)))
    assert len(set(pngs)) == 1
