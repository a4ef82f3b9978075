"""``emotion-machine guild list|forget``: the servers the bot keeps data and models for, and forgetting one now.

Forgetting is the flow the bot runs itself when a server it left passes the grace period
(:mod:`bot.services.guild_data`); from here the operator runs it at once (a server asked to be
forgotten, or the bot was removed while nothing ran). The running bot drops the server's model on
its next purge (at most an hour) or restart; its data is gone at once.
"""

from __future__ import annotations

import argparse
import asyncio

from bot.cli.common import EXIT_OK, CommandError, settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("guild", help="servers: which have a model of their own, forget one",
                       description="The servers whose data and models the bot keeps.")
    gs = g.add_subparsers(dest="guild_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", metavar="PATH", help="database file (default: EMOTION_DB)")
    common.add_argument("--models-dir", metavar="PATH", help="model versions folder (default: EMOTION_MODELS_DIR)")
    q = gs.add_parser("list", parents=[common], help="servers with a model of their own, and those the bot left")
    q.set_defaults(func=run_list)
    q = gs.add_parser("forget", parents=[common], help="delete a server's corrections, predictions, settings "
                                                       "and model versions now")
    q.add_argument("guild_id", type=int, metavar="ID", help="the server's id")
    q.set_defaults(func=run_forget)


def run_list(args: argparse.Namespace) -> int:
    from model.registry import Registry, server_lines, server_root

    loaded = settings(args)

    async def left() -> list[int]:
        store = await _open(loaded)
        try:
            return await store.guilds_left_before(float("inf"))
        finally:
            await store.close()

    departed = set(_run(left()))
    lines = server_lines(loaded.models_dir)
    if not lines and not departed:
        print("no server has a model of its own yet, and the bot has left none")
        return EXIT_OK
    for guild_id in sorted(set(lines) | departed):
        line = Registry(server_root(loaded.models_dir, guild_id))
        versions = [v.name for v in line.list()] if guild_id in lines else []
        mark = " (left: forgotten after the grace period)" if guild_id in departed else ""
        print(f"{guild_id}: current {line.current_name() or 'the base'}, versions {', '.join(versions) or '-'}{mark}")
    return EXIT_OK


def run_forget(args: argparse.Namespace) -> int:
    from bot.services import Actor
    from bot.services.guild_data import GuildDataService

    loaded = settings(args)

    async def go():
        store = await _open(loaded)
        try:
            return await GuildDataService(loaded, store).forget(Actor.operator("the command line"), args.guild_id)
        finally:
            await store.close()

    done = _run(go())
    counts = ", ".join(f"{n} {kind}" for kind, n in done.counts.items() if n and kind != "departures") or "no rows"
    print(f"forgot server {done.guild_id}: {counts}; {done.versions} model version(s) deleted")
    return EXIT_OK


async def _open(loaded):
    from bot.services import open_store

    return await open_store(loaded)


def _run(coro):
    from bot.services import Refusal
    from bot.store import StoreError

    try:
        return asyncio.run(coro)
    except (Refusal, StoreError, OSError) as exc:
        raise CommandError(str(exc)) from None
