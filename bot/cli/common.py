"""What every command shares: exit codes, the one error line, logging, settings with options applied."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: finetune trained a candidate but did not deploy it.
EXIT_NOT_DEPLOYED = 3


class CommandError(Exception):
    """A command cannot go on; ``main`` prints the message as one line and exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"emotion-machine: error: {message}", file=sys.stderr)
    return code


class RedactToken(logging.Filter):
    """Replace the bot token wherever a log record would show it: message, args, traceback, stack.

    The traceback is checked as it will be printed (chained causes and contexts included), and kept,
    redacted: an admin still sees what failed.
    """

    _formatter = logging.Formatter()

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if self.token:
            self._redact_message(record)
            self._redact_traceback(record)
            if record.stack_info and self.token in record.stack_info:
                record.stack_info = self.redact(record.stack_info)
        return True

    def redact(self, text: str) -> str:
        return text.replace(self.token, "[token]")

    def _redact_message(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - bad args: logging's own error report would print them
            message = f"{record.msg} {record.args!r}"
        if self.token in message:
            record.msg, record.args = self.redact(message), None

    def _redact_traceback(self, record: logging.LogRecord) -> None:
        """The formatted exception (``exc_text``, what every Formatter prints when set) in place of ``exc_info``."""
        text = record.exc_text or ""
        if not text and record.exc_info and record.exc_info[0] is not None:
            text = record.exc_text = self._formatter.formatException(record.exc_info)  # the handler reuses it
        if self.token in text:
            record.exc_info, record.exc_text = None, self.redact(text)


def setup_logging(level: str = "INFO", token: str = "") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactToken(token))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("discord.gateway", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


#: Command-line options that override a setting: option dest → Settings field.
SETTING_OPTIONS = {"model": "model", "models_dir": "models_dir", "db": "db_path", "device": "device",
                   "min_corrections": "min_corrections"}


def settings(args: argparse.Namespace | None = None) -> Any:
    """The settings from the environment and ``.env``, with the command's options applied.

    A bad setting is a usage error (exit 2) naming the variable.
    """
    from bot.settings import SettingsError, database_target, load_settings

    try:
        loaded = load_settings()
    except SettingsError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    changes: dict[str, Any] = {}
    for option, name in SETTING_OPTIONS.items():
        value = getattr(args, option, None) if args is not None else None
        if value is not None:
            changes[name] = Path(value) if name == "models_dir" else database_target(value) if name == "db_path" \
                else value
    return dataclasses.replace(loaded, **changes)


def from_namespace(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """An instance of the dataclass ``cls`` from the options HfArgumentParser declared for it."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.init and hasattr(args, f.name)}
    return cls(**{**values, **extra})
