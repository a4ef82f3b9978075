"""How fast /mood can be with a big predictions table.

Fills a temporary database through the Store's own batch path (``record_prediction`` +
``flush``) with realistic rows (one server, 20 channels, 500 authors, the seed model's 13
labels with a skewed mix, spread over 90 days, Zipf-like activity), then times
``Store.emotion_counts`` for the server (14 and 90 days), one channel, one author, and the
chart rendering. Prints a table, writes ``benchmarks/results/mood.json`` and saves the
90-day server chart as ``benchmarks/results/mood_1m.png``.

For every query it also reads SQLite's query plan and says when no index (or no covering
index) serves it, with the ``CREATE INDEX`` that would; ``--try-indexes`` creates those on
the temporary database and times again. ``bot/store.py`` and the migrations are not touched.

    python benchmarks/mood.py               # 1,000,000 rows (about a minute on 2 cores)
    python benchmarks/mood.py --rows 50000  # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.charts import mood_chart  # noqa: E402
from bot.services.mood import day_range  # noqa: E402
from bot.store import PredictionRow, Store, emotion_counts_query  # noqa: E402
from model.labels import SEED13  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
GUILD = 1_000_000_000_000_000_001
CHANNELS = [2_000_000_000_000_000_000 + i for i in range(20)]
AUTHORS = [3_000_000_000_000_000_000 + i for i in range(500)]
# A plausible mix: mostly neutral and happy chat, a long tail of the rest.
LABEL_WEIGHTS = {
    "neutral": 30, "happiness": 18, "sadness": 8, "anger": 7, "love": 7, "surprise": 6,
    "confusion": 6, "fear": 4, "sarcasm": 4, "disgust": 3, "desire": 3, "shame": 2, "guilt": 2,
}
assert set(LABEL_WEIGHTS) == set(SEED13)
SPAN_DAYS = 90
CHUNK = 50_000


def zipf_weights(n: int, s: float = 1.0) -> list[float]:
    return [1 / (i + 1) ** s for i in range(n)]


def generate(rows: int, now: float, seed: int = 7) -> list[PredictionRow]:
    rng = random.Random(seed)
    channels = rng.choices(CHANNELS, weights=zipf_weights(len(CHANNELS)), k=rows)
    authors = rng.choices(AUTHORS, weights=zipf_weights(len(AUTHORS), 0.9), k=rows)
    labels = rng.choices(list(LABEL_WEIGHTS), weights=list(LABEL_WEIGHTS.values()), k=rows)
    start = now - SPAN_DAYS * 86_400
    times = sorted(start + rng.random() * (now - start - 1) for _ in range(rows))
    return [
        PredictionRow(guild_id=GUILD, channel_id=c, message_id=4_000_000_000_000_000_000 + i,
                      author_id=a, label=lb, probability=0.5 + rng.random() / 2,
                      model_version="base", created_at=t)
        for i, (c, a, lb, t) in enumerate(zip(channels, authors, labels, times, strict=True))
    ]


async def fill(store: Store, rows: list[PredictionRow]) -> float:
    began = time.perf_counter()
    for i in range(0, len(rows), CHUNK):
        for row in rows[i:i + CHUNK]:
            await store.record_prediction(row)
        await store.flush()
    return time.perf_counter() - began


def query_plan(path: str, **kwargs) -> list[str]:
    sql, params = emotion_counts_query(**kwargs)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


def index_advice(plan: list[str], kwargs: dict) -> str | None:
    """The CREATE INDEX that would answer this query from the index alone, if none does now.

    Leading with the filter column and the UTC day number (spelled as the store's query
    spells it) lets SQLite read the rows of a range already grouped by day; label, created_at
    and guild_id complete the covering set.
    """
    if "COVERING INDEX" in " | ".join(plan):
        return None
    column = ("channel_id" if kwargs.get("channel_id") is not None
              else "author_id" if kwargs.get("author_id") is not None else "guild_id")
    extra = "" if column == "guild_id" else ", guild_id"
    name = column.removesuffix("_id")
    return (f"CREATE INDEX predictions_{name}_day_label ON predictions"
            f"({column}, CAST(created_at / 86400 AS INTEGER), label, created_at{extra});")


async def timed(coro_factory, repeat: int) -> tuple[list[float], object]:
    result = None
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        result = await coro_factory()
        times.append(time.perf_counter() - began)
    return times, result


async def run(args: argparse.Namespace) -> dict:
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="mood-bench-") as tmp:
        path = os.path.join(tmp, "bench.db")
        print(f"generating {args.rows:,} rows ...", flush=True)
        rows = generate(args.rows, now)
        store = await Store.open(path, batch_size=CHUNK, max_buffer=2 * CHUNK, flush_interval=3600)
        try:
            print("inserting through Store.record_prediction + flush ...", flush=True)
            insert_s = await fill(store, rows)
            top_channel, top_author = CHANNELS[0], AUTHORS[0]
            del rows
            since14, days14 = day_range(14, now)
            since90, days90 = day_range(90, now)
            cases = {
                "server, 14 days": dict(guild_id=GUILD, since=since14),
                "server, 90 days": dict(guild_id=GUILD, since=since90),
                "busiest channel, 14 days": dict(guild_id=GUILD, channel_id=top_channel, since=since14),
                "busiest channel, 90 days": dict(guild_id=GUILD, channel_id=top_channel, since=since90),
                "busiest author, 90 days": dict(guild_id=GUILD, author_id=top_author, since=since90),
            }
            results: dict = {"rows": args.rows, "insert_s": insert_s, "insert_rows_per_s": args.rows / insert_s,
                             "queries": {}, "charts": {}, "with_suggested_indexes": {}}
            chart_inputs = {}
            for name, kw in cases.items():
                times, counts = await timed(lambda kw=kw: store.emotion_counts(**kw), args.repeat)
                full_kw = {"channel_id": None, "author_id": None, "until": None, **kw}
                plan = query_plan(path, **full_kw)
                matched = sum(n for _, _, n in counts)
                results["queries"][name] = {
                    "median_ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000,
                    "rows_counted": matched, "groups": len(counts), "plan": plan,
                    "index_advice": index_advice(plan, full_kw),
                }
                chart_inputs[name] = counts

            for name, counts, days in (("chart, 14 days", chart_inputs["server, 14 days"], days14),
                                       ("chart, 90 days", chart_inputs["server, 90 days"], days90)):
                times, png = await timed(
                    lambda c=counts, d=days: asyncio.to_thread(
                        mood_chart, c, title=f"Mood in Benchmark, the last {len(d)} days", days=d),
                    args.repeat)
                results["charts"][name] = {"median_ms": statistics.median(times) * 1000,
                                           "min_ms": min(times) * 1000, "png_bytes": len(png)}
                if name == "chart, 90 days":
                    RESULTS.mkdir(parents=True, exist_ok=True)
                    (RESULTS / "mood_1m.png").write_bytes(png)

            if args.try_indexes:
                advice = sorted({q["index_advice"] for q in results["queries"].values() if q["index_advice"]})
                with sqlite3.connect(path) as db:
                    for statement in advice:
                        db.execute(statement.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS"))
                    db.execute("ANALYZE")
                for name, kw in cases.items():
                    if results["queries"][name]["index_advice"] is None:
                        continue
                    times, _ = await timed(lambda kw=kw: store.emotion_counts(**kw), args.repeat)
                    full_kw = {"channel_id": None, "author_id": None, "until": None, **kw}
                    results["with_suggested_indexes"][name] = {
                        "median_ms": statistics.median(times) * 1000,
                        "plan": query_plan(path, **full_kw)}
        finally:
            await store.close()
    return results


def print_table(results: dict) -> None:
    print()
    print(f"{results['rows']:,} predictions inserted in {results['insert_s']:.1f} s "
          f"({results['insert_rows_per_s']:,.0f} rows/s through Store.record_prediction + flush)")
    print()
    print(f"| {'what':<26} | {'median ms':>9} | {'min ms':>7} | {'rows counted':>12} | index used")
    print(f"|{'-' * 28}|{'-' * 11}|{'-' * 9}|{'-' * 14}|{'-' * 40}")
    for name, q in results["queries"].items():
        plan = "; ".join(p.replace("SEARCH predictions USING ", "") for p in q["plan"] if "predictions" in p)
        print(f"| {name:<26} | {q['median_ms']:>9.1f} | {q['min_ms']:>7.1f} | {q['rows_counted']:>12,} | {plan}")
    for name, c in results["charts"].items():
        print(f"| {name:<26} | {c['median_ms']:>9.1f} | {c['min_ms']:>7.1f} | {'':>12} "
              f"| (render, {c['png_bytes']:,} B PNG)")
    advice = {q["index_advice"] for q in results["queries"].values() if q["index_advice"]}
    if advice:
        print("\nNot served by a covering index (the query reads the table for label/guild_id):")
        for name, q in results["queries"].items():
            if q["index_advice"]:
                print(f"  {name}: {q['index_advice']}")
    if results["with_suggested_indexes"]:
        print("\nWith those indexes (created on the temporary database only):")
        for name, q in results["with_suggested_indexes"].items():
            print(f"  {name}: {q['median_ms']:.1f} ms  ({'; '.join(q['plan'])})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="predictions to insert (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each query/render (median reported)")
    parser.add_argument("--try-indexes", action="store_true",
                        help="create the suggested indexes on the temporary database and time again")
    parser.add_argument("--json", type=Path, default=RESULTS / "mood.json", help="where to write the results")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be at least 1")
    results = asyncio.run(run(args))
    print_table(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.json} and {RESULTS / 'mood_1m.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
