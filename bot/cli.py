"""``emotion-machine``: the one place that parses the command line and sets up logging."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

log = logging.getLogger("emotion_machine")

EXIT_USAGE = 2


class RedactToken(logging.Filter):
    """Replace the bot token wherever it would appear in a log record (message, args or traceback)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if self.token:
            message = record.getMessage()
            if self.token in message:
                record.msg, record.args = message.replace(self.token, "[token]"), None
            if record.exc_info and record.exc_info[1] is not None and self.token in str(record.exc_info[1]):
                record.exc_info = None
                record.msg = f"{record.msg} (traceback hidden: it contained the token)"
        return True


def setup_logging(level: str = "INFO", token: str = "") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactToken(token))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("discord.gateway", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def fail(message: str) -> int:
    print(f"emotion-machine: error: {message}", file=sys.stderr)
    return EXIT_USAGE


# -- predict -----------------------------------------------------------------------------------------

def run_predict(args: argparse.Namespace) -> int:
    from bot.settings import SettingsError, load_settings
    from model.classifier import Classifier, ModelLoadError
    from model.labels import emoji_for

    texts = args.text or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        return fail("give one or more texts, or one message a line on stdin")
    try:
        settings = load_settings()
        clf = Classifier.load(args.model or settings.model, device=args.device or settings.device)
    except (ModelLoadError, SettingsError) as exc:
        return fail(str(exc))
    predictions = clf.predict(texts)
    for text, p in zip(texts, predictions):
        top = p.top(args.top_k)
        if args.json:
            print(json.dumps({"text": text, "label": p.label, "emoji": emoji_for(p.label), "score": round(p.score, 6),
                              "top": [{"label": lb, "score": round(s, 6)} for lb, s in top],
                              "version": p.version}, ensure_ascii=False))
        else:
            shown = "  ".join(f"{emoji_for(lb)} {lb} {s:.1%}" for lb, s in top)
            print(f"{shown}\t{text}")
    return 0


# -- run -----------------------------------------------------------------------------------------------

def run_bot(args: argparse.Namespace) -> int:
    from bot.settings import SettingsError, load_settings
    from model.classifier import ModelLoadError

    try:
        settings = load_settings()
        token = settings.require_token()
    except SettingsError as exc:
        return fail(str(exc))
    setup_logging(settings.log_level, token)
    from bot.client import EmotionBot, freeze_startup_heap, load_classifier

    from model.registry import RegistryError

    try:
        classifier = load_classifier(settings)
    except (ModelLoadError, RegistryError) as exc:
        return fail(str(exc))
    log.info("model %s (%s) on %s", classifier.source, classifier.version, classifier.device)
    freeze_startup_heap()
    return asyncio.run(_serve(EmotionBot(settings, classifier), token))


async def _serve(bot, token: str) -> int:
    import discord

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, lambda s=sig: (log.info("%s: shutting down", s.name),
                                                        asyncio.ensure_future(bot.close())))
        except NotImplementedError:  # Windows
            pass
    try:
        async with bot:
            await bot.start(token)
    except discord.LoginFailure:
        print("emotion-machine: error: Discord refused the token (DISCORD_TOKEN): reset it on the "
              "Developer Portal's Bot page and put the new one in .env", file=sys.stderr)
        return EXIT_USAGE
    except discord.PrivilegedIntentsRequired:
        print("emotion-machine: error: enable the MESSAGE CONTENT intent for this bot on the Developer "
              "Portal's Bot page (Privileged Gateway Intents), then start again", file=sys.stderr)
        return EXIT_USAGE
    return 0


# -- store commands -----------------------------------------------------------------------------------

def run_export(args: argparse.Namespace) -> int:
    from bot.export_import import export_examples
    from bot.settings import load_settings
    from bot.store import Store, StoreError

    async def go() -> int:
        store = await Store.open(args.db or load_settings().db_path)
        try:
            out = sys.stdout if args.output == "-" else args.output
            return await export_examples(store, out, args.format, since=args.since)
        finally:
            await store.close()

    try:
        n = asyncio.run(go())
    except (StoreError, OSError) as exc:
        return fail(str(exc))
    print(f"exported {n} examples", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from bot.export_import import import_examples
    from bot.settings import SettingsError, load_settings
    from bot.store import Store, StoreError
    from model.classifier import Classifier, ModelLoadError
    from model.labels import LABEL_SETS

    try:
        settings = load_settings()
        if args.labels in LABEL_SETS:
            labels = LABEL_SETS[args.labels]
        else:
            labels = Classifier.load(args.model or settings.model, device="cpu").labels
    except (ModelLoadError, SettingsError) as exc:
        return fail(f"{exc} (or pass --labels seed13|goemotions|ekman)")

    async def go():
        store = await Store.open(args.db or settings.db_path)
        try:
            return await import_examples(store, args.file, labels=labels)
        finally:
            await store.close()

    try:
        report = asyncio.run(go())
    except (StoreError, OSError, ValueError) as exc:
        return fail(str(exc))
    for line, why in report.errors:
        print(f"{args.file}:{line}: {why}", file=sys.stderr)
    print(
        f"imported {report.added} examples, {report.duplicates} already present, "
        f"{len(report.errors)} bad rows skipped"
    )
    return 0 if not report.errors else 1


# -- parser ---------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emotion-machine",
        description="A Discord bot that tags messages with emotions and learns from corrections. "
                    "Settings come from the environment and .env (see .env.example).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the Discord bot (needs DISCORD_TOKEN)",
                       description="Log in to Discord and tag messages until SIGINT/SIGTERM.")
    p.set_defaults(func=run_bot)

    p = sub.add_parser("predict", help="classify texts from the command line",
                       description="Classify each TEXT (or each line of stdin) and print label, emoji and probability.")
    p.add_argument("text", nargs="*", help="texts to classify; none: read one message a line from stdin")
    p.add_argument("--model", help="hub id or local folder (default: EMOTION_MODEL)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: EMOTION_DEVICE)")
    p.add_argument("--top-k", type=int, default=1, metavar="K", help="show the K most likely labels (default 1)")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.set_defaults(func=run_predict)

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
    p.add_argument("--labels", help="label set to validate against: seed13, goemotions, ekman "
                                    "(default: the model's own labels)")
    p.add_argument("--model", help="model whose labels to validate against (default: EMOTION_MODEL)")
    p.add_argument("--db", help="database file (default: EMOTION_DB)")
    p.set_defaults(func=run_import)

    from bot import cli_data, cli_train, shell

    cli_train.add_parsers(sub)
    cli_data.add_parsers(sub)
    shell.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    if args.command != "run":
        setup_logging(os.environ.get("EMOTION_LOG_LEVEL", "WARNING").upper())
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
