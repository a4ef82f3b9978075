"""The model card (``README.md`` beside the weights) that ``train`` writes from the run's metadata.

Why: several of the labelled sets are research-only or of unknown terms, and whoever deploys a model
must be able to see, without the training logs, what it was trained on and whether a business may
use it. Everything here comes from the metadata ``train`` records, so the card cannot drift from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model.registry import write_atomic

CARD_FILE = "README.md"

#: Terms of a single-folder GoEmotions run (its README), for a model trained with ``--data``.
_GOEMOTIONS = {"text": "Reddit comments", "terms": "Apache-2.0", "commercial": True}

LIMITS = """\
- **English only.** Every training set is English; other languages get confident nonsense.
- **Sarcasm is hard.** The sarcasm label learns from two small sets (tweets labelled by their authors,
  TV lines); it is right far less often than the emotions, and a sarcastic message's other labels
  follow its literal words.
- **Writer or reader.** The sets mix how the writer felt (iSarcasmEval, ISEAR) with how readers
  judged the text (GoEmotions, XED, MELD). The bot shows one label: read it as "this reads as".
- **One message, no context.** The model sees one message (64 tokens at most), not the conversation;
  replies and in-jokes are read literally. Quoted lines (`> `) are not read at all.
- **Mapped labels.** Each set's labels are mapped onto the seed's 13 (docs/labels.md); `love`,
  `desire`, `confusion` come from GoEmotions alone, `shame` and `guilt` mostly from ISEAR.
"""


def _commercial(sources: dict[str, dict[str, Any]]) -> str:
    blocked = [f"{name} ({s['terms']})" for name, s in sources.items() if not s.get("commercial")]
    if not blocked:
        return ("**Yes, as far as the sets' own terms go**: every source's terms allow it (see each source's "
                "caveats about the underlying texts' copyright in its README).")
    return "**No.** These sources' terms do not allow it: " + ", ".join(blocked) + \
        ". Train with `--sources commercial` for a model whose sources allow it."


def _figures(metrics: dict[str, Any]) -> list[str]:
    dev = metrics.get("dev") or {}
    if not dev:
        return ["No dev split was scored (`--no-use-dev`)."]
    lines = [f"Dev ({dev.get('examples', '?')} rows): macro-F1 {dev.get('macro_f1', 0):.3f}, "
             f"micro-F1 {dev.get('micro_f1', 0):.3f} (thresholds tuned on these rows)."]
    if dev.get("by_source"):
        lines += ["", "| source (dev) | rows | accuracy | macro-F1 |", "|---|---:|---:|---:|"]
        for name, r in dev["by_source"].items():
            acc = "" if r.get("accuracy") is None else f"{r['accuracy']:.3f}"
            f1 = "" if r.get("macro_f1") is None else f"{r['macro_f1']:.3f}"
            lines.append(f"| {name} | {r['examples']} | {acc} | {f1} |")
        lines += ["", "Accuracy is in each set's own labels (`model/source_scores.py`). Test-split figures: "
                      "`emotion-machine eval --model THIS_FOLDER --sources all`."]
    return lines


def render(meta: dict[str, Any]) -> str:
    """The card's markdown for ``meta`` (a version's metadata as ``train`` writes it)."""
    sources = meta.get("sources") or {Path(str(meta.get("data") or "data")).name: {
        **(_GOEMOTIONS if "goemotions" in str(meta.get("data", "")).lower() else
           {"text": "a file of labelled texts", "terms": "as its owner states", "commercial": False})}}
    recipe = meta.get("recipe") or {}
    skip = {"data"} if meta.get("sources") else {"sources", "mix_size", "mix_temperature"}
    flags = " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in recipe.items()
                     if v not in (None, "", False, 0, -1) and k not in skip)
    lines = [
        f"# Emotion Machine model {meta.get('version', '')}".rstrip(),
        "",
        f"An emotion classifier for chat messages: {len(meta.get('labels', []))} labels "
        f"({', '.join(meta.get('labels', []))}), "
        f"{'multi-label (a sigmoid per label, per-label thresholds)' if meta.get('multi_label') else 'single-label'}, "
        f"text form `{meta.get('text_form', 'chat')}` (model/chat_text.py). Base: `{meta.get('base')}`.",
        "",
        "## Intended use",
        "",
        "Tagging the messages of a Discord community with the emotion they read as, so members can see and correct "
        "it (the Emotion Machine bot). Not for judging people, moderation decisions, or mental-health assessment.",
        "",
        "## Training data",
        "",
        "| source | texts | terms | commercial use | rows (available / taken) |",
        "|---|---|---|---|---:|",
    ]
    for name, s in sources.items():
        train_rows = (meta.get("examples") or {}).get("train", "")
        rows = f"{s['available']} / {s['taken']}" if "available" in s else str(train_rows)
        lines.append(f"| {name} | {s.get('text', '')} | {s.get('terms', '')} | "
                     f"{'yes' if s.get('commercial') else 'no'} | {rows} |")
    lines += ["", f"May a business use this model? {_commercial(sources)}", "",
              "## Recipe", "", f"`emotion-machine train {flags}`".replace("  ", " "), "",
              f"{(meta.get('examples') or {}).get('train', '?')} training rows, "
              f"{(meta.get('metrics') or {}).get('steps', '?')} steps, {meta.get('training_seconds', '?')} s on "
              f"{(meta.get('hardware') or {}).get('gpu') or (meta.get('hardware') or {}).get('cpu', '?')}.", "",
              "## Figures", "", *_figures(meta.get("metrics") or {}), "",
              "## Known limits", "", LIMITS]
    return "\n".join(lines)


def write_card(folder: Path, meta: dict[str, Any]) -> Path:
    """Write ``folder/README.md`` (atomically) and return its path."""
    path = Path(folder) / CARD_FILE
    write_atomic(path, render(meta))
    return path
