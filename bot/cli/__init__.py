"""``emotion-machine``: the one place that parses the command line; one module per command group.

Every subparser is an ``HfArgumentParser``, so a command whose options are a recipe dataclass
(training, evaluation, fine-tuning overrides) declares them once, in that dataclass. Commands
raise :class:`~bot.cli.common.CommandError`; :func:`main` prints it as one line and exits with
its code (0 done, 1 failed, 2 usage or settings, 3 trained but not deployed).
"""

from __future__ import annotations

import argparse
import os
import sys

from bot.cli import common, corrections, data, db, guilds, models, predict, run, shell, training
from bot.cli.common import RedactToken, setup_logging
from bot.settings import export_hub_settings

__all__ = ["RedactToken", "build_parser", "main", "setup_logging"]

GROUPS = (run, predict, data, corrections, training, models, guilds, db, shell)


def version() -> str:
    """The installed package's version (its metadata, so it cannot drift from pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("emotion-machine")
    except PackageNotFoundError:
        return "unknown (not installed: run scripts/setup)"


def build_parser() -> argparse.ArgumentParser:
    from transformers import HfArgumentParser

    parser = argparse.ArgumentParser(
        prog="emotion-machine",
        description="A Discord bot that tags messages with emotions and learns from corrections. "
                    "Settings come from the environment and .env in the working folder (see .env.example).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=HfArgumentParser)
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    export_hub_settings()  # before the parser imports transformers (and with it the hub, which reads them once)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    if not getattr(args, "logs_itself", False):
        setup_logging(os.environ.get("EMOTION_LOG_LEVEL", "WARNING").upper())
    try:
        return args.func(args)
    except common.CommandError as exc:
        return common.fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
