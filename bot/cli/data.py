"""``emotion-machine export`` and ``import``: corrections and labelled examples in and out of the store."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.cli.common import EXIT_FAILED, EXIT_OK, CommandError, settings
from model.labels import LABEL_SETS


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write corrections as text,label rows for training",
                       description="Export corrections and imported examples (majority label per message).")
    p.add_argument("--format", choices=["csv", "jsonl"], default="csv", help="csv (text,label header) or jsonl")
    p.add_argument("--since", type=float, help="only rows newer than this unix time")
    p.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
    p.add_argument("--db", help="database file (default: EMOTION_DB)")
    p.set_defaults(func=run_export)

    p = sub.add_parser("import", help="add labelled examples from a CSV or JSONL file",
                       description="Validate every row of FILE (text,label) and add the good ones; "
                                   "bad rows are reported by line number, and a text already "
                                   "imported with the same label is skipped (importing twice is harmless).")
    p.add_argument("file", help="a .csv with a text,label header, or a .jsonl of {\"text\", \"label\"} objects")
    p.add_argument("--labels", type=str.lower, choices=list(LABEL_SETS),
                   help="the label set the file uses; each label is then stored as its equivalent among the "
                        "model's labels, and a row with none is reported (default: the model's own labels)")
    p.add_argument("--model", help="model whose labels the examples are stored under (default: EMOTION_MODEL)")
    p.add_argument("--db", help="database file (default: EMOTION_DB)")
    p.set_defaults(func=run_import)


def model_labels(loaded, why: str) -> tuple[str, ...]:
    """The labels of the model in ``loaded.model`` (EMOTION_MODEL or --model); CommandError saying ``why``."""
    from model.classifier import Classifier, ModelLoadError

    try:
        return tuple(Classifier.load(loaded.model, device="cpu").labels)
    except ModelLoadError as exc:
        raise CommandError(f"{exc} ({why})") from None


async def _with_store(db, work, *, read_only: bool = False):
    from bot.store import open_store

    store = await open_store(db, read_only=read_only)
    try:
        return await work(store)
    finally:
        await store.close()


def run_export(args: argparse.Namespace) -> int:
    from bot.export_import import export_examples
    from bot.store import StoreError

    db = settings(args).db_path
    out = sys.stdout if args.output == "-" else args.output
    try:
        n = asyncio.run(_with_store(db, lambda store: export_examples(store, out, args.format, since=args.since),
                                    read_only=True))  # works on a read-only disk, and never migrates
    except (StoreError, OSError) as exc:
        raise CommandError(str(exc)) from None
    print(f"exported {n} examples", file=sys.stderr)
    return EXIT_OK


def run_import(args: argparse.Namespace) -> int:
    from bot.export_import import import_examples
    from bot.store import StoreError

    loaded = settings(args)
    model = model_labels(loaded, "import stores each example under one of the model's labels; "
                                 "point --model or EMOTION_MODEL at the model to be trained")
    file_labels = LABEL_SETS[args.labels] if args.labels else model
    try:
        report = asyncio.run(_with_store(loaded.db_path, lambda store: import_examples(
            store, args.file, labels=file_labels, model_labels=model if args.labels else None)))
    except (StoreError, OSError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    for line, why in report.errors:
        print(f"{args.file}:{line}: {why}", file=sys.stderr)
    print(f"imported {report.added} examples, {report.duplicates} already present, "
          f"{len(report.errors)} bad rows skipped")
    if report.mapped:
        print(f"mapped {report.mapped.total()} labels to the model's: {report.mapping_summary()}")
    return EXIT_OK if not report.errors else EXIT_FAILED
