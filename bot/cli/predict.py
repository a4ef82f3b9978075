"""``emotion-machine predict``: classify texts from the command line or stdin."""

from __future__ import annotations

import argparse
import json
import sys

from bot.cli.common import EXIT_OK, EXIT_USAGE, CommandError, settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify texts from the command line",
                       description="Classify each TEXT (or each line of stdin) and print label, emoji and probability.")
    p.add_argument("text", nargs="*", help="texts to classify; none: read one message a line from stdin")
    p.add_argument("--model", help="hub id or local folder (default: EMOTION_MODEL)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: EMOTION_DEVICE)")
    p.add_argument("--top-k", type=int, default=1, metavar="K", help="show the K most likely labels (default 1)")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.set_defaults(func=run_predict)


def _note(message: str) -> None:
    print(f"emotion-machine: note: {message}", file=sys.stderr)


def _stdin_texts() -> list[str]:
    """Each stdin line, decoded leniently: one bad byte must not lose the good lines."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # already text (a StringIO): nothing to decode
        return [line.rstrip("\r\n") for line in sys.stdin]
    out = []
    for n, raw in enumerate(stream, 1):
        raw = raw.rstrip(b"\r\n")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
            _note(f"stdin line {n} is not valid UTF-8: its undecodable bytes are shown as U+FFFD")
        out.append(text)
    return out


def _argument_texts(arguments: list[str]) -> list[str]:
    """Each argument; bytes argv could not decode (surrogate escapes) become U+FFFD."""
    from model.text import encodable

    out = []
    for n, argument in enumerate(arguments, 1):
        text = encodable(argument)
        if text != argument:
            _note(f"argument {n} is not valid UTF-8: its undecodable bytes are shown as U+FFFD")
        out.append(text)
    return out


def _texts(args: argparse.Namespace) -> list[str]:
    """The texts to classify, from the arguments or stdin alike: blank ones skipped with a note."""
    given = _argument_texts(args.text) if args.text else _stdin_texts()
    texts = [text for text in given if text.strip()]
    if len(texts) < len(given):
        skipped = len(given) - len(texts)
        _note(f"skipped {skipped} blank text{'s' if skipped != 1 else ''}")
    return texts


def run_predict(args: argparse.Namespace) -> int:
    from model.classifier import Classifier, ModelLoadError
    from model.labels import emoji_for

    texts = _texts(args)
    if not texts:
        raise CommandError("give one or more texts, or one message a line on stdin", EXIT_USAGE)
    loaded = settings(args)
    try:
        clf = Classifier.load(loaded.model, device=loaded.device)
    except ModelLoadError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    for text, p in zip(texts, clf.predict(texts)):
        top = p.top(args.top_k)
        if args.json:
            print(json.dumps({"text": text, "label": p.label, "emoji": emoji_for(p.label), "score": round(p.score, 6),
                              "top": [{"label": lb, "score": round(s, 6)} for lb, s in top],
                              "version": p.version}, ensure_ascii=False))
        else:
            shown = "  ".join(f"{emoji_for(lb)} {lb} {s:.1%}" for lb, s in top)
            print(f"{shown}\t{text}")
    return EXIT_OK
