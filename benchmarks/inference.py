"""Inference throughput: HF ``pipeline`` one message at a time vs the micro-batching worker.

    python benchmarks/inference.py [--messages 2000] [--threads 2] [--data ../shared/data/goemotions]

(a) ``pipeline("text-classification")`` called once per message; (b) the worker under
concurrent load (msg/s, p50/p99 latency from submit to answer); (c) event-loop lag p99 while
(b) runs; and b/a. On a CUDA machine the same script measures the GPU (fp16).
Targets on the 2-core CPU machines: b/a ≥ 4, worker ≥ 400 msg/s, loop lag p99 ≤ 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DEFAULT_DATA, LoopLag, chat_texts, minilm_folder, percentile, write_results  # noqa: E402


def bench_pipeline(folder: Path, texts: list[str], device: str) -> dict:
    from transformers import pipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = pipeline("text-classification", model=str(folder), device=0 if device.startswith("cuda") else -1,
                       truncation=True, max_length=64)
    for t in texts[:20]:
        clf(t)
    start = time.perf_counter()
    for t in texts:
        clf(t)
    seconds = time.perf_counter() - start
    return {"what": "(a) HF pipeline, one message at a time", "msg/s": len(texts) / seconds}


async def bench_worker(classifier, texts: list[str], *, threads: int, concurrency: int, label: str) -> dict:
    from model.worker import InferenceWorker

    worker = InferenceWorker(classifier, max_batch=32, max_wait=0.002, torch_threads=threads).start()
    await worker.classify_many(texts[:64])  # warm up
    latencies: list[float] = []
    queue = list(texts)

    async def client() -> None:
        while queue:
            text = queue.pop()
            t0 = time.perf_counter()
            await worker.classify(text)
            latencies.append(time.perf_counter() - t0)

    with LoopLag() as lag:
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    await worker.close()
    return {"what": label, "msg/s": len(texts) / seconds, "p50 ms": percentile(latencies, 50) * 1000,
            "p99 ms": percentile(latencies, 99) * 1000, "loop lag p99 ms": lag.p(99),
            "mean batch": worker.processed / max(1, worker.batches)}


def agreement(a, b, texts: list[str]) -> float:
    pa, pb = a.predict(texts), b.predict(texts)
    return sum(x.label == y.label for x, y in zip(pa, pb)) / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages for the worker runs")
    parser.add_argument("--pipeline-messages", type=int, default=400, help="messages for the pipeline run")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="torch threads")
    parser.add_argument("--concurrency", type=int, default=256, help="callers awaiting classify at once")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="GoEmotions folder for realistic texts")
    parser.add_argument("--out", type=Path, help="JSON output (default benchmarks/results/inference.json)")
    args = parser.parse_args()

    import torch

    from model.classifier import Classifier, resolve_device
    from model.labels import SEED13

    torch.set_num_threads(args.threads)
    device = str(resolve_device("auto"))
    texts, source = chat_texts(max(args.messages, args.pipeline_messages), args.data)
    with tempfile.TemporaryDirectory() as tmp:
        folder, weights = minilm_folder(Path(tmp) / "minilm", SEED13)
        print(f"model: {weights}; texts: {source}; device: {device}; threads: {args.threads}\n")
        rows = [bench_pipeline(folder, texts[: args.pipeline_messages], device)]
        fp32 = Classifier.load(folder, device=device, quantize="none")
        runs = [(fp32, "(b) worker, fp16" if device.startswith("cuda") else "(b) worker, fp32")]
        if not device.startswith("cuda"):
            int8 = Classifier.load(folder, device=device, quantize="int8")
            runs.append((int8, "(b) worker, int8 (default on CPU)"))
        for clf, label in runs:
            rows.append(asyncio.run(bench_worker(clf, texts[: args.messages], threads=args.threads,
                                                 concurrency=args.concurrency, label=label)))
        extra = {"model": weights, "texts": source, "device": device, "threads": args.threads,
                 "concurrency": args.concurrency}
        if not device.startswith("cuda"):
            extra["int8_top1_agreement_with_fp32"] = agreement(fp32, int8, texts[:500])
    best = max(rows[1:], key=lambda r: r["msg/s"])
    for row in rows[1:]:
        row["ratio b/a"] = row["msg/s"] / rows[0]["msg/s"]
    extra["targets"] = {"ratio >= 4": best["ratio b/a"] >= 4, "worker >= 400 msg/s": best["msg/s"] >= 400,
                        "loop lag p99 <= 10 ms": best["loop lag p99 ms"] <= 10}
    write_results("inference", rows, extra, args.out)
    print(f"targets: {extra['targets']}")
    if "int8_top1_agreement_with_fp32" in extra:
        print(f"int8 vs fp32 top-1 agreement on 500 texts: {extra['int8_top1_agreement_with_fp32']:.1%}")


if __name__ == "__main__":
    main()
