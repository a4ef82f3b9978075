"""``emotion-machine db migrate --from SRC --to DST``: move a bot's data between databases (SQLite to PostgreSQL).

Stop the bot first (or it keeps writing to the source); rerunning is safe and copies only what is missing
or changed. The model folders stay where they are: point every process's EMOTION_MODELS_DIR at them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.cli.common import EXIT_FAILED, EXIT_OK, CommandError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("db", help="the database: move the data to another one",
                       description="The bot's database (EMOTION_DB).")
    gs = g.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    m = gs.add_parser("migrate", help="copy every table to another database, then check the row counts",
                      description=__doc__.split("\n\n", 1)[1])
    m.add_argument("--from", dest="source", required=True, metavar="SRC",
                   help="the database to copy: sqlite:PATH (or a path), or postgresql://...")
    m.add_argument("--to", dest="destination", required=True, metavar="DST",
                   help="where to copy it: postgresql://... (created tables and all), or sqlite:PATH")
    m.add_argument("--chunk", type=int, default=5_000, help="rows per transaction (default: 5000)")
    m.set_defaults(func=run_migrate)


def _target(value: str) -> str:
    return value.removeprefix("sqlite:") if value.startswith("sqlite:") and not value.startswith("sqlite://") \
        else value


def run_migrate(args: argparse.Namespace) -> int:
    from bot.store import StoreError, display_url, open_store
    from bot.store.transfer import copy_store

    source, destination = _target(args.source), _target(args.destination)
    if source == destination:
        raise CommandError("--from and --to name the same database")
    if args.chunk < 1:
        raise CommandError("--chunk must be at least 1")

    async def go():
        src = await open_store(source, read_only=True)  # never changed, and never migrated behind the bot's back
        try:
            dst = await open_store(destination)
            try:
                return await copy_store(src, dst, chunk=args.chunk,
                                        progress=lambda table, n: print(f"  {table}: {n} rows", file=sys.stderr)
                                        if n % (args.chunk * 20) == 0 else None)
            finally:
                await dst.close()
        finally:
            await src.close()

    print(f"copying {display_url(source)} -> {display_url(destination)}", file=sys.stderr)
    try:
        report = asyncio.run(go())
    except (StoreError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    width = max(len(r.table) for r in report)
    print(f"{'table':<{width}}  {'source':>10}  {'copied':>10}  {'destination':>11}")
    for r in report:
        flag = "" if r.matches else "  <- differs"
        print(f"{r.table:<{width}}  {r.source:>10}  {r.copied:>10}  {r.destination:>11}{flag}")
    differs = [r.table for r in report if not r.matches]
    if differs:
        print(f"row counts differ in {', '.join(differs)}: the destination held other rows, or the source changed "
              "while copying (stop the bot and run this again)", file=sys.stderr)
        return EXIT_FAILED
    print("every table copied; the counts match", file=sys.stderr)
    return EXIT_OK
