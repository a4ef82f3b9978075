"""``emotion-machine shell``: a terminal playground that behaves like one Discord channel.

Type a message and the shell answers with its emoji and the model's top three labels; the
commands mirror the bot's: ``/correct LABEL`` corrects the last message, ``/retrain [force]``
fine-tunes on the stored corrections and hot-swaps the new version in, ``/mood [DAYS]``
writes the mood chart to a PNG. It uses the bot's own parts, so what it stores and learns is
what the bot would:

* the same database (predictions and corrections; corrections with ``source="shell"``),
  under :data:`SHELL_GUILD_ID` / :data:`SHELL_CHANNEL_ID` / :data:`SHELL_USER_ID`, with
  negative message ids, so no shell row can collide with a Discord snowflake. Shell
  corrections take part in the bot's next ``/retrain`` like any other;
* the same model choice (the registry's current version, else ``EMOTION_MODEL``) served by an
  :class:`~model.worker.InferenceWorker`;
* the same fine-tune: a :class:`~model.jobs.TrainingJob` in a child process, gated the same
  way, saved to the same registry; Ctrl-C while it runs cancels it.

Input is read line by line from stdin on a daemon thread (never on the event loop), so the
shell works the same in a terminal and with piped input (tests drive it that way); output is
plain lines, no curses. End with ``/quit`` or end of input.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

log = logging.getLogger(__name__)

#: Ids the shell's rows carry in the store: its own "guild", channel and user (Discord never uses 0).
SHELL_GUILD_ID = 0
SHELL_CHANNEL_ID = 0
SHELL_USER_ID = 0

EXIT_OK = 0
EXIT_USAGE = 2

TOP_K = 3
BAR_WIDTH = 20

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


class ShellError(Exception):
    """A command that cannot be done as typed; the message says why and what to type instead."""


# --------------------------------------------------------------------------- formatting


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """``██████░░░░…`` for a probability in [0, 1]."""
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    return "█" * filled + "░" * (width - filled)


def prediction_lines(prediction: Any, k: int = TOP_K) -> list[str]:
    """The answer to one message: the chosen emoji and label, then the top ``k`` with bars."""
    from model.labels import emoji_for

    top = prediction.top(k)
    width = max(len(label) for label, _ in top)
    head = f"{emoji_for(prediction.label)}  {prediction.label} ({prediction.score:.1%})"
    lines = [f"{head} · model {prediction.version}"]
    lines += [f"   {emoji_for(label)} {label:<{width}} {bar(score)} {score:6.1%}" for label, score in top]
    return lines


def plain(text: str) -> str:
    """Discord markdown (``**bold**``, ```code```) as plain terminal text."""
    return text.replace("**", "").replace("`", "")


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

    def start(self) -> "LineReader":
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


# --------------------------------------------------------------------------- retrain progress


class RetrainProgress:
    """Fine-tune events as the shell shows them: each stage a line on ``out``, the steps a tqdm bar on ``err``."""

    STAGES = {"tokenize": "preparing the data", "evaluate": "evaluating", "train": "training", "save": "saving"}

    def __init__(self, out: IO[str], err: IO[str]) -> None:
        self.out, self.err = out, err
        self.bar = None

    def __call__(self, event: dict) -> None:
        from tqdm import tqdm

        if event.get("event") == "stage":
            stage = event.get("stage", "")
            text = self.STAGES.get(stage, stage)
            if event.get("model"):
                text += f" the {event['model']} model"
            self.write(f"• {text}…")
        elif event.get("event") == "progress" and event.get("max_steps"):
            if self.bar is None:
                self.bar = tqdm(total=event["max_steps"], unit="step", desc="training", file=self.err,
                                dynamic_ncols=True, leave=True)
            self.bar.update(event["step"] - self.bar.n)
            postfix = {"epoch": f"{event.get('epoch', 0):.2f}"}
            if event.get("loss") is not None:
                postfix["loss"] = f"{event['loss']:.4f}"
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

    def __init__(self, settings: Any, classifier: Any, store: Any, worker: Any, *, out: IO[str], err: IO[str],
                 chart_path: Path, training: dict[str, Any]) -> None:
        self.settings = settings
        self.classifier = classifier
        self.store = store
        self.worker = worker
        self.out, self.err = out, err
        self.chart_path = chart_path
        self.training = training
        self.last: ShellMessage | None = None
        self.job = None
        self._last_id = 0

    @classmethod
    async def open(cls, settings: Any, classifier: Any, **options: Any) -> "Shell":
        from bot.store import GuildSettings, Store
        from model.worker import InferenceWorker

        store = await Store.open(settings.db_path, defaults=GuildSettings(threshold=settings.threshold))
        worker = InferenceWorker(classifier, max_batch=settings.max_batch,
                                 torch_threads=settings.inference_threads).start()
        return cls(settings, classifier, store, worker, **options)

    async def close(self) -> None:
        """Stop a running fine-tune, then the worker, then the store (which flushes its predictions)."""
        if self.job is not None and self.job.running:
            self.job.cancel()
        try:
            await self.worker.close()
        finally:
            await self.store.close()

    def say(self, *lines: str) -> None:
        for line in lines:
            print(line, file=self.out)
        self.out.flush()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, reader: LineReader, *, prompt: bool = False) -> int:
        self.say(f"Emotion Machine shell: model {self.classifier.version} ({self.classifier.source}) on "
                 f"{self.classifier.device}, database {self.store.path}. Type a message, or /help.")
        while True:
            if prompt:
                print("> ", end="", file=self.out, flush=True)
            line = await reader.readline()
            if line is None:
                if prompt:
                    self.say("")
                return EXIT_OK
            if not await self.handle(line):
                return EXIT_OK

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
                raise ShellError(f"unknown command /{name}: /help lists the commands")
            return await command(self, rest.strip()) is not False
        except ShellError as exc:
            self.say(f"error: {exc}")
        except (StoreError, WorkerClosed, OSError) as exc:
            self.say(f"error: {exc}")
        return True

    def _next_message_id(self) -> int:
        """Negative, so never a Discord snowflake; from the clock, so unique across sessions too."""
        message_id = min(-time.time_ns() // 1000, self._last_id - 1)
        self._last_id = message_id
        return message_id

    async def message(self, text: str) -> None:
        from bot.store import PredictionRow

        prediction = await self.worker.classify(text)
        message_id = self._next_message_id()
        await self.store.record_prediction(PredictionRow(
            guild_id=SHELL_GUILD_ID, channel_id=SHELL_CHANNEL_ID, message_id=message_id, author_id=SHELL_USER_ID,
            label=prediction.label, probability=prediction.score, model_version=prediction.version,
            created_at=time.time()))
        self.last = ShellMessage(message_id, text, prediction.label, prediction.version)
        self.say(*prediction_lines(prediction))

    # -- commands ------------------------------------------------------------------------------

    async def cmd_help(self, rest: str) -> None:
        self.say(HELP)

    async def cmd_quit(self, rest: str) -> bool:
        self.say("bye")
        return False

    async def cmd_labels(self, rest: str) -> None:
        from model.labels import emoji_for

        self.say("labels: " + ", ".join(f"{emoji_for(lb)} {lb}" for lb in self.worker.classifier.labels))

    async def cmd_correct(self, rest: str) -> None:
        from bot.cogs.feedback import resolve_label
        from bot.errors import UserError
        from bot.store import Correction
        from model.labels import emoji_for

        if not rest:
            raise ShellError("say which emotion: /correct LABEL (/labels lists them)")
        if self.last is None:
            raise ShellError("nothing to correct yet: type a message first")
        try:
            label = resolve_label(rest, self.worker.classifier.labels)
        except UserError as exc:
            raise ShellError(plain(str(exc))) from None
        last = self.last
        await self.store.add_correction(Correction(
            text=last.text, label=label, guild_id=SHELL_GUILD_ID, channel_id=SHELL_CHANNEL_ID, message_id=last.id,
            author_id=SHELL_USER_ID, corrector_id=SHELL_USER_ID, predicted_label=last.label,
            model_version=last.version, source="shell", created_at=time.time()))
        count = await self.store.count_corrections()
        what = (f"confirmed {emoji_for(label)} {label}" if label == last.label
                else f"corrected {emoji_for(last.label)} {last.label} → {emoji_for(label)} {label}")
        self.say(f"{what} for {last.text!r} ({count} correction{'s' if count != 1 else ''} stored)")

    async def cmd_mood(self, rest: str) -> None:
        from bot.charts import mood_chart
        from bot.cogs.stats import DEFAULT_DAYS, MAX_DAYS, day_range, span_text, summary

        try:
            days = int(rest) if rest else DEFAULT_DAYS
        except ValueError:
            days = 0
        if not 1 <= days <= MAX_DAYS:
            raise ShellError(f"/mood takes a number of days from 1 to {MAX_DAYS} (default {DEFAULT_DAYS}), "
                             f"not {rest!r}")
        since, day_list = day_range(days)
        rows = await self.store.emotion_counts(guild_id=SHELL_GUILD_ID, since=since)
        period = "today" if days == 1 else f"the last {days} days"
        png = await asyncio.to_thread(mood_chart, rows, title=f"Mood in the shell, {period}", days=day_list)
        path = self.chart_path
        await asyncio.to_thread(_write_bytes, path, png)
        self.say(f"Mood in the shell, {period} ({span_text(day_list)})",
                 summary(rows, day_list) if rows else f"No tagged messages in {period}.",
                 f"chart written to {path}")

    async def cmd_retrain(self, rest: str) -> None:
        from bot.cogs.admin import result_text
        from model.finetune_config import FinetuneConfig
        from model.jobs import TrainingBusy, TrainingCancelled, TrainingFailed, TrainingJob

        if rest.lower() in ("force", "--force", "true", "yes"):
            force = True
        elif not rest:
            force = False
        else:
            raise ShellError(f"/retrain takes only 'force', not {rest!r}")
        examples = await self.store.corrections_for_training()
        needed = self.settings.min_corrections
        if len(examples) < needed:
            raise ShellError(f"only {len(examples)} corrections so far; retraining needs at least {needed} "
                             "(EMOTION_MIN_CORRECTIONS or --min-corrections). Add some with /correct.")
        settings = self.settings
        current = self.worker.classifier
        config = FinetuneConfig(
            fallback_base=current.source or settings.model, models_dir=str(settings.models_dir),
            replay=settings.replay_path or None, replay_ratio=settings.replay_ratio,
            torch_threads=settings.training_threads, device=settings.device, force=force, **self.training)
        job = TrainingJob(examples, config)
        try:
            job.start()
        except TrainingBusy as exc:
            raise ShellError(str(exc)) from None
        self.job = job
        self.say(f"retraining on {len(examples)} corrections" + (" (force)" if force else "")
                 + (f" + replay from {config.replay}" if config.replay else "") + "; Ctrl-C cancels")
        progress = RetrainProgress(self.out, self.err)
        restore = _on_sigint(lambda: job.cancel() and progress.write("cancelling the retrain…"))
        try:
            async for event in job.events():
                progress(event)
            result = await job.result()
        except TrainingCancelled:
            progress.close()
            self.say(f"retrain cancelled; nothing was deployed, still using {current.version}")
            return
        except TrainingFailed as exc:
            progress.close()
            log.debug("training traceback:\n%s", exc.details)
            raise ShellError(f"{exc}; still using {current.version}") from None
        finally:
            restore()
            progress.close()
            self.job = None
        self.say(*plain(result_text(result)).splitlines())
        if result.deployed:
            await self.deploy(result)

    async def deploy(self, result: Any) -> None:
        """Load the new version off the loop, swap it into the worker, note it in the store (as the bot does)."""
        from model.classifier import Classifier, ModelLoadError

        settings = self.settings
        try:
            classifier = await asyncio.to_thread(Classifier.load, result.path, device=settings.device,
                                                 quantize=settings.quantize, version=result.version)
        except ModelLoadError as exc:
            raise ShellError(f"{result.version} was saved but could not be loaded ({exc}); "
                             "still serving the old model") from None
        self.worker.swap(classifier)
        self.classifier = classifier
        try:
            await self.store.add_model_version(
                result.version, result.path, parent=result.parent, base=result.base,
                metrics={"before": result.before, "after": result.after}, examples=result.examples,
                make_current=True)
        except Exception as exc:  # noqa: BLE001 - the registry on disk is the source of truth
            log.warning("could not record %s in the database: %s", result.version, exc)
        self.say(f"now tagging with {result.version}")

    COMMANDS: dict[str, Callable[..., Any]] = {
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


# --------------------------------------------------------------------------- command line


def _add_options(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--min-corrections", type=int, metavar="N",
                   help="corrections /retrain needs before it trains (default: EMOTION_MIN_CORRECTIONS)")
    p.add_argument("--epochs", type=float,
                   help="/retrain: passes over the data (default: EMOTION_FINETUNE_EPOCHS or 5)")
    p.add_argument("--lr", type=float, help="/retrain: learning rate (default: EMOTION_FINETUNE_LR or 3e-5)")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="/retrain: examples per step (default: EMOTION_FINETUNE_BATCH_SIZE or 16)")


DESCRIPTION = ("A terminal playground that behaves like one Discord channel, with the bot's database, model "
               "and fine-tuning: type a message to see its emoji and top 3 emotions; /correct LABEL, "
               "/retrain [force], /mood [DAYS], /help, /quit. Reads stdin line by line, so input can be piped.")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``shell`` on the CLI's subparsers; it sets ``func``."""
    p = subparsers.add_parser("shell", help="try the bot in the terminal: tag, correct, retrain, chart",
                              description=DESCRIPTION)
    _add_options(p)
    p.set_defaults(func=run_shell)


def _fail(message: str) -> int:
    print(f"emotion-machine: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _prepare(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any], Path]:
    """Settings with the options applied, the classifier, the training knobs and the chart path.

    Raises ShellError (bad option), SettingsError, ModelLoadError or RegistryError.
    """
    from bot.client import load_classifier
    from bot.settings import load_settings

    settings = load_settings()
    changes: dict[str, Any] = {}
    for option, name in (("model", "model"), ("models_dir", "models_dir"), ("db", "db_path"),
                         ("device", "device"), ("min_corrections", "min_corrections")):
        value = getattr(args, option, None)
        if value is not None:
            changes[name] = Path(value) if name in ("models_dir", "db_path") else value
    if changes.get("min_corrections", 1) < 1:
        raise ShellError("--min-corrections must be at least 1")
    settings = dataclasses.replace(settings, **changes)

    training: dict[str, Any] = {}
    for option, setting, knob in (("epochs", "finetune_epochs", "epochs"), ("lr", "finetune_lr", "learning_rate"),
                                  ("batch_size", "finetune_batch_size", "batch_size")):
        value = getattr(args, option, None)
        if value is None:
            value = getattr(settings, setting)
        if value is not None:
            if not value > 0:
                raise ShellError(f"--{option.replace('_', '-')} must be greater than 0, not {value}")
            training[knob] = value

    db = str(settings.db_path)
    if args.out:
        chart = Path(args.out)
    elif db == ":memory:" or db.startswith("file:"):
        chart = Path("mood.png")
    else:
        chart = Path(db).parent / "mood.png"
    classifier = load_classifier(settings)
    return settings, classifier, training, chart


def run_shell(args: argparse.Namespace, *, stdin: IO[str] | None = None, stdout: IO[str] | None = None,
              stderr: IO[str] | None = None) -> int:
    """The ``shell`` command: 0 on /quit or end of input, 2 when it cannot start (one ``error:`` line)."""
    from bot.settings import SettingsError
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
    try:
        settings, classifier, training, chart = _prepare(args)
    except (ShellError, SettingsError, ModelLoadError, RegistryError) as exc:
        return _fail(str(exc))
    try:
        prompt = stdin.isatty()
    except (AttributeError, ValueError):
        prompt = False

    async def go() -> int:
        try:
            shell = await Shell.open(settings, classifier, out=out, err=err, chart_path=chart, training=training)
        except StoreError as exc:
            return _fail(str(exc))
        try:
            return await shell.run(LineReader(stdin).start(), prompt=prompt)
        finally:
            await shell.close()

    return asyncio.run(go())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emotion-machine shell", description=DESCRIPTION)
    _add_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m bot.shell``: the same as ``emotion-machine shell``."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    from bot.cli import setup_logging

    setup_logging(os.environ.get("EMOTION_LOG_LEVEL", "WARNING").upper())
    try:
        return run_shell(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
