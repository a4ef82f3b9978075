"""The ``/mood`` chart: the emotion mix per day as stacked bars of each label's share.

Pure functions (:func:`aggregate`, :func:`shares`, :func:`label_totals`, :func:`legend_labels`)
turn ``Store.emotion_counts`` rows into numbers; :func:`mood_chart` draws them into a PNG.

Rendering uses matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), never pyplot's
global state, and runs behind a lock, so it is safe to call from a worker thread
(the cog uses ``asyncio.to_thread``). It is CPU work (~0.1-0.3 s): never call it on the
event loop.

Text is only drawn with glyphs that a real font has: an emoji goes into the legend when
some installed, scalable font covers it (DejaVu Sans, matplotlib's default, has most of the
"emoticons" block but not e.g. 🤢 or 🙃), else the label is shown alone. Characters no font
has (in a server or channel name) are left out of the title. So the chart never shows tofu
boxes nor makes matplotlib warn about missing glyphs.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date

from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from model.labels import emoji_for

log = logging.getLogger(__name__)

__all__ = [
    "HEIGHT_PX",
    "OTHER",
    "TOP_LABELS",
    "WIDTH_PX",
    "aggregate",
    "can_draw",
    "label_totals",
    "legend_labels",
    "mood_chart",
    "mood_figure",
    "shares",
]

TOP_LABELS = 8
"""Labels drawn on their own; the rest are summed into :data:`OTHER`."""
OTHER = "other"
WIDTH_PX, HEIGHT_PX, DPI = 1000, 500, 100
EMPTY_TEXT = "No messages in this range"

Row = tuple[str, str, int]  # (day 'YYYY-MM-DD', label, count), as Store.emotion_counts returns

# Fixed colours for the seed model's labels, so a label keeps its colour from one chart to the next.
_COLOURS: dict[str, str] = {
    "happiness": "#edc948", "sadness": "#4e79a7", "anger": "#e15759", "love": "#ff9da7",
    "surprise": "#f28e2b", "fear": "#b07aa1", "neutral": "#9d9d9d", "disgust": "#59a14f",
    "shame": "#9c755f", "guilt": "#76b7b2", "confusion": "#d4a6c8", "desire": "#d37295",
    "sarcasm": "#8cd17d",
}
_OTHER_COLOUR = "#dddddd"
# For labels of other models: picked by a stable hash of the label, skipping colours already used.
_SPARE_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)

# Drawn as part of their neighbour, never on their own: variation selectors and ZWJ.
_INVISIBLE = frozenset({0xFE0E, 0xFE0F, 0x200D})

_RENDER_LOCK = threading.Lock()


# --------------------------------------------------------------------------- numbers


def label_totals(rows: Iterable[Row], days: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """``(label, count)`` summed over the days (all rows when ``days`` is None), most frequent first.

    Ties are broken by label name so the order is deterministic.
    """
    wanted = None if days is None else set(days)
    totals: dict[str, int] = {}
    for day, label, n in rows:
        if wanted is None or day in wanted:
            totals[label] = totals.get(label, 0) + int(n)
    return sorted(((lb, n) for lb, n in totals.items() if n > 0), key=lambda kv: (-kv[1], kv[0]))


def aggregate(rows: Iterable[Row], days: Sequence[str], *, top: int = TOP_LABELS) -> dict[str, list[int]]:
    """Counts per label per day: ``{label: [count on days[0], count on days[1], ...]}``.

    Rows whose day is not in ``days`` are ignored. The ``top`` most frequent labels come first
    (most frequent first); when there are more, the rest are summed into ``"other"``, last.
    Labels with no message in the range are left out, so no rows gives ``{}``.
    """
    rows = list(rows)
    index = {day: i for i, day in enumerate(days)}
    per_label: dict[str, list[int]] = {}
    for day, label, n in rows:
        i = index.get(day)
        if i is not None:
            per_label.setdefault(label, [0] * len(days))[i] += int(n)
    ranked = [lb for lb, _ in label_totals(rows, days)]
    kept = ranked if len(ranked) <= top else ranked[:top]
    result = {lb: per_label[lb] for lb in kept if lb != OTHER}
    rest = [lb for lb in ranked if lb not in result]
    if rest:
        result[OTHER] = [sum(col) for col in zip(*(per_label[lb] for lb in rest), strict=True)]
    return result


def shares(counts: Mapping[str, Sequence[int]]) -> dict[str, list[float]]:
    """Each label's share of the day's messages (0.0 on days with none); a day's shares sum to 1."""
    if not counts:
        return {}
    day_totals = [sum(col) for col in zip(*counts.values(), strict=True)]
    return {
        label: [n / total if total else 0.0 for n, total in zip(values, day_totals, strict=True)]
        for label, values in counts.items()
    }


# --------------------------------------------------------------------------- fonts


@functools.cache
def _primary_font() -> tuple[str, frozenset[int]]:
    """The default font (rcParams' first match) and the code points it has glyphs for."""
    path = font_manager.findfont(font_manager.FontProperties())
    font = FT2Font(path)
    return font.family_name, frozenset(font.get_charmap())


def _is_scalable(font: FT2Font) -> bool:
    flags = font.face_flags
    try:
        from matplotlib.ft2font import FaceFlags  # matplotlib >= 3.10: an enum.Flag
    except ImportError:
        return bool(int(flags) & 1)  # FT_FACE_FLAG_SCALABLE
    return FaceFlags.SCALABLE in flags


@functools.cache
def _fallback_fonts() -> tuple[tuple[str, frozenset[int]], ...]:
    """Other installed families with a regular (weight 400, upright) scalable face.

    A code point counts for a family only when every regular file of that family has it
    (matplotlib picks one of them by name). Excluded: matplotlib's "Last Resort" font (its
    glyphs *are* the tofu boxes), bitmap-only fonts such as CBDT Noto Color Emoji (FreeType
    in matplotlib cannot draw them) and families without a regular face (matplotlib would
    log a "Failed to find font weight" warning when asked for them).
    """
    primary, _ = _primary_font()
    regular: dict[str, list[str]] = {}
    for entry in font_manager.fontManager.ttflist:
        name = entry.name
        if name == primary or name.lower().startswith("last resort"):
            continue
        if entry.style == "normal" and entry.weight in (400, "normal", "regular", "book"):
            regular.setdefault(name, []).append(entry.fname)
    found: list[tuple[str, frozenset[int]]] = []
    for name in sorted(regular):
        try:
            charmaps = []
            for path in dict.fromkeys(regular[name]):
                font = FT2Font(path)
                if not _is_scalable(font):
                    break
                charmaps.append(frozenset(font.get_charmap()))
            else:
                found.append((name, frozenset.intersection(*charmaps)))
        except Exception as exc:  # noqa: BLE001 - a broken font file must not break the chart
            log.debug("skipping font %s: %s", name, exc)
    return tuple(found)


def _family_for(codepoint: int) -> str | None:
    """The first family (primary first) that has a glyph for ``codepoint``, else None."""
    primary, charmap = _primary_font()
    if codepoint in charmap:
        return primary
    for family, cmap in _fallback_fonts():
        if codepoint in cmap:
            return family
    return None


def _drawable(text: str) -> tuple[str, list[str]]:
    """``text`` without the characters no font can draw, and the font families it needs."""
    primary, _ = _primary_font()
    families = [primary]
    kept: list[str] = []
    for ch in text:
        cp = ord(ch)
        if ch.isspace():
            kept.append(" ")
            continue
        if cp in _INVISIBLE:
            continue
        family = _family_for(cp)
        if family is None:
            continue
        if family not in families:
            families.append(family)
        kept.append(ch)
    return "".join(kept), families


def can_draw(text: str) -> bool:
    """Whether every visible character of ``text`` has a glyph in an installed font."""
    return all(
        ch.isspace() or ord(ch) in _INVISIBLE or _family_for(ord(ch)) is not None for ch in text
    )


def legend_labels(labels: Iterable[str]) -> list[str]:
    """The legend text of each label: ``"😄 happiness"`` when a font can draw the emoji, else ``"happiness"``.

    ``"other"`` never gets an emoji. Invisible code points (variation selectors) are dropped,
    so ``❤️`` is drawn as ``❤``.
    """
    texts = []
    for label in labels:
        emoji = "" if label == OTHER else "".join(
            ch for ch in emoji_for(label) if ord(ch) not in _INVISIBLE)
        texts.append(f"{emoji} {label}" if emoji and can_draw(emoji) else label)
    return texts


# --------------------------------------------------------------------------- drawing


def _colours(labels: Sequence[str]) -> list[str]:
    used = {_COLOURS[lb] for lb in labels if lb in _COLOURS}
    colours = []
    for label in labels:
        if label == OTHER:
            colours.append(_OTHER_COLOUR)
        elif label in _COLOURS:
            colours.append(_COLOURS[label])
        else:
            start = zlib.crc32(label.encode("utf-8")) % len(_SPARE_COLOURS)
            for k in range(len(_SPARE_COLOURS)):
                colour = _SPARE_COLOURS[(start + k) % len(_SPARE_COLOURS)]
                if colour not in used:
                    break
            used.add(colour)
            colours.append(colour)
    return colours


def _tick_text(day: str) -> str:
    try:
        return date.fromisoformat(day).strftime("%b %d")
    except ValueError:
        return day


def _set_title(fig: Figure, title: str) -> None:
    text, families = _drawable(title)
    fig.suptitle(" ".join(text.split()), fontsize=14, fontfamily=families, parse_math=False)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf, metadata={"Software": None})
    return buf.getvalue()


def mood_chart(rows: Iterable[Row], *, title: str, days: Sequence[str]) -> bytes:
    """A ``WIDTH_PX`` x ``HEIGHT_PX`` PNG of each label's share of the messages of each day.

    ``rows`` are ``(day, label, count)`` (as ``Store.emotion_counts`` returns), ``days`` the
    x axis, oldest first (days with no row get an empty bar). With no message in the range
    the chart says so instead. Thread-safe; CPU-bound: call it with ``asyncio.to_thread``.
    """
    with _RENDER_LOCK:
        return _png(mood_figure(rows, title=title, days=days))


def mood_figure(rows: Iterable[Row], *, title: str, days: Sequence[str]) -> Figure:
    """The figure :func:`mood_chart` renders (for tests: its legend and bars can be inspected).

    The legend lists the labels top of the stack first, i.e. ``"other"`` first when present,
    then the least frequent label up to the most frequent one at the bottom.
    """
    days = list(days)
    counts = aggregate(rows, days)
    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    _set_title(fig, title)
    if not counts:
        fig.text(0.5, 0.5, EMPTY_TEXT, ha="center", va="center", fontsize=18, color="#555555")
        return fig

    fig.subplots_adjust(left=0.08, right=0.78, top=0.86, bottom=0.12)
    ax = fig.add_subplot()
    labels = list(counts)
    fractions = shares(counts)
    colours = _colours(labels)
    # One PolyCollection per label rather than ax.bar: 90 days x 9 labels as separate patches
    # cost ~0.5 s of bookkeeping; a collection of rectangles draws the same in a few ms.
    bottom = [0.0] * len(days)
    for label, colour in zip(labels, colours, strict=True):
        values = fractions[label]
        rects = [[(i - 0.4, b), (i - 0.4, b + v), (i + 0.4, b + v), (i + 0.4, b)]
                 for i, (b, v) in enumerate(zip(bottom, values, strict=True)) if v > 0]
        ax.add_collection(PolyCollection(rects, facecolors=colour, edgecolors="white", linewidths=0.5,
                                         label=label), autolim=False)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]

    ax.set_xlim(-0.6, len(days) - 0.4)
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("share of the day's messages")
    step = max(1, math.ceil(len(days) / 16))
    ticks = list(range(len(days) - 1, -1, -step))[::-1]  # always label the last day
    ax.set_xticks(ticks, [_tick_text(days[i]) for i in ticks])
    ax.tick_params(axis="x", labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    if len(days) <= 31:  # message count above each bar, while they fit
        day_totals = [sum(col) for col in zip(*counts.values(), strict=True)]
        for i, n in enumerate(day_totals):
            ax.text(i, 1.01, str(n), ha="center", va="bottom", fontsize=7, color="#555555",
                    transform=ax.get_xaxis_transform(), clip_on=False)

    texts = legend_labels(labels)
    families = [_primary_font()[0]]
    for text in texts:
        families += [f for f in _drawable(text)[1] if f not in families]
    handles = [Patch(facecolor=c, edgecolor="white") for c in colours]
    legend = ax.legend(handles[::-1], texts[::-1], loc="center left", bbox_to_anchor=(1.02, 0.5),
                       frameon=False, prop=font_manager.FontProperties(family=families, size=10))
    for text in legend.get_texts():
        text.set_parse_math(False)
    return fig
