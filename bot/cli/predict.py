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


def run_predict(args: argparse.Namespace) -> int:
    from model.classifier import Classifier, ModelLoadError
    from model.labels import emoji_for

    texts = args.text or [line.rstrip("\n") for line in sys.stdin if line.strip()]
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
