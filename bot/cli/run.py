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
    p.add_argument("--shards", type=shard_range, metavar="A-B",
                   help="run only these shards (e.g. 0-3, or 5), for a bot split over processes; needs --shard-count")
    p.add_argument("--shard-count", type=int, metavar="N",
                   help="the application's number of shards (every process of the bot uses the same)")
    p.add_argument("--max-concurrency", type=int, default=1, metavar="N",
                   help="IDENTIFYs Discord allows the application per 5 s (its /gateway/bot says; default 1)")
    p.set_defaults(func=run_bot, logs_itself=True)
    c = sub.add_parser("cluster", help="run the bot as N processes, each a range of its shards, restarted if one dies",
                       description="Start N `run --shards` processes over the application's shards, staggered as "
                                   "Discord's IDENTIFY limit requires; restart any that dies. They share EMOTION_DB "
                                   "(use PostgreSQL) and EMOTION_MODELS_DIR (a path every process can read).")
    c.add_argument("--processes", type=int, required=True, metavar="N", help="how many bot processes")
    c.add_argument("--shard-count", type=int, metavar="N",
                   help="the application's shards (default: what Discord recommends, from /gateway/bot)")
    c.add_argument("--max-concurrency", type=int, metavar="N",
                   help="IDENTIFYs Discord allows per 5 s (default: from /gateway/bot, else 1)")
    c.set_defaults(func=run_cluster, logs_itself=True)


def shard_range(text: str) -> list[int]:
    """``0-3`` -> [0, 1, 2, 3]; ``5`` -> [5]."""
    first, _, last = text.partition("-")
    try:
        ids = list(range(int(first), int(last or first) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shard range like 0-3") from None
    if not ids or ids[0] < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shard range like 0-3")
    return ids


def check_shards(shards: list[int] | None, count: int | None) -> None:
    if shards is not None and count is None:
        raise CommandError("--shards needs --shard-count (the same in every process of the bot)", EXIT_USAGE)
    if count is not None and count < 1:
        raise CommandError("--shard-count must be at least 1", EXIT_USAGE)
    if shards is not None and shards[-1] >= count:
        raise CommandError(f"--shards {shards[0]}-{shards[-1]} is outside --shard-count {count} "
                           f"(shards are 0-{count - 1})", EXIT_USAGE)


def run_bot(args: argparse.Namespace) -> int:
    from bot.settings import SettingsError

    loaded = settings()
    shards, count = getattr(args, "shards", None), getattr(args, "shard_count", None)
    check_shards(shards, count)
    try:
        token = loaded.require_token()
    except SettingsError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    setup_logging(loaded.log_level, token)
    return asyncio.run(_start(loaded, token, shard_ids=shards, shard_count=count,
                              max_concurrency=getattr(args, "max_concurrency", 1) or 1))


async def _start(loaded, token: str, *, shard_ids: list[int] | None = None, shard_count: int | None = None,
                 max_concurrency: int = 1) -> int:
    """Database, then model, then Discord: what fails earliest is what costs the least to check."""
    from bot.client import freeze_startup_heap, make_bot, open_store
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
    if shard_ids is not None:
        log.info("shards %d-%d of %d", shard_ids[0], shard_ids[-1], shard_count)
    bot = make_bot(loaded, classifier, store=store, shard_ids=shard_ids, shard_count=shard_count,
                   max_concurrency=max_concurrency)
    return await _serve(bot, token)


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


def run_cluster(args: argparse.Namespace) -> int:
    from bot.cluster import Cluster
    from bot.settings import SettingsError
    from bot.store import is_postgres_url

    loaded = settings()
    try:
        token = loaded.require_token()
    except SettingsError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    setup_logging(loaded.log_level, token)
    if args.processes < 1:
        raise CommandError("--processes must be at least 1", EXIT_USAGE)
    if not is_postgres_url(str(loaded.db_path)) and args.processes > 1:
        log.warning("EMOTION_DB is a SQLite file: the processes share it on this machine only, and the REST budget, "
                    "version changes and the training lock are not coordinated; use PostgreSQL for a cluster")
    count, concurrency = args.shard_count, args.max_concurrency
    if count is not None:
        _split(count, args.processes)  # a bad split is said before Discord is asked anything
    if count is None or concurrency is None:
        try:
            recommended, limit = asyncio.run(_gateway_bot(token))
        except CommandError as exc:
            if count is None:
                raise
            log.warning("%s; assuming an IDENTIFY max_concurrency of 1", exc)
            recommended, limit = count, 1
        count, concurrency = count or recommended, concurrency or limit
    ranges = _split(count, args.processes)
    log.info("cluster: %d processes over %d shards (IDENTIFY max_concurrency %d)", args.processes, count, concurrency)

    def command(shards: list[int]) -> list[str]:
        return [sys.executable, "-m", "bot", "run", "--shards", f"{shards[0]}-{shards[-1]}",
                "--shard-count", str(count), "--max-concurrency", str(concurrency)]

    return asyncio.run(Cluster(command, ranges, max_concurrency=concurrency).run())


def _split(count: int, processes: int) -> list[list[int]]:
    from bot.cluster import split_shards

    try:
        return split_shards(count, processes)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


async def _gateway_bot(token: str) -> tuple[int, int]:
    """Discord's recommended shard count and IDENTIFY max_concurrency for this application."""
    import discord
    from discord.http import HTTPClient, Route

    http = HTTPClient(asyncio.get_running_loop())
    try:
        await http.static_login(token)
        data = await http.request(Route("GET", "/gateway/bot"))
    except discord.LoginFailure:
        raise CommandError(TOKEN_REFUSED.format(how=""), EXIT_USAGE) from None
    except (discord.HTTPException, OSError) as exc:
        raise CommandError(UNREACHABLE.format(why=str(exc) or type(exc).__name__) + "; or give --shard-count and "
                           "--max-concurrency", EXIT_USAGE) from None
    finally:
        await http.close()
    return int(data["shards"]), int(data.get("session_start_limit", {}).get("max_concurrency", 1))
