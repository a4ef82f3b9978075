"""``emotion-machine finetune`` and ``emotion-machine models …``: training and versions from a shell.

Thin on purpose: the pipeline is :mod:`model.finetune`, versions are :mod:`model.registry`;
this file reads settings and corrections, draws a progress bar, and turns outcomes into exit
codes (0 done/deployed, 1 failed, 2 usage or settings, 3 trained but not deployed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_DEPLOYED = 3


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"emotion-machine: error: {message}", file=sys.stderr)
    return code


def _settings() -> Any:
    from bot.settings import load_settings

    return load_settings()


# --------------------------------------------------------------------------- parsers


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``finetune`` and ``models`` on the CLI's subparsers; each sets ``func``."""
    models_dir = argparse.ArgumentParser(add_help=False)
    models_dir.add_argument("--models-dir", metavar="PATH", help="model versions folder (default: EMOTION_MODELS_DIR)")

    p = subparsers.add_parser(
        "finetune", parents=[models_dir], help="fine-tune the current model on the stored corrections",
        description="Train a candidate on the corrections in the database (plus replay data against forgetting), "
                    "compare it with the current model on held-out corrections, and deploy it only if it is "
                    "not worse. Exit codes: 0 deployed, 3 trained but not deployed, 1 failed, 2 usage.")
    p.add_argument("--replay", metavar="PATH", help="old labelled data mixed in: GoEmotions folder, .csv, .jsonl, "
                                                     "or go_emotions for the hub (default: EMOTION_REPLAY_PATH)")
    p.add_argument("--replay-ratio", type=float, metavar="R", help="replay rows per correction (default: EMOTION_REPLAY_RATIO)")
    p.add_argument("--epochs", type=float, help="passes over the data (default: EMOTION_FINETUNE_EPOCHS, 5)")
    p.add_argument("--lr", type=float, help="learning rate (default: EMOTION_FINETUNE_LR, 3e-5)")
    p.add_argument("--batch-size", type=int, help="examples per step (default: EMOTION_FINETUNE_BATCH_SIZE, 16)")
    p.add_argument("--force", action="store_true", help="deploy even if the gate refuses or there is nothing to evaluate on")
    p.add_argument("--base", help="start from this hub id, folder or version instead of the current model")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: all cores)")
    p.add_argument("--db", metavar="PATH", help="database file (default: EMOTION_DB)")
    p.set_defaults(func=run_finetune)

    m = subparsers.add_parser("models", help="list, roll back or prune model versions",
                              description="Model versions saved by finetune, and which one is current.")
    ms = m.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    q = ms.add_parser("list", parents=[models_dir], help="versions, their metrics, and which is current")
    q.set_defaults(func=run_models_list)
    q = ms.add_parser("rollback", parents=[models_dir], help="make an earlier version current",
                      description="Point current at VERSION, or (without it) at the newest older version that was "
                                  "deployed before. The running bot loads it on its next start.")
    q.add_argument("version", nargs="?", help="e.g. v3 (default: the previous deployed version)")
    q.set_defaults(func=run_models_rollback)
    q = ms.add_parser("prune", parents=[models_dir], help="delete old versions (never the current one)")
    q.add_argument("--keep", type=int, required=True, metavar="K", help="how many of the newest versions to keep")
    q.set_defaults(func=run_models_prune)


# --------------------------------------------------------------------------- finetune


async def _read_corrections(db: str) -> list[tuple[str, str]]:
    from bot.store import Store

    store = await Store.open(db)
    try:
        return await store.corrections_for_training()
    finally:
        await store.close()


async def _record_version(db: str, result: Any) -> None:
    """Note the new version in the store too (what /stats shows); the registry stays the source of truth."""
    from bot.store import Store

    store = await Store.open(db)
    try:
        await store.add_model_version(result.version, result.path, parent=result.parent, base=result.base,
                                      metrics={"before": result.before, "after": result.after},
                                      examples=result.examples, make_current=result.deployed)
    finally:
        await store.close()


class _ProgressBar:
    """A tqdm bar fed by finetune's events: stages as lines, steps as the bar."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, event: dict) -> None:
        from tqdm import tqdm

        if event["event"] == "stage":
            which = f" ({event['model']} model)" if event.get("model") else ""
            (self.bar.write if self.bar is not None else lambda s: print(s, file=sys.stderr))(f"• {event['stage']}{which}")
        elif event["event"] == "progress":
            if self.bar is None:
                self.bar = tqdm(total=event["max_steps"], unit="step", desc="training", file=sys.stderr)
            self.bar.update(event["step"] - self.bar.n)
            self.bar.set_postfix(epoch=f"{event['epoch']:.2f}", loss=f"{event['loss']:.4f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _metrics_line(name: str, m: dict) -> str:
    if not m:
        return f"  {name:<10} (not evaluated)"
    extra = ""
    if "replay_macro_f1" in m:
        extra = f"   replay: macro-F1 {m['replay_macro_f1']:.3f}, accuracy {m['replay_accuracy']:.3f}"
    return f"  {name:<10} macro-F1 {m['macro_f1']:.3f}   accuracy {m['accuracy']:.3f}{extra}"


def run_finetune(args: argparse.Namespace) -> int:
    from bot.store import StoreError
    from model.classifier import ModelLoadError
    from model.data import DataError
    from model.finetune import FinetuneConfig, FinetuneError, run
    from model.registry import RegistryError

    try:
        settings = _settings()
    except ValueError as exc:  # SettingsError
        return _fail(str(exc), EXIT_USAGE)
    db = str(args.db or settings.db_path)
    try:
        examples = asyncio.run(_read_corrections(db))
    except (StoreError, OSError) as exc:
        return _fail(str(exc))
    if not examples:
        return _fail(f"no corrections in {db}: collect some with /correct (or `emotion-machine import`) first")
    replay = args.replay if args.replay is not None else (settings.replay_path or None)
    config = FinetuneConfig(
        base=args.base, fallback_base=settings.model, models_dir=str(args.models_dir or settings.models_dir),
        epochs=args.epochs or settings.finetune_epochs, learning_rate=args.lr or settings.finetune_lr,
        batch_size=args.batch_size or settings.finetune_batch_size, force=args.force,
        replay=replay, replay_ratio=args.replay_ratio if args.replay_ratio is not None else settings.replay_ratio,
        torch_threads=args.threads, device=getattr(settings, "device", "auto"))
    print(f"fine-tuning on {len(examples)} corrections" + (f" + replay from {replay}" if replay else ""), file=sys.stderr)
    bar = _ProgressBar()
    try:
        result = run(examples, config, on_event=bar)
    except (DataError, ModelLoadError, FinetuneError, RegistryError) as exc:
        return _fail(str(exc))
    finally:
        bar.close()

    print(f"{'deployed' if result.deployed else 'not deployed'}: {result.reason}")
    if result.before or result.after:
        print(_metrics_line("current", result.before))
        print(_metrics_line("candidate", result.after))
    print(f"  {result.examples} corrections ({result.holdout} held out), {result.train_examples} training rows "
          f"({result.replay_examples} replay), {result.seconds:.0f} s")
    if result.version:
        print(f"  saved as {result.version} ({result.path})" + ("; now current" if result.deployed else ""))
        try:
            asyncio.run(_record_version(db, result))
        except Exception as exc:  # noqa: BLE001 - the model is saved; the store's copy is a convenience
            log.warning("could not record %s in the database: %s", result.version, exc)
    return EXIT_OK if result.deployed else EXIT_NOT_DEPLOYED


# --------------------------------------------------------------------------- models


def _registry(args: argparse.Namespace):
    from model.registry import Registry

    return Registry(args.models_dir or _settings().models_dir)


def run_models_list(args: argparse.Namespace) -> int:
    from model.registry import RegistryError

    try:
        registry = _registry(args)
        versions = registry.list()
        current = registry.current_name()
    except (RegistryError, ValueError) as exc:
        return _fail(str(exc))
    if not versions:
        print(f"no model versions in {registry.root} yet (the bot uses EMOTION_MODEL until the first finetune)")
        return EXIT_OK
    print(f"  {'version':<8} {'created':<26} {'parent':<7} {'examples':>8}  {'macro-F1 before → after':<24} eval set")
    for v in versions:
        meta = v.metadata
        metrics = meta.get("metrics") or {}
        before, after = metrics.get("before") or {}, metrics.get("after") or {}
        f1 = f"{before['macro_f1']:.3f} → {after['macro_f1']:.3f}" if before and after else "-"
        examples = (meta.get("examples") or {}).get("corrections", "-") if isinstance(meta.get("examples"), dict) \
            else meta.get("examples", "-")
        mark = "*" if v.name == current else " "
        print(f"{mark} {v.name:<8} {v.created:<26} {str(meta.get('parent') or '-'):<7} {str(examples):>8}  "
              f"{f1:<24} {after.get('eval_set', '-')}")
    if current and current not in {v.name for v in versions}:
        print(f"warning: current points at {current}, which is missing: run `models rollback VERSION`", file=sys.stderr)
    return EXIT_OK


def run_models_rollback(args: argparse.Namespace) -> int:
    from model.registry import RegistryError

    try:
        version = _registry(args).rollback(args.version)
    except (RegistryError, ValueError) as exc:
        return _fail(str(exc))
    print(f"current model: {version.name} ({version.path}); the running bot loads it on its next start")
    return EXIT_OK


def run_models_prune(args: argparse.Namespace) -> int:
    from model.registry import RegistryError

    try:
        deleted = _registry(args).prune(keep=args.keep)
    except (RegistryError, ValueError) as exc:
        return _fail(str(exc), EXIT_USAGE if args.keep < 1 else EXIT_FAILED)
    print(f"deleted {', '.join(deleted)}" if deleted else "nothing to delete")
    return EXIT_OK

