"""How results look, written once: each renderer takes a :class:`Markup`, Discord's or plain text's.

The cogs render with :data:`DISCORD` (bold, code spans); the shell and the CLI with :data:`PLAIN`.
Progress bars in a terminal are tqdm's (:class:`TerminalProgress`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import IO

from model.finetune_config import metric_sets
from model.labels import emoji_for
from model.progress import TrainingEvent

TOP_K = 3
TOP_IN_TEXT = 5  # emotions a mood summary lists (the chart shows more)


@dataclass(frozen=True)
class Markup:
    bold: Callable[[str], str]
    code: Callable[[str], str]
    italic: Callable[[str], str]


DISCORD = Markup(bold=lambda s: f"**{s}**", code=lambda s: f"`{s}`", italic=lambda s: f"*{s}*")
PLAIN = Markup(bold=str, code=str, italic=str)


def bar(fraction: float, width: int = 12) -> str:
    """``██████░░░░`` for a fraction in [0, 1]."""
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    return "█" * filled + "░" * (width - filled)


def label(name: str | None, m: Markup) -> str:
    """``😢 sadness`` with the name emphasised; a message the bot never tagged says so."""
    return f"{emoji_for(name)} {m.bold(name)}" if name else m.italic("(not tagged)")


def top_lines(prediction, m: Markup, k: int = TOP_K, width: int = 12) -> list[str]:
    """The ``k`` most likely labels, one line each: emoji, bar, probability, label."""
    return [f"{emoji_for(lb)} {m.code(bar(p, width))} {p:6.1%} {lb}" for lb, p in prediction.top(k)]


def prediction_lines(prediction, m: Markup, k: int = TOP_K) -> list[str]:
    """The chosen label and the model that chose it, then the top ``k``."""
    head = (f"{emoji_for(prediction.label)}  {m.bold(prediction.label)} ({prediction.score:.1%})"
            f" · model {prediction.version}")
    return [head, *("   " + line for line in top_lines(prediction, m, k))]


def no_reaction(tagged, m: Markup) -> str:
    """Why the bot would not react to a tagged message (``tagged.withheld`` says which rule held it back)."""
    why = {"reactions": "reactions are off", "threshold": f"below the {tagged.threshold:.2f} threshold",
           "neutral": "neutral, and show_neutral is off"}[tagged.withheld]
    return m.italic(f"({why}: the bot would not react)")


def correction(outcome, m: Markup) -> str:
    """What the corrector is told."""
    if outcome.confirmed:
        text = f"Confirmed {label(outcome.label, m)} for that message."
    else:
        text = f"Changed {label(outcome.previous, m)} → {label(outcome.label, m)}."
    if outcome.total is not None:
        text += f" {outcome.total} correction{'s' if outcome.total != 1 else ''} stored."
    return f"{text} Thanks, this helps me learn."


# --------------------------------------------------------------------------- training


def progress(event: TrainingEvent | None, examples: int, m: Markup) -> str:
    """A retrain's progress as one message (Discord edits it every few seconds)."""
    head = f"🧠 Retraining on {examples} corrections"
    if event is None:
        return f"{head}\n{m.code(bar(0, 20))}    0%\nstarting…"
    meter = f"{m.code(bar(event.fraction, 20))} {event.fraction:4.0%}"
    if event.kind == "progress" and event.max_steps:
        parts = [f"epoch {event.epoch:.1f}", f"step {event.step}/{event.max_steps}"]
        if event.loss is not None:
            parts.append(f"loss {event.loss:.3f}")
        if event.eta_s is not None:
            parts.append(f"about {int(event.eta_s // 60)}m{int(event.eta_s % 60):02d}s left")
        return f"{head}\n{meter}\n" + " · ".join(parts)
    return f"{head}\n{meter}\n{event.describe()}…"


#: What each eval set is called in an answer.
EVAL_SET_NAMES = {"holdout": "held-out corrections", "reference": "reference set", "replay": "replay data"}


def metrics_lines(before: dict, after: dict) -> list[str]:
    """One line per eval set: current → candidate (or one model's figures where only one side is given)."""
    before, after = metric_sets(before), metric_sets(after)
    lines = []
    for name in dict.fromkeys([*before, *after]):
        b, a = before.get(name) or {}, after.get(name) or {}
        rows = (b or a).get("examples", "?")
        if b and a:
            figures = (f"macro-F1 {b.get('macro_f1', 0):.3f} → {a.get('macro_f1', 0):.3f} · "
                       f"accuracy {b.get('accuracy', 0):.3f} → {a.get('accuracy', 0):.3f}")
        else:
            figures = f"macro-F1 {(b or a).get('macro_f1', 0):.3f} · accuracy {(b or a).get('accuracy', 0):.3f}"
        lines.append(f"{EVAL_SET_NAMES.get(name, name)} ({rows}): {figures}")
    return lines


def retrain_outcome(outcome, m: Markup) -> str:
    """How a retrain ended: the gate's verdict and figures, then what is served now."""
    if outcome.status == "cancelled":
        return f"🛑 Retrain cancelled; nothing was deployed, still using {m.bold(outcome.serving)}."
    if outcome.status == "failed":
        return (f"❌ Training failed ({outcome.error}; details are in the log).\n"
                f"Nothing was deployed; I keep using {m.bold(outcome.serving)}.")
    result = outcome.result
    verdict = f"✅ Deployed {m.bold(result.version)}" if result.deployed else "⏸️ Not deployed"
    lines = [f"{verdict}: {result.reason}"]
    if result.before or result.after:
        lines += ["Current → candidate:", *(f"• {line}" for line in metrics_lines(result.before, result.after))]
    lines += [f"⚠️ {warning}" for warning in result.warnings]
    if result.mapped:
        lines.append("Mapped into the model's labels: " + ", ".join(f"{k} ×{n}" for k, n in result.mapped.items()))
    replay = f" from {m.code(result.replay_source)}" if result.replay_source else ""
    lines.append(f"{result.examples} corrections ({result.holdout} held out), "
                 f"{result.replay_examples} replay examples{replay}, {result.seconds:.0f} s")
    if result.version and not result.deployed:
        lines.append(f"Saved as {m.bold(result.version)} (not current).")
    if outcome.load_error is not None:
        lines.append(f"⚠️ {result.version} was saved but could not be loaded (see the log); "
                     "still serving the old model.")
    elif outcome.swapped and getattr(result, "guild_id", None) is not None:
        lines.append(f"Now tagging this server's messages with its {m.bold(result.version)}.")
    elif outcome.swapped:
        lines.append(f"Now tagging with {m.bold(result.version)}.")
    elif result.deployed:
        lines.append(f"Saved as {m.bold(result.version)}, now current: the bot loads it on its next start.")
    return "\n".join(lines)


def model_info(info, m: Markup) -> str:
    """``/model info`` (a server's line) and ``/base info``: the current version, its metrics, the corrections since."""
    server = getattr(info, "guild_id", None) is not None
    if info.current is None and server:
        lines = [f"This server is tagged by the shared base model {m.bold(info.base)} on {info.device} "
                 "(no version of its own yet: /retrain makes one from this server's corrections)."]
    elif info.current is None:
        lines = [f"Serving the base model {m.code(info.serving_source)} (no fine-tuned version yet)."]
    else:
        meta = info.current.metadata
        metrics = meta.get("metrics") or {}
        lines = [f"Current version {m.bold(info.current.name)} (created {info.current.created or '?'}, parent "
                 f"{meta.get('parent') or 'base'}), serving {m.bold(info.serving_version)} on {info.device}.",
                 *(["Its gate, before → after:"] if metrics.get("before") else []),
                 *(f"• {line}" for line in metrics_lines(metrics.get("before") or {}, metrics.get("after") or {}))]
        if server:
            lines[0] = f"This server's model: {lines[0][0].lower()}{lines[0][1:]}"
            lines.insert(1, f"It sits on the shared base {m.bold(info.base)}.")
    if getattr(info, "note", None):
        lines.append(info.note)
    lines.append(f"{info.corrections} corrections since then." if info.since
                 else f"{info.corrections} corrections stored.")
    if info.versions:
        lines.append("Versions: " + ", ".join(info.versions))
    return "\n".join(lines)


class TerminalProgress:
    """Training events in a terminal: each stage a line on ``out``, the steps a tqdm bar on ``err``."""

    def __init__(self, out: IO[str] | None = None, err: IO[str] | None = None) -> None:
        self.out, self.err = out or sys.stderr, err or sys.stderr
        self.bar = None

    def __call__(self, event: TrainingEvent) -> None:
        from tqdm import tqdm

        if event.kind == "stage":
            self.write(f"• {event.describe()}…")
        elif event.max_steps:
            if self.bar is None:
                self.bar = tqdm(total=event.max_steps, unit="step", desc="training", file=self.err,
                                dynamic_ncols=True, leave=True)
            self.bar.update(event.step - self.bar.n)
            postfix = {"epoch": f"{event.epoch:.2f}"}
            if event.loss is not None:
                postfix["loss"] = f"{event.loss:.4f}"
            self.bar.set_postfix(postfix, refresh=True)

    def write(self, line: str) -> None:
        from tqdm import tqdm

        if self.bar is not None:
            tqdm.write(line, file=self.out)  # clears the bar, writes, redraws it
        else:
            print(line, file=self.out, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# --------------------------------------------------------------------------- mood


def mood_summary(report, *, top: int = TOP_IN_TEXT) -> str:
    """``"12 tagged messages: 😄 happiness 7 (58%) · 😢 sadness 5 (42%)"`` (top emotions only)."""
    from bot.charts import label_totals

    totals = label_totals(report.rows, report.days)
    total = sum(n for _, n in totals)
    parts = [f"{emoji_for(name)} {name} {n} ({n / total:.0%})" for name, n in totals[:top]]
    if len(totals) > top:
        parts.append(f"+{len(totals) - top} more")
    noun = "message" if total == 1 else "messages"
    return f"{total} tagged {noun}: " + " · ".join(parts)


def span_text(days: list[str]) -> str:
    """``Nov 19 – Dec 02, UTC``."""
    first, last = (date.fromisoformat(d) for d in (days[0], days[-1]))
    if first == last:
        return f"{last:%b %d}, UTC"
    return f"{first:%b %d} – {last:%b %d}, UTC"


# --------------------------------------------------------------------------- review

QUOTE_MAX = 1500  # a Discord message holds 2,000 characters: the rest is the guess, the link and the page


def quoted(text: str, limit: int = QUOTE_MAX) -> str:
    """``text`` as a block quote, cut at ``limit`` characters."""
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return "\n".join(f"> {line}" for line in text.splitlines() or [""])


def review_item(row, text: str, position: int, total: int, link: str, m: Markup) -> str:
    """One message waiting for review: where it is in the batch, the bot's guess and how sure, the text, a link."""
    return "\n".join([f"{m.bold(f'{position} of {total}')} · I tagged this {label(row.label, m)}, "
                      f"only {row.confidence:.0%} sure:", quoted(text), link, "What emotion does it express?"])


def review_done() -> str:
    return "That's all for now. Thanks, this helps me learn."
