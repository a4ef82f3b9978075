"""``emotion-machine shell``: the terminal playground (:mod:`bot.shell`) with the settings and options applied."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import IO, Any

from bot.cli.common import EXIT_USAGE, CommandError, from_namespace, settings
from bot.services.retraining import TrainingOverrides
from bot.store.urls import display_url, is_postgres_url

DESCRIPTION = ("A terminal playground that behaves like one Discord channel, with the bot's model and "
               "fine-tuning and a database of its own (shell.db beside EMOTION_DB, unless --db says otherwise): "
               "type a message to see its emoji and top 3 emotions; /correct LABEL, /retrain [force], "
               "/mood [DAYS], /help, /quit. In a terminal, the arrow keys edit and recall lines "
               "(history in ~/.emotion_machine_history); stdin can be piped too.")
#: The shell's own database, beside the bot's, so trying things never writes to the bot's data.
SHELL_DB = "shell.db"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shell", dataclass_types=[TrainingOverrides],
                       help="try the bot in the terminal: tag, correct, retrain, chart", description=DESCRIPTION)
    p.add_argument("--model", metavar="MODEL",
                   help="hub id or local folder used while the models folder has no current version "
                        "(default: EMOTION_MODEL)")
    p.add_argument("--models-dir", metavar="PATH",
                   help="model versions folder: its current version is served, /retrain saves there "
                        "(default: EMOTION_MODELS_DIR)")
    p.add_argument("--db", metavar="PATH",
                   help=f"database file (default: {SHELL_DB} beside EMOTION_DB, the shell's own, so the bot's "
                        "database is never written to unless you give its path here)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: EMOTION_DEVICE)")
    p.add_argument("--out", metavar="PATH",
                   help="where /mood writes its PNG chart (default: mood.png beside the database)")
    p.set_defaults(func=run_shell)


def shell_database(bot_db: Path | str, models_dir: Path) -> Path:
    """:data:`SHELL_DB` in the folder of the bot's database (a ``file:`` URI's file; ``:memory:`` stays).

    With PostgreSQL the bot's data is on a server: the shell's own file goes beside the models folder.
    """
    if is_postgres_url(bot_db):
        return Path(models_dir).with_name(SHELL_DB)
    path = str(bot_db)
    if path == ":memory:":
        return bot_db
    if path.startswith("file:"):
        path = path.removeprefix("file:").split("?", 1)[0]
    return Path(path).with_name(SHELL_DB)


def with_database(loaded: Any, chosen: str | None) -> tuple[Any, str]:
    """The settings with the shell's database, and what the banner says about it."""
    if chosen is not None:
        return loaded, ""
    own = shell_database(loaded.db_path, loaded.models_dir)
    note = f" (the shell's own; the bot's is {display_url(str(loaded.db_path))}; --db chooses another)"
    return dataclasses.replace(loaded, db_path=own), note


def line_reader(stdin: IO[str]) -> Any:
    """A terminal gets line editing and history (``readline`` works on the real stdin only); a pipe is read as is."""
    from bot.shell import LineReader, TerminalReader, history_path

    try:
        terminal = stdin is sys.stdin and stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        terminal = False
    return TerminalReader(stdin, history=history_path()) if terminal else LineReader(stdin)


def chart_path(out: str | None, db: str, models_dir: Path) -> Path:
    if out:
        return Path(out)
    if is_postgres_url(db):
        return Path(models_dir).with_name("mood.png")
    if db == ":memory:" or db.startswith("file:"):
        return Path("mood.png")
    return Path(db).parent / "mood.png"


def run_shell(args: argparse.Namespace, *, stdin: IO[str] | None = None, stdout: IO[str] | None = None,
              stderr: IO[str] | None = None) -> int:
    """0 on /quit or end of input; a CommandError (one line, exit 2) when it cannot start."""
    from bot.client import load_classifier
    from bot.services import Refusal
    from bot.shell import Shell
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
    loaded, database_note = with_database(settings(args), args.db)
    try:
        training = from_namespace(TrainingOverrides, args)
        classifier = load_classifier(loaded)
    except (Refusal, ModelLoadError, RegistryError) as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None

    async def go() -> int:
        try:
            shell = await Shell.open(loaded, classifier, out=out, err=err, training=training,
                                     chart_path=chart_path(args.out, str(loaded.db_path), loaded.models_dir),
                                     database_note=database_note)
        except StoreError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
        reader = line_reader(stdin).start()
        try:
            return await shell.run(reader)
        finally:
            reader.close()
            await shell.close()

    return asyncio.run(go())
