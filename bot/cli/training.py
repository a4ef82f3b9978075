"""``emotion-machine train``, ``soup`` and ``eval``: train a model on a corpus, average models, measure one.

The options are the recipe dataclasses' fields (:class:`model.train_config.TrainConfig`,
:class:`model.eval_config.EvalConfig`), declared there once with their help and defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bot.cli.common import EXIT_OK, EXIT_USAGE, CommandError, from_namespace, settings

#: Where the GoEmotions folder sits beside a checkout (../shared/data/goemotions).
DEFAULT_DATA_HINT = "../shared/data/goemotions"
DEPLOY_WITH_OUTPUT = "--deploy makes a registry version current; it does not apply with --output"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from model.eval_config import EvalConfig
    from model.train_config import TrainConfig

    p = sub.add_parser(
        "train", dataclass_types=[TrainConfig], help="train a model from a base on GoEmotions, a CSV or a JSONL",
        description="Train a classifier for a label set from a base model, measure it on the data's dev split "
                    "(multi-label: tune per-label thresholds there), and save it as a new version in the models "
                    "folder (or to --output). Defaults are the measured MiniLM-L6 recipe (benchmarks/accuracy.md).",
        epilog=f"example: emotion-machine train --base minilm --data {DEFAULT_DATA_HINT} --labels goemotions "
               "--multi-label")
    p.set_defaults(func=run_train, models_dir=None)  # None: EMOTION_MODELS_DIR, resolved when it runs

    s = sub.add_parser(
        "soup", help="average the weights of models trained from the same base into one",
        description="A uniform model soup: the mean of the weights of two or more models trained from the same "
                    "base with the same labels (e.g. two train runs with other learning rates or epochs). It "
                    "usually scores like their ensemble, at the cost of one model. Thresholds are not carried "
                    "over: run eval on the soup to tune them on dev.",
        epilog="example: emotion-machine soup data/runs/a data/runs/b --output data/runs/ab && "
               f"emotion-machine eval --model data/runs/ab --data {DEFAULT_DATA_HINT}")
    s.add_argument("models", nargs="+", metavar="MODEL", help="model folders (at least two)")
    s.add_argument("--models-dir", metavar="PATH", help="registry folder (default: EMOTION_MODELS_DIR)")
    s.add_argument("--output", metavar="DIR", help="save to this folder instead of registering a version")
    s.add_argument("--deploy", action="store_true",
                   help="make the new version current (the bot loads it on next start)")
    s.set_defaults(func=run_soup)

    e = sub.add_parser(
        "eval", dataclass_types=[EvalConfig],
        help="measure a model on a labelled split: F1, per-label report, confusion matrix",
        description="Score a model on a split: accuracy and macro-F1 (multi-label: micro-F1 too, with per-label "
                    "thresholds tuned on the dev split and saved into the model's config), per-label "
                    "precision/recall/F1, and a confusion matrix as text and PNG; writes report.json and "
                    "report.txt into --out.",
        epilog=f"example: emotion-machine eval --model data/models/v1 --data {DEFAULT_DATA_HINT} --group ekman")
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.set_defaults(func=run_eval)


def _models_dir(args: argparse.Namespace) -> str:
    """The option, else EMOTION_MODELS_DIR (a broken .env must not stop training into the default folder)."""
    if args.models_dir:
        return str(args.models_dir)
    try:
        return str(settings().models_dir)
    except CommandError:
        return "data/models"


def run_train(args: argparse.Namespace) -> int:
    from bot import render
    from model.classifier import ModelLoadError
    from model.data import DataError
    from model.registry import RegistryError
    from model.train import TrainConfig, TrainError, run

    if args.deploy and args.output:
        raise CommandError(DEPLOY_WITH_OUTPUT, EXIT_USAGE)
    config = from_namespace(TrainConfig, args, models_dir=_models_dir(args))
    print(f"training a {'multi' if config.multi_label else 'single'}-label {config.labels} model from "
          f"{config.base} on {('sources ' + config.sources) if config.sources else config.data} "
          f"(loss {config.resolved_loss()})", file=sys.stderr)
    progress = render.TerminalProgress()
    try:
        result = run(config, on_event=progress)
    except TrainError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    except (DataError, ModelLoadError, RegistryError) as exc:
        raise CommandError(str(exc)) from None
    finally:
        progress.close()

    meta = result.metadata
    print(f"saved {result.version + ' ' if result.version else ''}{result.path}"
          + ("; now current" if result.deployed else ""))
    print(f"  {result.train_examples} training rows, {meta['metrics']['steps']} steps, train loss "
          f"{result.train_loss:.4f}, training {meta['training_seconds']:.0f} s ({result.seconds:.0f} s in all) on "
          f"{meta['hardware']['gpu'] or meta['hardware']['cpu']}")
    curve = meta["metrics"].get("dev_curve")
    if curve:
        points = "  ".join(f"{c['epoch']:g}:{c['macro_f1']:.3f}" for c in curve)
        print(f"  dev macro-F1 by epoch: {points}; kept step {meta['metrics']['best_step']} "
              f"(epoch {meta['metrics']['best_epoch']:g})")
    if result.dev:
        d = result.dev
        micro = f"   micro-F1 {d['micro_f1']:.3f}" if "micro_f1" in d else ""
        print(f"  dev ({d['examples']} rows): macro-F1 {d['macro_f1']:.3f}{micro}   accuracy {d['accuracy']:.3f}"
              + ("   (thresholds tuned here)" if result.thresholds else ""))
    print(f"  use it: EMOTION_MODEL={result.path}" + (
        f"   or: emotion-machine models rollback {result.version}" if result.version and not result.deployed else ""))
    return EXIT_OK


def run_soup(args: argparse.Namespace) -> int:
    from model.registry import RegistryError
    from model.soup import SoupError, average
    from model.train import TrainError

    if args.deploy and args.output:
        raise CommandError(DEPLOY_WITH_OUTPUT, EXIT_USAGE)
    try:
        result = average(args.models, output=args.output, models_dir=_models_dir(args), deploy=args.deploy)
    except (SoupError, TrainError) as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    except (RegistryError, OSError) as exc:
        raise CommandError(str(exc)) from None
    print(f"saved {result['version'] + ' ' if result['version'] else ''}{result['path']}: the mean of "
          f"{len(args.models)} models" + ("; now current" if result["deployed"] else ""))
    print(f"  next: emotion-machine eval --model {result['path']} --data <dev/test source> (tunes its thresholds)")
    return EXIT_OK


def run_eval(args: argparse.Namespace) -> int:
    from model.classifier import ModelLoadError
    from model.data import DataError
    from model.evaluate import EvalConfig, EvalError, run, summary_lines

    try:
        report = run(from_namespace(EvalConfig, args))
    except EvalError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    except (DataError, ModelLoadError) as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "confusion"}, indent=2))
        return EXIT_OK
    print("\n".join(summary_lines(report)))
    files = "report.json, report.txt" + ("" if "sources" in report else ", confusion.png, confusion.txt")
    print(f"  report: {Path(report['files']['report_txt']).parent}/ ({files})")
    return EXIT_OK
