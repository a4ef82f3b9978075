"""Label sets, the emoji for each label, and mappings between the sets.

A loaded model's labels always come from its own ``config.id2label``; the sets here
name what the seed model and the training data use, so that training can map one
onto another and the bot can pick an emoji for any label it meets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

#: The seed model ``boltuix/bert-emotion``, in its id order.
SEED13: tuple[str, ...] = (
    "sadness", "anger", "love", "surprise", "fear", "happiness", "neutral",
    "disgust", "shame", "guilt", "confusion", "desire", "sarcasm",
)

#: GoEmotions (Demszky et al. 2020), id order of its ``labels.txt``.
GOEMOTIONS: tuple[str, ...] = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
    "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
    "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "optimism",
    "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral",
)

#: Ekman's six basic emotions plus neutral.
EKMAN: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral")

LABEL_SETS: dict[str, tuple[str, ...]] = {"seed13": SEED13, "goemotions": GOEMOTIONS, "ekman": EKMAN}

#: GoEmotions → Ekman, the paper's grouping (``ekman_mapping.json`` in the data folder).
GOEMOTIONS_TO_EKMAN: dict[str, str] = {
    **dict.fromkeys(["anger", "annoyance", "disapproval"], "anger"),
    "disgust": "disgust",
    **dict.fromkeys(["fear", "nervousness"], "fear"),
    **dict.fromkeys(
        ["joy", "amusement", "approval", "excitement", "gratitude", "love", "optimism",
         "relief", "pride", "admiration", "desire", "caring"], "joy"),
    **dict.fromkeys(["sadness", "disappointment", "embarrassment", "grief", "remorse"], "sadness"),
    **dict.fromkeys(["surprise", "realization", "confusion", "curiosity"], "surprise"),
    "neutral": "neutral",
}

#: GoEmotions → the seed's 13. The reasoning for each line is in docs/labels.md.
#: No GoEmotions label maps to ``sarcasm``: that label only learns from corrections.
GOEMOTIONS_TO_SEED13: dict[str, str] = {
    "admiration": "love", "amusement": "happiness", "anger": "anger", "annoyance": "anger",
    "approval": "happiness", "caring": "love", "confusion": "confusion", "curiosity": "confusion",
    "desire": "desire", "disappointment": "sadness", "disapproval": "anger", "disgust": "disgust",
    "embarrassment": "shame", "excitement": "happiness", "fear": "fear", "gratitude": "happiness",
    "grief": "sadness", "joy": "happiness", "love": "love", "nervousness": "fear",
    "optimism": "happiness", "pride": "happiness", "realization": "surprise", "relief": "happiness",
    "remorse": "guilt", "sadness": "sadness", "surprise": "surprise", "neutral": "neutral",
}

MAPPINGS: dict[str, dict[str, str]] = {"ekman": GOEMOTIONS_TO_EKMAN, "seed13": GOEMOTIONS_TO_SEED13}

#: Ekman → the seed's 13: the same emotions, except that the seed calls joy happiness.
EKMAN_TO_SEED13: dict[str, str] = {lb: ("happiness" if lb == "joy" else lb) for lb in EKMAN}

#: The seed's 13 → Ekman, by GoEmotions' own grouping of the nearest GoEmotions label (shame is
#: embarrassment, guilt is remorse: both sadness; confusion is surprise). Sarcasm has no Ekman emotion.
SEED13_TO_EKMAN: dict[str, str] = {
    "sadness": "sadness", "anger": "anger", "love": "joy", "surprise": "surprise", "fear": "fear",
    "happiness": "joy", "neutral": "neutral", "disgust": "disgust", "shame": "sadness", "guilt": "sadness",
    "confusion": "surprise", "desire": "joy",
}

#: Every label mapping the project knows, with the label set it maps into; :func:`translate` uses
#: those made for the model's own set.
KNOWN_MAPPINGS: tuple[tuple[dict[str, str], tuple[str, ...]], ...] = (
    (GOEMOTIONS_TO_EKMAN, EKMAN), (GOEMOTIONS_TO_SEED13, SEED13), (EKMAN_TO_SEED13, SEED13), (SEED13_TO_EKMAN, EKMAN),
)


def translate(label: str, labels: Sequence[str]) -> str | None:
    """``label`` in the label set ``labels`` (a model's): itself, a known mapping, or None.

    Used when a model's label set changes: corrections stored under the old set (GoEmotions
    names, Ekman's, the seed's) still teach the new model where the project knows a mapping
    for that set (GoEmotions → Ekman → seed 13, and the seed's 13 → Ekman); the rest are listed, not
    guessed.
    """
    canonical = {lb.lower(): lb for lb in labels}
    key = label.strip().lower()
    if key in canonical:
        return canonical[key]
    # Only a table made for this label set: GoEmotions' curiosity is the seed's confusion, though
    # GoEmotions → Ekman (surprise) would also land inside the seed's set.
    for table in (table for table, into in KNOWN_MAPPINGS if set(into) == set(canonical)):
        mapped = table.get(key)
        if mapped is not None and mapped in canonical:
            return canonical[mapped]
    return None


def label_set_named(name: str) -> tuple[str, ...]:
    """The label set called ``name`` (seed13, goemotions, ekman); ValueError naming the choices."""
    try:
        return LABEL_SETS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown label set {name!r}: choose one of {', '.join(LABEL_SETS)}") from None

EMOJI: dict[str, str] = {
    # seed 13
    "sadness": "😢", "anger": "😠", "love": "❤️", "surprise": "😮", "fear": "😨",
    "happiness": "😄", "neutral": "😐", "disgust": "🤢", "shame": "😳", "guilt": "😔",
    "confusion": "😕", "desire": "😍", "sarcasm": "🙃",
    # GoEmotions extras
    "admiration": "🤩", "amusement": "😂", "annoyance": "😒", "approval": "👍", "caring": "🤗",
    "curiosity": "🤔", "disappointment": "😞", "disapproval": "👎", "embarrassment": "🫣",
    "excitement": "🎉", "gratitude": "🙏", "grief": "😭", "joy": "😊", "nervousness": "😬",
    "optimism": "🌈", "pride": "🦁", "realization": "💡", "relief": "😌", "remorse": "🥀",
}

#: Shown for a label this table does not know (a custom model's label).
FALLBACK_EMOJI = "🏷️"


def emoji_for(label: str) -> str:
    """The emoji for ``label``; unknown labels get :data:`FALLBACK_EMOJI` rather than an error."""
    return EMOJI.get(label.strip().lower(), FALLBACK_EMOJI)


def labels_from_config(id2label: dict | None) -> tuple[str, ...]:
    """Labels in id order from a ``config.id2label``; raises ``ValueError`` for an unusable one.

    Transformers fills in ``LABEL_0``… when a checkpoint has none: those are not emotions, so
    they are refused here with the fix named.
    """
    if not id2label:
        raise ValueError("the model config has no id2label: set config.id2label to the label names")
    items = sorted((int(k), str(v)) for k, v in id2label.items())
    if [i for i, _ in items] != list(range(len(items))):
        raise ValueError(f"config.id2label ids are not 0..{len(items) - 1}: {dict(items)}")
    labels = tuple(v for _, v in items)
    if all(v == f"LABEL_{i}" for i, v in enumerate(labels)):
        raise ValueError(
            "the model config has only placeholder labels (LABEL_0, LABEL_1, …): "
            "set config.id2label to the emotion names before using it")
    return labels


def map_label(label: str, target: str) -> str | None:
    """Map a GoEmotions label into ``target`` ('goemotions', 'ekman' or 'seed13')."""
    if target == "goemotions":
        return label if label in GOEMOTIONS else None
    return MAPPINGS[target].get(label)


def load_mapping_file(path: str | Path) -> dict[str, str]:
    """Read an ``ekman_mapping.json``-shaped file ({group: [labels]}) into label → group."""
    groups = json.loads(Path(path).read_text(encoding="utf-8"))
    return {label: group for group, members in groups.items() for label in members}
