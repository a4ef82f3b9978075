"""Do corrections teach? The bot's real correction → /retrain path, measured on a community it has not seen.

Start from a GoEmotions-trained model (``--model DIR``, made by ``emotion-machine train``). The
"community" is ``../shared/data/dair-emotion`` (tweets; its six labels are GoEmotions names, mapped
into the model's label set by :func:`model.labels.translate`). For each N in ``--sizes`` and each
strategy, N community rows are stored as corrections through the store API (a fresh SQLite
database, ``Store.add_correction``, one message and one reader each), and the same fine-tune
``/retrain`` runs is started through :class:`bot.services.retraining.RetrainingService` (its
knobs from the settings' defaults, in its child process, with its gate and the replay the base
records). Then the model the bot would serve is measured, and so is the candidate even when the
gate kept the old model:

- (i) accuracy (top label) and macro-F1 on the community's ``val.txt`` (2,000 tweets);
- (ii) macro-F1 on GoEmotions' test split, as ``emotion-machine eval --thresholds stored`` computes it.

Strategies: ``random`` (N rows of the community's training file, nested: the 50 hold the 25) and
``uncertainty`` (the N texts of a pool of ``--pool`` unlabelled community texts the base was least
sure of, by top probability as ``/review`` orders them, then labelled). Targets (issue #13): at
N = 200 random, community accuracy at least 15 points above the base and GoEmotions test macro-F1
at most 1 point below it; uncertainty at least as good as random at every N.

    python benchmarks/learning.py --model data/runs/minilm-go28-2ep

Prints a table, writes ``benchmarks/results/learning.json`` and the learning curve as a PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from benchmarks.common import RESULTS, write_results  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a GoEmotions-trained model folder (emotion-machine train)")
    p.add_argument("--community", default=str(SHARED / "dair-emotion"), help="dair-emotion folder (train.txt, val.txt)")
    p.add_argument("--goemotions", default=str(SHARED / "goemotions"), help="GoEmotions folder (its test split)")
    p.add_argument("--sizes", default="25,50,100,200,400", help="corrections per run, comma-separated")
    p.add_argument("--strategies", default="random,uncertainty", help="random, uncertainty (comma-separated)")
    p.add_argument("--pool", type=int, default=2000, help="unlabelled community texts uncertainty chooses from")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2,
                   help="torch threads of the training process (the bot's default is 1; the figures do not depend "
                        "on it, only the time)")
    p.add_argument("--seed", type=int, default=0, help="which community rows are drawn")
    p.add_argument("--mix", type=float, default=None,
                   help="EMOTION_FINETUNE_MIX for the runs (default: the bot's default, 0.5)")
    p.add_argument("--scope", choices=("base", "server"), default="base",
                   help="base: the owner's fine-tune of the whole model (the corrections' server shares them); "
                        "server: a server's own /retrain, its head on the frozen base (docs/tenancy.md)")
    p.add_argument("--val-limit", type=int, default=0, help="> 0: only the first N rows of val.txt (smoke runs)")
    p.add_argument("--test-limit", type=int, default=0, help="> 0: only the first N GoEmotions test rows (smoke runs)")
    p.add_argument("--out", default=str(RESULTS / "learning.json"))
    p.add_argument("--png", default=str(RESULTS / "learning.png"))
    return p.parse_args(argv)


# --------------------------------------------------------------------------- data


def read_community(path: Path) -> list[tuple[str, str]]:
    """``text;label`` lines (the label after the last semicolon)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text, sep, label = line.rpartition(";")
        if sep and text.strip():
            rows.append((text.strip(), label.strip()))
    return rows


def into_model_labels(rows: list[tuple[str, str]], labels: tuple[str, ...]) -> list[tuple[str, str]]:
    """The rows whose label the model has (itself or mapped); the community's labels all map for GoEmotions."""
    from model.labels import translate

    out = [(text, translate(label, labels)) for text, label in rows]
    dropped = sum(label is None for _, label in out)
    if dropped:
        print(f"note: {dropped} community rows have no equivalent label in the model and are left out")
    return [(text, label) for text, label in out if label is not None]


# --------------------------------------------------------------------------- measuring a model


@dataclass
class Scores:
    community_accuracy: float
    community_macro_f1: float
    goemotions_macro_f1: float


def measure(model_dir: str, val: list[tuple[str, str]], args: argparse.Namespace, workdir: Path) -> Scores:
    """(i) the community's val set, top label; (ii) GoEmotions test, the way ``eval`` scores it."""
    from model.classifier import Classifier
    from model.eval_config import EvalConfig
    from model.evaluate import run as evaluate
    from model.metrics import accuracy_macro_f1

    clf = Classifier.load(model_dir, device="cpu", quantize="none")
    predicted = [p.label for p in clf.predict([t for t, _ in val], batch_size=64)]
    community = accuracy_macro_f1([lb for _, lb in val], predicted)
    del clf
    report = evaluate(EvalConfig(model=model_dir, data=args.goemotions, split="test", thresholds="stored",
                                 save_thresholds=False, limit=args.test_limit, torch_threads=args.threads,
                                 out=str(workdir / f"eval-{time.monotonic_ns()}")))
    return Scores(round(community["accuracy"], 4), round(community["macro_f1"], 4),
                  round(float(report["metrics"]["macro_f1"]), 4))


def least_sure(model_dir: str, pool: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """The ``n`` pool rows whose top probability is lowest under the base (the order /review offers them in)."""
    from model.classifier import Classifier

    clf = Classifier.load(model_dir, device="cpu", quantize="none")
    scores = [p.score for p in clf.predict([t for t, _ in pool], batch_size=64)]
    order = sorted(range(len(pool)), key=scores.__getitem__)
    return [pool[i] for i in order[:n]]


def materialize(base: str, head_path: str, out: Path) -> str:
    """The base with a server's head put in, saved as a whole model folder, so ``eval`` can score it as served."""
    import json

    from model.classifier import Classifier
    from model.heads import Head, load_into
    from model.registry import META_FILE

    clf = Classifier.load(base, device="cpu", quantize="none")
    load_into(clf.model, Head.load(head_path))
    meta = json.loads((Path(head_path) / META_FILE).read_text(encoding="utf-8"))
    if meta.get("label_thresholds"):
        clf.model.config.label_thresholds = meta["label_thresholds"]
    clf.model.save_pretrained(out)
    clf.tokenizer.save_pretrained(out)
    return str(out)


# --------------------------------------------------------------------------- the bot's path


async def retrain_on(corrections: list[tuple[str, str]], labels: tuple[str, ...], args: argparse.Namespace,
                     workdir: Path):
    """Store ``corrections`` as Discord corrections, then run /retrain's flow; returns its outcome."""
    from bot.services.common import Actor
    from bot.services.retraining import RetrainingService, TrainingOverrides
    from bot.settings import Settings
    from bot.store import Correction, Store

    settings = replace(Settings(), model=str(Path(args.model).resolve()), models_dir=workdir / "models",
                       db_path=workdir / "emotion.db", training_threads=args.threads, finetune_mix=args.mix)
    store = await Store.open(settings.db_path, labels=labels)
    try:
        for i, (text, label) in enumerate(corrections, start=1):
            await store.add_correction(Correction(
                text=text, label=label, guild_id=1, channel_id=2, message_id=10_000 + i, author_id=100_000 + i,
                corrector_id=7, source="discord"))
        server = args.scope == "server"
        if not server:  # the shared base learns only from servers that share their corrections
            await store.update_guild_settings(1, share=True)
        service = RetrainingService(settings, store)
        run = await service.prepare(Actor.operator("benchmark"), guild_id=1 if server else None,
                                    overrides=TrainingOverrides(save_refused=True))
        run.start()
        async for _ in run.events():
            pass
        return await run.finish()
    finally:
        await store.close()


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from model.classifier import Classifier

    started = time.monotonic()
    model_dir = str(Path(args.model).resolve())
    labels = Classifier.load(model_dir, device="cpu", quantize="none").labels
    community = Path(args.community)
    train_rows = into_model_labels(read_community(community / "train.txt"), labels)
    val = into_model_labels(read_community(community / "val.txt"), labels)
    if args.val_limit > 0:
        val = val[:args.val_limit]
    sizes = [int(n) for n in args.sizes.split(",")]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]

    rng = random.Random(args.seed)
    shuffled = train_rows[:]
    rng.shuffle(shuffled)
    pool, drawn = shuffled[:args.pool], shuffled[args.pool:]  # uncertainty sees only the pool's texts

    with tempfile.TemporaryDirectory(prefix="emotion-learning-") as tmp:
        workdir = Path(tmp)
        print(f"base {model_dir}: measuring on {len(val)} community val rows and GoEmotions test…", flush=True)
        base = measure(model_dir, val, args, workdir)
        print(f"  {base}", flush=True)
        chosen = {"random": drawn, "uncertainty": least_sure(model_dir, pool, max(sizes))}
        rows = [{"strategy": "base", "N": 0, "deployed": "-", **vars(base), "served_accuracy": base.community_accuracy,
                 "served_goemotions_macro_f1": base.goemotions_macro_f1, "seconds": 0.0, "gate": ""}]
        for strategy in strategies:
            for n in sizes:
                t0 = time.monotonic()
                run_dir = workdir / f"{strategy}-{n}"
                run_dir.mkdir()
                outcome = asyncio.run(retrain_on(chosen[strategy][:n], labels, args, run_dir))
                result = outcome.result
                if result is None or result.path is None:
                    raise SystemExit(f"{strategy} N={n}: the retrain ended {outcome.status}: {outcome.error}")
                folder = result.path if args.scope == "base" else materialize(model_dir, result.path, run_dir / "m")
                after = measure(folder, val, args, workdir)
                served = after if result.deployed else base
                rows.append({"strategy": strategy, "N": n, "deployed": "yes" if result.deployed else "no",
                             **vars(after), "served_accuracy": served.community_accuracy,
                             "served_goemotions_macro_f1": served.goemotions_macro_f1,
                             "seconds": round(time.monotonic() - t0, 1), "gate": result.reason})
                print(f"  {strategy} N={n}: {after} deployed={result.deployed} ({rows[-1]['seconds']} s)", flush=True)

    targets = check_targets(rows)
    table = [{k: v for k, v in row.items() if k != "gate"} for row in rows]
    write_results("learning", table, {"model": model_dir, "scope": args.scope, "community": str(community),
                                      "val_rows": len(val),
                                      "pool": args.pool, "seed": args.seed, "mix": args.mix, "targets": targets,
                                      "gate": [{"strategy": r["strategy"], "N": r["N"], "reason": r["gate"]}
                                               for r in rows[1:]],
                                      "seconds": round(time.monotonic() - started, 1)}, Path(args.out))
    plot(rows, Path(args.png))
    for name, (ok, detail) in targets.items():
        print(f"{'PASS' if ok else 'MISS'} {name}: {detail}")
    return 0


def check_targets(rows: list[dict]) -> dict[str, tuple[bool, str]]:
    """The issue's targets, on the candidates' figures (what the corrections taught)."""
    base = rows[0]
    by = {(r["strategy"], r["N"]): r for r in rows[1:]}
    out: dict[str, tuple[bool, str]] = {}
    r200 = by.get(("random", 200))
    if r200:
        gain = (r200["community_accuracy"] - base["community_accuracy"]) * 100
        out["community accuracy +15 points at N=200 (random)"] = (gain >= 15, f"{gain:+.1f} points")
        drop = (base["goemotions_macro_f1"] - r200["goemotions_macro_f1"]) * 100
        out["GoEmotions test macro-F1 at most 1 point lower at N=200 (random)"] = (drop <= 1, f"{-drop:+.1f} points")
    pairs = [(n, by[("random", n)], by[("uncertainty", n)])
             for (strategy, n) in by if strategy == "random" and ("uncertainty", n) in by]
    if pairs:
        worse = [n for n, r, u in pairs if u["community_accuracy"] < r["community_accuracy"]]
        out["uncertainty at least as good as random at every N (community accuracy)"] = (
            not worse, "worse at N=" + ", ".join(map(str, worse)) if worse else "at every N")
    return out


def plot(rows: list[dict], path: Path) -> None:
    """Community accuracy and GoEmotions test macro-F1 against N, one line per strategy, the base dashed."""
    import matplotlib.pyplot as plt

    base = rows[0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "community_accuracy", "community (dair-emotion val) accuracy"),
                           (axes[1], "goemotions_macro_f1", "GoEmotions test macro-F1")):
        for strategy in dict.fromkeys(r["strategy"] for r in rows[1:]):
            points = [(r["N"], r[key]) for r in rows[1:] if r["strategy"] == strategy]
            ax.plot([n for n, _ in points], [v for _, v in points], marker="o", label=strategy)
        ax.axhline(base[key], linestyle="--", color="grey", label="base")
        ax.set_xscale("log")
        ax.set_xlabel("corrections (N)")
        ax.set_title(title)
        ax.legend()
    fig.suptitle("Corrections through /retrain, starting from the GoEmotions model")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
