"""``emotion-machine shell``: the terminal playground (:mod:`bot.shell`) with the settings and options applied."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import IO

from bot.cli.common import EXIT_USAGE, CommandError, from_namespace, settings
from bot.services.retraining import TrainingOverrides

DESCRIPTION = ("A terminal playground that behaves like one Discord channel, with the bot's database, model "
               "and fine-tuning: type a message to see its emoji and top 3 emotions; /correct LABEL, "
               "/retrain [force], /mood [DAYS], /help, /quit. Reads stdin line by line, so input can be piped.")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shell", dataclass_types=[TrainingOverrides],
                       help="try the bot in the terminal: tag, correct, retrain, chart", description=DESCRIPTION)
    p.add_argument("--model", metavar="MODEL",
                   help="hub id or local folder used while the models folder has no current version "
                        "(default: EMOTION_MODEL)")
    p.add_argument("--models-dir", metavar="PATH",
                   help="model versions folder: its current version is served, /retrain saves there "
                        "(default: EMOTION_MODELS_DIR)")
    p.add_argument("--db", metavar="PATH", help="database file (default: EMOTION_DB)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: EMOTION_DEVICE)")
    p.add_argument("--out", metavar="PATH",
                   help="where /mood writes its PNG chart (default: mood.png beside the database)")
    p.set_defaults(func=run_shell)


def chart_path(out: str | None, db: str) -> Path:
    if out:
        return Path(out)
    if db == ":memory:" or db.startswith("file:"):
        return Path("mood.png")
    return Path(db).parent / "mood.png"


def run_shell(args: argparse.Namespace, *, stdin: IO[str] | None = None, stdout: IO[str] | None = None,
              stderr: IO[str] | None = None) -> int:
    """0 on /quit or end of input; a CommandError (one line, exit 2) when it cannot start."""
    from bot.client import load_classifier
    from bot.services import Refusal
    from bot.shell import LineReader, Shell
    from bot.store import StoreError
    from model.classifier import ModelLoadError
    from model.registry import RegistryError

    stdin = stdin or sys.stdin
    out, err = stdout or sys.stdout, stderr or sys.stderr
    for stream in (out, err):
        try:
            stream.reconfigure(errors="replace")  # an emoji must never crash a terminal without UTF-8
        except (AttributeError, ValueError):
            pass
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar between the lines
    except Exception:  # noqa: BLE001 - cosmetic
        pass
    loaded = settings(args)
    try:
        training = from_namespace(TrainingOverrides, args)
        classifier = load_classifier(loaded)
    except (Refusal, ModelLoadError, RegistryError) as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    try:
        prompt = stdin.isatty()
    except (AttributeError, ValueError):
        prompt = False

    async def go() -> int:
        try:
            shell = await Shell.open(loaded, classifier, out=out, err=err, training=training,
                                     chart_path=chart_path(args.out, str(loaded.db_path)))
        except StoreError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
        try:
            return await shell.run(LineReader(stdin).start(), prompt=prompt)
        finally:
            await shell.close()

    return asyncio.run(go())
