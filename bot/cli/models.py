"""``emotion-machine finetune`` and ``models list|rollback|prune``: the retraining flow and the registry.

``finetune`` is the same flow as ``/base retrain`` (and, with ``--guild``, as a server's ``/retrain``:
:mod:`bot.services.retraining`): the same minimum of corrections, training knobs, thread budget,
child process and gate. ``--guild ID`` on ``models`` acts on that server's line instead of the base's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.cli.common import EXIT_FAILED, EXIT_NOT_DEPLOYED, EXIT_OK, EXIT_USAGE, CommandError, from_namespace, settings
from bot.services.retraining import TrainingOverrides


def add_parsers(sub: argparse._SubParsersAction) -> None:
    models_dir = argparse.ArgumentParser(add_help=False)
    models_dir.add_argument("--models-dir", metavar="PATH", help="model versions folder (default: EMOTION_MODELS_DIR)")
    models_dir.add_argument("--guild", type=int, metavar="ID",
                            help="a server's own line of versions (its head on the base) instead of the shared base")

    p = sub.add_parser(
        "finetune", parents=[models_dir], dataclass_types=[TrainingOverrides],
        help="fine-tune the shared base (or, with --guild, a server's model) on the stored corrections",
        description="Train a candidate on the corrections in the database (plus replay data against forgetting), "
                    "compare it with the current model on held-out corrections, and deploy it only if it is "
                    "not worse: the same flow as /base retrain. The base learns only from servers that turned "
                    "sharing on (plus imports and the shell); --guild ID trains that server's own model on its "
                    "corrections only, as its /retrain does. Exit codes: 0 deployed, 3 trained but not deployed, "
                    "1 failed, 2 usage.")
    p.add_argument("--force", action="store_true",
                   help="deploy even if the gate refuses or there is nothing to evaluate on")
    p.add_argument("--db", metavar="PATH", help="database file (default: EMOTION_DB)")
    p.set_defaults(func=run_finetune)

    m = sub.add_parser("models", help="list, roll back or prune model versions",
                       description="Model versions saved by finetune and train, and which one is current.")
    ms = m.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    q = ms.add_parser("list", parents=[models_dir], help="versions, their metrics, and which is current")
    q.set_defaults(func=run_models_list)
    q = ms.add_parser("rollback", parents=[models_dir], help="make an earlier version current",
                      description="Point current at VERSION, or (without it) at the newest older version that was "
                                  "deployed before. With PostgreSQL every running process of the bot serves it "
                                  "within seconds; with SQLite the running bot loads it on its next start.")
    q.add_argument("version", nargs="?", help="e.g. v3 (default: the previous deployed version)")
    q.add_argument("--db", metavar="PATH", help="database (default: EMOTION_DB): where the bot hears of it")
    q.set_defaults(func=run_models_rollback)
    q = ms.add_parser("prune", parents=[models_dir], help="delete old versions (never the current one)")
    q.add_argument("--keep", type=int, required=True, metavar="K", help="how many of the newest versions to keep")
    q.set_defaults(func=run_models_prune)


# --------------------------------------------------------------------------- finetune


def run_finetune(args: argparse.Namespace) -> int:
    from bot import render
    from bot.services import Actor, Refusal
    from bot.services.retraining import RetrainingService
    from bot.store import StoreError, open_store

    loaded = settings(args)
    try:
        overrides = from_namespace(TrainingOverrides, args)
    except Refusal as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None

    async def go():
        store = await open_store(loaded.db_path)
        try:
            service = RetrainingService(loaded, store)
            run = (await service.prepare(Actor.operator("the command line"), guild_id=args.guild,
                                         force=args.force, overrides=overrides)).start()
            print(f"fine-tuning on {run.examples} corrections"
                  + (f" + replay from {run.config.replay}" if run.config.replay else ""), file=sys.stderr)
            progress = render.TerminalProgress()
            try:
                async for event in run.events():
                    progress(event)
                return await run.finish()
            finally:
                progress.close()
        finally:
            await store.close()

    try:
        outcome = asyncio.run(go())
    except (Refusal, StoreError, OSError) as exc:
        raise CommandError(str(exc)) from None
    print(render.retrain_outcome(outcome, render.PLAIN))
    return {"deployed": EXIT_OK, "not deployed": EXIT_NOT_DEPLOYED}.get(outcome.status, EXIT_FAILED)


# --------------------------------------------------------------------------- models


def _registry(args: argparse.Namespace):
    from model.registry import Registry, server_root

    models_dir = settings(args).models_dir
    return Registry(models_dir) if args.guild is None else Registry(server_root(models_dir, args.guild))


def run_models_list(args: argparse.Namespace) -> int:
    from model.finetune_config import metric_sets
    from model.registry import RegistryError

    try:
        registry = _registry(args)
        versions = registry.list()
        current = registry.current_name()
    except RegistryError as exc:
        raise CommandError(str(exc)) from None
    if not versions:
        print(f"no model versions in {registry.root} yet (the bot uses EMOTION_MODEL until the first finetune)")
        return EXIT_OK
    print(f"  {'version':<8} {'created':<26} {'parent':<7} {'examples':>8}  {'macro-F1 before → after':<24} eval set")
    for v in versions:
        meta = v.metadata
        metrics = meta.get("metrics") or {}
        before, after = metric_sets(metrics.get("before")), metric_sets(metrics.get("after"))
        first = next((name for name in before if name in after), None)  # the hold-out when there was one
        f1 = f"{before[first]['macro_f1']:.3f} → {after[first]['macro_f1']:.3f}" if first else "-"
        examples = (meta.get("examples") or {}).get("corrections", "-") if isinstance(meta.get("examples"), dict) \
            else meta.get("examples", "-")
        mark = "*" if v.name == current else " "
        print(f"{mark} {v.name:<8} {v.created:<26} {meta.get('parent') or '-'!s:<7} {examples!s:>8}  "
              f"{f1:<24} {'+'.join(after) or '-'}")
    if current and current not in {v.name for v in versions}:
        print(f"warning: current points at {current}, which is missing: run `models rollback VERSION`", file=sys.stderr)
    return EXIT_OK


def run_models_rollback(args: argparse.Namespace) -> int:
    """With PostgreSQL, the service's rollback, announced to every running process; else the registry alone
    (a SQLite bot loads it at its next start, and the database is not touched)."""
    from bot.services import Actor, Refusal
    from bot.services.retraining import RetrainingService
    from bot.store import StoreError, is_postgres_url, open_store
    from model.registry import RegistryError

    loaded = settings(args)
    shared = is_postgres_url(str(loaded.db_path))

    async def announced():
        store = await open_store(loaded.db_path)
        try:
            return await RetrainingService(loaded, store).rollback(Actor.operator("the command line"), args.version,
                                                                   guild_id=getattr(args, "guild", None))
        finally:
            await store.close()

    when = "the running bot loads it on its next start"
    try:
        if shared:
            try:
                version = asyncio.run(announced())
                when = "every running process of the bot serves it within seconds"
            except StoreError as exc:
                print(f"warning: {exc}; rolling back without telling the running bot", file=sys.stderr)
                shared = False
        if not shared:
            version = _registry(args).rollback(args.version)
    except (Refusal, RegistryError) as exc:
        raise CommandError(str(exc)) from None
    if version is None:  # a server's line rolled back to "base"
        print(f"server {args.guild} is served by the shared base model; {when}")
    else:
        print(f"current model: {version.name} ({version.path}); {when}")
    return EXIT_OK


def run_models_prune(args: argparse.Namespace) -> int:
    from model.registry import RegistryError

    try:
        deleted = _registry(args).prune(keep=args.keep)
    except (RegistryError, ValueError) as exc:
        raise CommandError(str(exc), EXIT_USAGE if args.keep < 1 else EXIT_FAILED) from None
    print(f"deleted {', '.join(deleted)}" if deleted else "nothing to delete")
    return EXIT_OK
