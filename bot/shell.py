"""``emotion-machine shell``: a terminal playground that behaves like one Discord channel.

Type a message and the shell answers with its emoji and the model's top three labels; the
commands mirror the bot's: ``/correct LABEL`` corrects the last message, ``/retrain [force]``
fine-tunes on the stored corrections and hot-swaps the new version in, ``/mood [DAYS]``
writes the mood chart to a PNG. It uses the bot's own parts, so what it stores and learns is
what the bot would:

* the same store, in a database of its own by default (``shell.db`` beside ``EMOTION_DB``, so
  trying things never writes to the bot's data; ``--db`` chooses another, the bot's included),
  under :data:`SHELL_GUILD_ID` / :data:`SHELL_CHANNEL_ID` / :data:`SHELL_USER_ID`, with
  negative message ids, so no shell row can collide with a Discord snowflake. In the bot's
  database, shell corrections (``source="shell"``) take part in its next ``/retrain`` like any other;
* the same reaction rules: a prediction the bot would not react to (under the threshold, or
  neutral) says so;
* the same model choice (the registry's current version, else ``EMOTION_MODEL``) served by an
  :class:`~model.worker.InferenceWorker`;
* the same fine-tune: a :class:`~model.jobs.TrainingJob` in a child process, gated the same
  way, saved to the same registry; Ctrl-C while it runs cancels it.

Input is read line by line from stdin on a daemon thread (never on the event loop): piped input
as it comes (tests drive it that way), a terminal with ``readline``'s line editing and history
(arrow keys, kept in :data:`HISTORY_FILE`). Output is plain lines, no curses. End with ``/quit``
or end of input.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from bot import render
from bot.services import Actor, Refusal, Services, open_store
from bot.services.correcting import Target
from bot.services.mood import DEFAULT_DAYS, MoodScope
from bot.services.retraining import TrainingOverrides
from bot.services.tagging import IncomingMessage
from model.labels import emoji_for

log = logging.getLogger(__name__)

#: Ids the shell's rows carry in the store: its own "guild", channel and user (Discord never uses 0).
SHELL_GUILD_ID = 0
SHELL_CHANNEL_ID = 0
SHELL_USER_ID = 0
#: Where a terminal session's lines are remembered (in the user's home: they are the user's own words).
HISTORY_FILE = "~/.emotion_machine_history"
HISTORY_LENGTH = 1000

HELP = """\
Type a message to see the emotion the model hears in it (emoji, then the top 3).
Commands:
  /correct LABEL    correct the last message's emotion (stored as training data)
  /labels           the labels this model knows
  /retrain [force]  fine-tune on the stored corrections; force deploys even if the gate refuses
                    (Ctrl-C while it runs cancels it)
  /mood [DAYS]      write the chart of the shell's emotions over the last DAYS days (default 14)
  /help             this text
  /quit             leave (end of input does too)"""


# --------------------------------------------------------------------------- input


class LineReader:
    """Lines of a stream, read on a daemon thread and handed to the event loop.

    A daemon thread (not ``asyncio.to_thread``) so that leaving the shell never waits for a
    ``readline`` that is still blocked on a terminal. The real stdin is read with ``os.read``
    on its file descriptor, which takes no lock that interpreter shutdown could trip over.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._queue: asyncio.Queue[str | None] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LineReader:
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._thread = threading.Thread(target=self._run, args=(loop,), name="shell-stdin", daemon=True)
        self._thread.start()
        return self

    async def readline(self) -> str | None:
        """The next line without its newline; None at end of input."""
        assert self._queue is not None, "start() the reader first"
        line = await self._queue.get()
        if line is None:
            self._queue.put_nowait(None)  # stay at end of input
        return line

    def _lines(self):
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):  # a StringIO or similar: plain readline
            yield from iter(self.stream.readline, "")
            return
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        while True:
            chunk = os.read(fd, 65536)
            pending += decoder.decode(chunk, final=not chunk)
            *lines, pending = pending.split("\n")
            yield from (line + "\n" for line in lines)
            if not chunk:
                if pending:
                    yield pending
                return

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._queue is not None
        try:
            for line in self._lines():
                loop.call_soon_threadsafe(self._queue.put_nowait, line.rstrip("\r\n"))
        except OSError as exc:
            log.warning("could not read input: %s", exc)
        finally:
            try:
                loop.call_soon_threadsafe(self._queue.put_nowait, None)
            except RuntimeError:  # the loop is gone: nobody is reading any more
                pass

    def close(self) -> None:
        """Nothing to undo for a pipe (:class:`TerminalReader` puts the terminal's settings back)."""


class TerminalReader(LineReader):
    """Lines typed at a terminal, edited with ``readline`` (arrow keys, history), one prompt per line asked for.

    ``input()`` on the reader thread, only when the shell asks for the next line, so the prompt never
    lands in the middle of an answer. The terminal's settings are saved and put back on :meth:`close`,
    in case the shell ends while ``readline`` holds the terminal (Ctrl-C at the prompt).
    """

    def __init__(self, stream: IO[str], *, prompt: str = "> ", history: Path | None = None) -> None:
        super().__init__(stream)
        self.prompt = prompt
        self.history = history
        self._wanted: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._saved = _terminal_settings(stream)

    async def readline(self) -> str | None:
        self._wanted.put(None)
        return await super().readline()

    def close(self) -> None:
        if self._saved is not None:
            import termios

            try:
                termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
            except (OSError, ValueError, termios.error):
                pass

    def _lines(self):
        editing = _line_editing(self.history)
        while True:
            self._wanted.get()
            line = self._input()
            if line is None:
                return
            if editing is not None and self.history is not None:
                _save_history(editing, self.history)
            yield line

    def _input(self) -> str | None:
        """One line; None at end of input (Ctrl-D)."""
        while True:
            try:
                return input(self.prompt)
            except EOFError:
                print(flush=True)  # end the prompt's line
                return None
            except UnicodeDecodeError:
                print("error: that line was not valid UTF-8 text; type it again", flush=True)


def _terminal_settings(stream: IO[str]) -> list | None:
    try:
        import termios

        return termios.tcgetattr(stream.fileno())
    except (ImportError, OSError, ValueError, AttributeError):
        return None


def _line_editing(history: Path | None) -> Any:
    """The ``readline`` module with the saved history loaded; None where Python has none (Windows)."""
    try:
        import readline
    except ImportError:
        return None
    readline.set_history_length(HISTORY_LENGTH)
    if history is not None:
        try:
            readline.read_history_file(history)
        except OSError:  # none yet, or unreadable: start afresh
            pass
    return readline


def _save_history(editing: Any, history: Path) -> None:
    """Write the history after each line, so a killed shell loses none; private (0600), as typed text is."""
    try:
        if not history.exists():
            history.touch(mode=0o600)
        editing.write_history_file(history)
    except OSError as exc:
        log.debug("could not save the shell history to %s: %s", history, exc)


def history_path() -> Path | None:
    """:data:`HISTORY_FILE` in this user's home; None where there is no home."""
    try:
        return Path(HISTORY_FILE).expanduser()
    except RuntimeError:
        return None


# --------------------------------------------------------------------------- the shell


@dataclass(frozen=True, slots=True)
class ShellMessage:
    """The last message typed, what :meth:`Shell.correct` corrects."""

    id: int
    text: str
    label: str
    version: str


class Shell:
    """One channel's worth of the bot, driven by lines of text. Build with :meth:`open`."""

    def __init__(self, settings: Any, store: Any, worker: Any, *, out: IO[str], err: IO[str],
                 chart_path: Path, training: TrainingOverrides | None = None, database_note: str = "") -> None:
        self.settings = settings
        self.store = store
        self.worker = worker
        self.services = Services.build(settings, store, worker)
        self.actor = Actor(user_id=SHELL_USER_ID, guild_id=SHELL_GUILD_ID, can_manage=True, name="the shell",
                           is_owner=True)  # the operator at their terminal: the shell trains the base
        self.out, self.err = out, err
        self.chart_path = chart_path
        self.training = training
        #: Said after the database's path in the banner (e.g. that it is the shell's own).
        self.database_note = database_note
        self.last: ShellMessage | None = None
        self._last_id = 0

    @classmethod
    async def open(cls, settings: Any, classifier: Any, **options: Any) -> Shell:
        from model.worker import InferenceWorker

        store = await open_store(settings)
        worker = InferenceWorker(classifier, max_batch=settings.max_batch,
                                 torch_threads=settings.inference_threads).start()
        return cls(settings, store, worker, **options)

    @property
    def classifier(self) -> Any:
        return self.worker.classifier

    async def close(self) -> None:
        """Stop a running fine-tune, then the worker, then the store (which flushes its predictions)."""
        run = self.services.retraining.running
        if run is not None and run.running:
            run.cancel()
        try:
            await self.worker.close()
        finally:
            await self.store.close()

    def say(self, *lines: str) -> None:
        for line in lines:
            print(line, file=self.out)
        self.out.flush()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, reader: LineReader) -> int:
        self.say(f"Emotion Machine shell: model {self.classifier.version} ({self.classifier.source}) on "
                 f"{self.classifier.device}, database {self.store.path}{self.database_note}. "
                 "Type a message, or /help.")
        while True:
            line = await reader.readline()
            if line is None:
                return 0
            if not await self.handle(line):
                return 0

    async def handle(self, line: str) -> bool:
        """Do one line; False when the shell should end. Errors become one ``error:`` line."""
        from bot.store import StoreError
        from model.worker import WorkerClosed

        text = line.strip()
        if not text:
            return True
        try:
            if not text.startswith("/"):
                await self.message(text)
                return True
            name, _, rest = text[1:].partition(" ")
            command = self.COMMANDS.get(name.lower())
            if command is None:
                raise Refusal(f"unknown command /{name}: /help lists the commands")
            return await command(self, rest.strip()) is not False
        except (Refusal, StoreError, WorkerClosed, OSError) as exc:
            self.say(f"error: {exc}")
        return True

    def _next_message_id(self) -> int:
        """Negative, so never a Discord snowflake; from the clock, so unique across sessions too."""
        message_id = min(-time.time_ns() // 1000, self._last_id - 1)
        self._last_id = message_id
        return message_id

    async def message(self, text: str) -> None:
        message_id = self._next_message_id()
        tagged = await self.services.tagging.tag(IncomingMessage(
            guild_id=SHELL_GUILD_ID, channel_id=SHELL_CHANNEL_ID, message_id=message_id, author_id=SHELL_USER_ID,
            text=text), always_classify=True)
        if tagged is None:
            raise Refusal("the model could not classify that (see the log)")
        prediction = tagged.prediction
        self.last = ShellMessage(message_id, text, prediction.label, prediction.version)
        self.say(*render.prediction_lines(prediction, render.PLAIN))
        if tagged.withheld is not None:
            self.say("   " + render.no_reaction(tagged, render.PLAIN))

    # -- commands ------------------------------------------------------------------------------

    async def cmd_help(self, rest: str) -> None:
        self.say(HELP)

    async def cmd_quit(self, rest: str) -> bool:
        self.say("bye")
        return False

    async def cmd_labels(self, rest: str) -> None:
        self.say("labels: " + ", ".join(f"{emoji_for(lb)} {lb}" for lb in self.classifier.labels))

    async def cmd_correct(self, rest: str) -> None:
        if not rest:
            raise Refusal("say which emotion: /correct LABEL (/labels lists them)")
        if self.last is None:
            raise Refusal("nothing to correct yet: type a message first")
        last = self.last
        target = Target(guild_id=SHELL_GUILD_ID, channel_id=SHELL_CHANNEL_ID, message_id=last.id,
                        author_id=SHELL_USER_ID, text=last.text)
        outcome = await self.services.correcting.correct(self.actor, target, rest, source="shell", count=True)
        self.say(f"{last.text!r}: {render.correction(outcome, render.PLAIN)}")

    async def cmd_mood(self, rest: str) -> None:
        try:
            days: Any = int(rest) if rest else DEFAULT_DAYS
        except ValueError:
            days = rest
        report = await self.services.mood.report(MoodScope(SHELL_GUILD_ID), days)
        png = await self.services.mood.chart(report, f"Mood in the shell, {report.period}")
        await asyncio.to_thread(_write_bytes, self.chart_path, png)
        self.say(f"Mood in the shell, {report.period} ({render.span_text(report.days)})",
                 render.mood_summary(report) if report.rows else f"No tagged messages in {report.period}.",
                 f"chart written to {self.chart_path}")

    async def cmd_retrain(self, rest: str) -> None:
        if rest.lower() in ("force", "--force", "true", "yes"):
            force = True
        elif not rest:
            force = False
        else:
            raise Refusal(f"/retrain takes only 'force', not {rest!r}")
        run = (await self.services.retraining.prepare(self.actor, force=force, overrides=self.training)).start()
        self.say(f"retraining on {run.examples} corrections" + (" (force)" if force else "")
                 + (f" + replay from {run.config.replay}" if run.config.replay else "") + "; Ctrl-C cancels")
        progress = render.TerminalProgress(self.out, self.err)
        restore = _on_sigint(lambda: run.cancel() and progress.write("cancelling the retrain…"))
        try:
            async for event in run.events():
                progress(event)
            outcome = await run.finish()
        finally:
            restore()
            progress.close()
        self.say(*render.retrain_outcome(outcome, render.PLAIN).splitlines())

    COMMANDS: ClassVar[dict[str, Callable[..., Any]]] = {
        "help": cmd_help, "?": cmd_help, "quit": cmd_quit, "exit": cmd_quit, "labels": cmd_labels,
        "correct": cmd_correct, "mood": cmd_mood, "retrain": cmd_retrain,
    }


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _on_sigint(callback: Callable[[], Any]) -> Callable[[], None]:
    """Route Ctrl-C to ``callback`` until the returned function is called (no-op where unsupported)."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGINT)  # asyncio.run's own: cancel the main task
    try:
        loop.add_signal_handler(signal.SIGINT, callback)
    except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
        return lambda: None

    def restore() -> None:
        loop.remove_signal_handler(signal.SIGINT)
        if previous is not None:
            signal.signal(signal.SIGINT, previous)

    return restore
