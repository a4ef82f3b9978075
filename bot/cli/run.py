"""``emotion-machine run``: log in to Discord and tag messages until SIGINT/SIGTERM.

Whatever can be checked without Discord (settings, token shape, database, model) is checked before
logging in; every way the start can fail is one ``error:`` line naming the fix.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from bot.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandError, settings, setup_logging

log = logging.getLogger("emotion_machine")

TOKEN_REFUSED = ("Discord refused the token (DISCORD_TOKEN){how}: reset it on the Developer Portal's Bot page "
                 "and put the new one in .env")
INTENT_MISSING = ("enable the MESSAGE CONTENT intent for this bot on the Developer Portal's Bot page "
                  "(Privileged Gateway Intents), then start again")
UNREACHABLE = ("cannot reach Discord ({why}): check this machine's network connection, DNS and proxy "
               "(discord.com must be reachable over HTTPS), then start again")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the Discord bot (needs DISCORD_TOKEN)",
                       description="Log in to Discord and tag messages until SIGINT/SIGTERM.")
    p.set_defaults(func=run_bot, logs_itself=True)


def run_bot(args: argparse.Namespace) -> int:
    from bot.settings import SettingsError

    loaded = settings()
    try:
        token = loaded.require_token()
    except SettingsError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    setup_logging(loaded.log_level, token)
    return asyncio.run(_start(loaded, token))


async def _start(loaded, token: str) -> int:
    """Database, then model, then Discord: what fails earliest is what costs the least to check."""
    from bot.client import EmotionBot, freeze_startup_heap, open_store
    from bot.store import StoreError

    try:  # first: a bad EMOTION_DB fails in a second, not after the model has loaded
        store = await open_store(loaded)
    except (StoreError, OSError) as exc:
        raise CommandError(f"EMOTION_DB: {exc}", EXIT_USAGE) from None
    try:
        classifier = await asyncio.to_thread(_load_model, loaded)  # the loop has nothing else to do yet
    except BaseException:
        await store.close()
        raise
    log.info("model %s (%s) on %s", classifier.source, classifier.version, classifier.device)
    freeze_startup_heap()
    return await _serve(EmotionBot(loaded, classifier, store=store), token)


def _load_model(loaded):
    """The served model, loaded before connecting; a model that cannot load is a settings error."""
    from bot.client import load_classifier
    from model.classifier import ModelLoadError
    from model.registry import RegistryError

    _quiet_progress_bars()
    try:
        return load_classifier(loaded)
    except (ModelLoadError, RegistryError) as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


def _quiet_progress_bars() -> None:
    """No weight-loading bar in the bot's log; the hub's download bars only where a person watches a terminal."""
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as hf_logging

    hub_bars = not are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    if hub_bars and sys.stderr.isatty():
        enable_progress_bars()


async def _serve(bot, token: str) -> int:
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
    except Exception as exc:
        failure = _start_failure(exc)
        if failure is None:
            raise
        raise CommandError(*failure) from None
    return EXIT_OK


def _start_failure(exc: BaseException) -> tuple[str, int] | None:
    """The one line (and exit status) for a way ``bot.start`` can fail that a person can fix; None: a bug."""
    import aiohttp
    import discord

    from bot.store import StoreError

    if isinstance(exc, discord.LoginFailure):
        return TOKEN_REFUSED.format(how=""), EXIT_USAGE
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return INTENT_MISSING, EXIT_USAGE
    if isinstance(exc, discord.ConnectionClosed):
        if exc.code == 4004:
            return TOKEN_REFUSED.format(how=" at the gateway (reset while the bot ran?)"), EXIT_USAGE
        return (f"Discord closed the gateway connection with code {exc.code}; see the close codes at "
                "https://discord.com/developers/docs/topics/opcodes-and-status-codes"), EXIT_FAILED
    if isinstance(exc, (discord.HTTPException, discord.GatewayNotFound)):
        return f"Discord failed while logging in ({exc}): see https://discordstatus.com, then start again", EXIT_FAILED
    if isinstance(exc, StoreError):
        return f"EMOTION_DB: {exc}", EXIT_USAGE
    if isinstance(exc, (aiohttp.ClientError, OSError, asyncio.TimeoutError)):
        return UNREACHABLE.format(why=str(exc) or type(exc).__name__), EXIT_USAGE
    return None
