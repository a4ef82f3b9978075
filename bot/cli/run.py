"""``emotion-machine run``: log in to Discord and tag messages until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from bot.cli.common import EXIT_OK, EXIT_USAGE, CommandError, settings, setup_logging

log = logging.getLogger("emotion_machine")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the Discord bot (needs DISCORD_TOKEN)",
                       description="Log in to Discord and tag messages until SIGINT/SIGTERM.")
    p.set_defaults(func=run_bot, logs_itself=True)


def run_bot(args: argparse.Namespace) -> int:
    from bot.settings import SettingsError
    from model.classifier import ModelLoadError
    from model.registry import RegistryError

    loaded = settings()
    try:
        token = loaded.require_token()
    except SettingsError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    setup_logging(loaded.log_level, token)
    from bot.client import EmotionBot, freeze_startup_heap, load_classifier

    try:
        classifier = load_classifier(loaded)
    except (ModelLoadError, RegistryError) as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    log.info("model %s (%s) on %s", classifier.source, classifier.version, classifier.device)
    freeze_startup_heap()
    return asyncio.run(_serve(EmotionBot(loaded, classifier), token))


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
    return EXIT_OK
