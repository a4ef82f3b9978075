"""Benchmark bot.store with the bot's access pattern.

* predictions: many asyncio tasks each calling ``record_prediction`` once per
  "message" (burst: as fast as possible; paced: a steady message rate);
* corrections: concurrent ``add_correction`` calls, each committed durably;
* summaries: ``emotion_counts`` & co. on a database of ``--query-rows`` predictions.

While writing, a ticker task sleeps 1 ms in a loop and records how late it wakes
up: that overshoot is the event-loop lag the bot's other work would suffer.

Usage: python benchmarks/store.py [--rows N] [--db DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.store import Correction, PredictionRow, Store  # noqa: E402

log = logging.getLogger(__name__)

LABELS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
DAY = 86_400.0
TICK = 0.001


class LagMeter:
    """Measure event-loop responsiveness: how late a 1 ms sleep wakes up."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(TICK)
            self.samples.append(max(0.0, loop.time() - start - TICK))

    def __enter__(self) -> LagMeter:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def summary(self) -> dict[str, float]:
        s = sorted(self.samples) or [0.0]

        def pct(p: float) -> float:
            return s[min(len(s) - 1, int(p / 100 * len(s)))] * 1000

        return {"lag_p50_ms": pct(50), "lag_p99_ms": pct(99), "lag_max_ms": s[-1] * 1000,
                "lag_samples": len(self.samples)}


def prediction(i: int, now: float) -> PredictionRow:
    return PredictionRow(guild_id=1 + i % 3, channel_id=100 + i % 40, message_id=10**15 + i,
                         author_id=1000 + i % 500, label=LABELS[i % len(LABELS)],
                         probability=0.5 + (i % 50) / 100, model_version="bench", created_at=now)


async def bench_predictions_burst(path: Path, rows: int, concurrency: int) -> dict[str, Any]:
    """Producers record as fast as the loop lets them (yielding after every message)."""
    store = await Store.open(path)
    now = time.time()

    async def producer(k: int) -> None:
        for i in range(k, rows, concurrency):
            await store.record_prediction(prediction(i, now))
            await asyncio.sleep(0)  # a message handler yields to the loop

    with LagMeter() as lag:
        start = time.perf_counter()
        await asyncio.gather(*(producer(k) for k in range(concurrency)))
        recorded = time.perf_counter() - start
        await store.flush()
        elapsed = time.perf_counter() - start
    stored = (await store.stats())["predictions"]
    await store.close()
    assert stored == rows, (stored, rows)
    return {"rows": rows, "concurrency": concurrency, "seconds": elapsed,
            "rows_per_s": rows / elapsed, "record_seconds": recorded, **lag.summary()}


async def bench_predictions_paced(path: Path, rate: int, seconds: float, concurrency: int) -> dict[str, Any]:
    """A steady message rate: isolates the lag caused by the store's own work."""
    store = await Store.open(path)
    now = time.time()
    per_task_interval = concurrency / rate
    total = int(rate * seconds)
    counter = iter(range(2 * 10**6, 2 * 10**6 + total))

    async def producer() -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        for i in counter:
            await store.record_prediction(prediction(i, now))
            next_at += per_task_interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    with LagMeter() as lag:
        start = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(concurrency)))
        await store.flush()
        elapsed = time.perf_counter() - start
    await store.close()
    return {"rows": total, "target_rate": rate, "seconds": elapsed, "rows_per_s": total / elapsed,
            **lag.summary()}


async def bench_corrections(path: Path, rows: int, concurrency: int) -> dict[str, Any]:
    """Every correction is its own durable transaction, as in the bot."""
    store = await Store.open(path, labels=LABELS)

    async def corrector(k: int) -> None:
        for i in range(k, rows, concurrency):
            await store.add_correction(Correction(
                text=f"message {i} 😀 " + "x" * (i % 200), label=LABELS[i % len(LABELS)],
                guild_id=1, channel_id=100, message_id=i, author_id=1000 + i % 50,
                corrector_id=2000 + i % 7, predicted_label="neutral", model_version="bench"))

    with LagMeter() as lag:
        start = time.perf_counter()
        await asyncio.gather(*(corrector(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - start
    assert await store.count_corrections() == rows
    await store.close()
    return {"rows": rows, "concurrency": concurrency, "seconds": elapsed,
            "rows_per_s": rows / elapsed, **lag.summary()}


def bulk_fill(path: Path, rows: int, now: float) -> float:
    """Fill a database with ``rows`` predictions over 30 days (direct, for setup speed)."""
    rng = random.Random(42)
    start = time.perf_counter()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA synchronous = OFF")
    con.execute("BEGIN")
    chunk = 100_000
    for base in range(0, rows, chunk):
        con.executemany(
            "INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ((10**12 + i, 1 if i % 10 else 2, 100 + rng.randrange(50), 1000 + rng.randrange(2000),
              LABELS[rng.randrange(len(LABELS))], rng.random(), "bench", now - rng.random() * 30 * DAY)
             for i in range(base, min(rows, base + chunk))),
        )
    con.execute("COMMIT")
    con.execute("ANALYZE")
    con.close()
    return time.perf_counter() - start


async def timed(coro_factory, repeat: int = 3) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = await coro_factory()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


async def bench_queries(path: Path, rows: int) -> dict[str, Any]:
    store = await Store.open(path)
    await store.close()  # schema only
    now = time.time()
    fill_s = bulk_fill(path, rows, now)
    store = await Store.open(path)
    since = now - 30 * DAY
    out: dict[str, Any] = {"rows": rows, "fill_seconds": fill_s}
    with LagMeter() as lag:
        out["emotion_counts_guild_30d_ms"], res = await timed(
            lambda: store.emotion_counts(guild_id=1, since=since))
        out["emotion_counts_guild_rows"] = len(res)
        out["emotion_counts_guild_7d_ms"], _ = await timed(
            lambda: store.emotion_counts(guild_id=1, since=now - 7 * DAY))
        out["emotion_counts_channel_30d_ms"], _ = await timed(
            lambda: store.emotion_counts(guild_id=1, channel_id=120, since=since))
        out["emotion_counts_author_30d_ms"], _ = await timed(
            lambda: store.emotion_counts(guild_id=1, author_id=1500, since=since))
        out["label_counts_guild_ms"], _ = await timed(lambda: store.label_counts(guild_id=1))
        out["stats_ms"], _ = await timed(store.stats)
        start = time.perf_counter()
        out["retention_deleted"] = await store.delete_predictions_older_than(29, now=now)
        out["retention_ms"] = (time.perf_counter() - start) * 1000
    out.update(lag.summary())
    await store.close()
    return out


def table(results: dict[str, Any]) -> str:
    lines = [f"{'benchmark':<24}{'rows':>10}{'rows/s':>12}{'lag p50 ms':>12}{'lag p99 ms':>12}{'lag max ms':>12}"]
    for name in ("predictions_burst", "predictions_paced", "corrections"):
        r = results.get(name)
        if r:
            lines.append(f"{name:<24}{r['rows']:>10}{r['rows_per_s']:>12,.0f}{r['lag_p50_ms']:>12.2f}"
                         f"{r['lag_p99_ms']:>12.2f}{r['lag_max_ms']:>12.2f}")
    q = results.get("queries")
    if q:
        lines.append("")
        lines.append(f"queries on {q['rows']:,} predictions (median of 3; fill took {q['fill_seconds']:.1f} s)")
        for key, value in q.items():
            if key.endswith("_ms") and not key.startswith("lag"):
                lines.append(f"  {key[:-3]:<34}{value:>10.1f} ms")
        lines.append(f"  {'retention_deleted':<34}{q['retention_deleted']:>10}")
        lines.append(f"  {'loop lag during queries p99/max':<34}{q['lag_p99_ms']:>7.2f} / {q['lag_max_ms']:.2f} ms")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    if not args.db:
        with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
            return await run_all(args, Path(tmp))
    return await run_all(args, Path(args.db))


async def run_all(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    base.mkdir(parents=True, exist_ok=True)
    for name in ("predictions.sqlite3", "corrections.sqlite3", "queries.sqlite3"):
        for suffix in ("", "-wal", "-shm"):
            (base / (name + suffix)).unlink(missing_ok=True)
    results: dict[str, Any] = {
        "python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(), "cpus": os.cpu_count(),
        "db_dir": str(base) if args.db else "(temporary)",
    }
    results["predictions_burst"] = await bench_predictions_burst(
        base / "predictions.sqlite3", args.rows, args.concurrency)
    results["predictions_paced"] = await bench_predictions_paced(
        base / "predictions.sqlite3", args.rate, args.seconds, args.concurrency)
    results["corrections"] = await bench_corrections(
        base / "corrections.sqlite3", args.corrections, args.correction_concurrency)
    if args.query_rows:
        results["queries"] = await bench_queries(base / "queries.sqlite3", args.query_rows)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000, help="predictions in the burst run")
    parser.add_argument("--concurrency", type=int, default=100, help="concurrent prediction producers")
    parser.add_argument("--rate", type=int, default=5_000, help="messages/s in the paced run")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the paced run")
    parser.add_argument("--corrections", type=int, default=2_000, help="corrections to write")
    parser.add_argument("--correction-concurrency", type=int, default=20)
    parser.add_argument("--query-rows", type=int, default=1_000_000,
                        help="predictions in the summary-query database (0 skips it)")
    parser.add_argument("--db", help="directory for the benchmark databases (default: a temp dir)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "store.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    res = asyncio.run(main(args))
    print(table(res))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")
