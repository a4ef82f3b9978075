"""Beyond one process: PostgreSQL against SQLite, and two bot processes sharing one budget.

    python benchmarks/cluster.py [--rows 1000000] [--rate 200] [--seconds 30] [--budget 40] [--out FILE]

Part 1, the store (one run, the same rows for both backends): ``benchmarks/mood.py``'s realistic rows
(one server, 20 channels, 500 authors, 13 labels, 90 days) written through ``Store.record_prediction``
+ ``flush`` (the bot's own path), rows/s; then ``/mood``'s query (``emotion_counts``) for the server
over 14 and 90 days, one channel and one author over 90 days, median of 5; on PostgreSQL also after
``VACUUM ANALYZE`` (what autovacuum does after a bulk write; until then no scan is index-only). PostgreSQL is a real
server started for the run (``tests/helpers/postgres.py``: initdb in a temporary folder, fsync on).

Part 2, the cluster: ``emotion-machine cluster``'s supervisor (:class:`bot.cluster.Cluster`) runs two real
bot processes (``run --shards 0-0`` and ``--shards 1-1`` of 2) against the test fake Discord (20 servers
spread over the two shards, one channel each) and one PostgreSQL database. The fake pushes ``--rate``
messages/s round-robin over the servers for ``--seconds``. Reported: reactions/s (the whole bot, in
1-second windows: mean and max) against ``--budget`` (EMOTION_GLOBAL_REQUESTS_PER_S, the bot-wide budget
both processes lease from), the delay from push to reaction of those that landed (p50/p99), what
was dropped, each process's event-loop lag p99 (a 1 ms ticker inside the bot), and whether every
message was recorded (prediction rows in PostgreSQL = messages pushed). The bots serve a tiny model
(2 layers, hidden 32): this part measures the coordination, not inference (``benchmarks/inference.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import percentile, write_results  # noqa: E402
from benchmarks.mood import AUTHORS, CHANNELS, CHUNK, GUILD, fill, generate  # noqa: E402
from bot.services.mood import day_range  # noqa: E402
from bot.store import open_store  # noqa: E402
from tests.helpers import postgres  # noqa: E402

# The child: `emotion-machine run` pointed at the fake Discord, with a loop-lag ticker whose p99 is written at exit.
LAUNCH = textwrap.dedent("""
    import asyncio, json, sys, time
    import discord.gateway, discord.http, yarl
    discord.http.Route.BASE = sys.argv[1]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sys.argv[2])
    import bot.cli.run as run
    serve, out = run._serve, sys.argv[3]

    async def measured(bot, token):
        lags = []
        async def tick():
            while True:
                t = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append(time.perf_counter() - t - 0.001)
        ticker = asyncio.get_running_loop().create_task(tick())
        try:
            return await serve(bot, token)
        finally:
            ticker.cancel()
            lags.sort()
            stats = bot.pacer.stats
            json.dump({"lag_p99_ms": lags[int(0.99 * (len(lags) - 1))] * 1000 if lags else None,
                       "sent": stats.sent, "stale": stats.dropped_stale, "overflow": stats.dropped_overflow,
                       "failed": stats.failed, "at_close": stats.dropped_at_close}, open(out, "w"))

    run._serve = measured
    from bot.cli import main
    sys.exit(main(["run", *sys.argv[4:]]))
""")


async def store_part(rows_n: int, url: str, tmp: Path) -> list[dict]:
    now = time.time()
    rows = generate(rows_n, now)
    since14, _ = day_range(14, now)
    since90, _ = day_range(90, now)
    cases = {"server, 14 days": dict(guild_id=GUILD, since=since14),
             "server, 90 days": dict(guild_id=GUILD, since=since90),
             "channel, 90 days": dict(guild_id=GUILD, channel_id=CHANNELS[0], since=since90),
             "author, 90 days": dict(guild_id=GUILD, author_id=AUTHORS[0], since=since90)}
    out = []
    for backend, target in (("sqlite", str(tmp / "bench.db")), ("postgresql", url)):
        store = await open_store(target, batch_size=CHUNK, max_buffer=2 * CHUNK, flush_interval=3600)
        try:
            print(f"{backend}: inserting {rows_n:,} rows ...", flush=True)
            seconds = await fill(store, rows)
            states = [("just written", None)]
            if backend == "postgresql":  # what autovacuum does soon after a bulk write: index-only scans work then
                states.append(("after VACUUM ANALYZE", "VACUUM ANALYZE predictions"))
            for state, statement in states:
                if statement:
                    await store._with_connection("vacuum", lambda conn, s=statement: conn.execute(s))
                row = {"backend": backend, "state": state, "rows": rows_n, "insert_rows_per_s": round(rows_n / seconds)}
                for name, kw in cases.items():
                    times = []
                    for _ in range(5):
                        began = time.perf_counter()
                        await store.emotion_counts(**kw)
                        times.append(time.perf_counter() - began)
                    row[f"{name} ms"] = round(statistics.median(times) * 1000, 1)
                out.append(row)
        finally:
            await store.close()
    return out


async def cluster_part(args, url: str, tmp: Path) -> dict:
    from bot.cluster import Cluster, split_shards
    from model.registry import Registry
    from tests.helpers.fake_discord import TOKEN, FakeDiscord
    from tests.helpers.tiny import build_tiny_model

    models = tmp / "models"
    registry = Registry(models)
    _, folder = registry.allocate()
    build_tiny_model(folder, confident="happiness")
    registry.set_current(registry.commit(folder, {"base": "tiny", "parent": None}).name)
    fake = await FakeDiscord(TOKEN, reaction_429s=0, shard_count=2, guilds=20, reaction_reset_after=0.0,
                             heartbeat_interval_ms=20_000).start()
    script = tmp / "launch.py"
    script.write_text(LAUNCH)
    env = {**os.environ, "DISCORD_TOKEN": TOKEN, "EMOTION_MODEL": str(folder), "EMOTION_DB": url,
           "EMOTION_MODELS_DIR": str(models), "EMOTION_QUANTIZE": "none", "HF_HUB_OFFLINE": "1",
           "EMOTION_GLOBAL_REQUESTS_PER_S": str(args.budget), "EMOTION_THRESHOLD": "0", "EMOTION_LOG_LEVEL": "WARNING",
           "EMOTION_INFERENCE_THREADS": "1", "PYTHONPATH": str(ROOT)}
    outs = [tmp / f"process-{i}.json" for i in range(2)]

    def command(shards):
        return [sys.executable, str(script), fake.api_base, fake.gateway_url, str(outs[shards[0]]),
                "--shards", f"{shards[0]}-{shards[-1]}", "--shard-count", "2"]

    cluster = Cluster(command, split_shards(2, 2), max_concurrency=2, env=env, grace=60)
    running = asyncio.create_task(cluster.run())
    try:
        deadline = time.monotonic() + 120
        while not all(any(c.identify is not None and c.shard == s for c in fake.connections) for s in (0, 1)):
            if time.monotonic() > deadline:
                raise RuntimeError("the bot processes never identified")
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)
        pushed: dict[int, float] = {}
        started = time.monotonic()
        n = int(args.rate * args.seconds)
        for i in range(n):
            target = started + i / args.rate
            if (wait := target - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            mid = await fake.push_message(f"so happy {i}", guild_id=fake.guild_ids[i % len(fake.guild_ids)])
            pushed[mid] = time.monotonic()
        offered = n / (time.monotonic() - started)
        await asyncio.sleep(args.max_age + 2)  # everything still queued is sent or goes stale
    finally:
        cluster.stop()
        await asyncio.wait_for(running, 120)
        await fake.stop()
    landed = []
    for r in fake.reactions:
        if r.method == "PUT" and (200 <= r.status < 300 or r.status == 0):
            mid = int(r.path.split("/messages/")[1].split("/")[0])
            if mid in pushed:
                landed.append((r.time, r.time - pushed[mid]))
    per_second: dict[int, int] = {}
    for t, _ in landed:
        per_second[int(t)] = per_second.get(int(t), 0) + 1
    store = await open_store(url, read_only=True)
    try:
        recorded = (await store._read("count", "SELECT count(*) FROM predictions WHERE guild_id IS NOT NULL"))[0][0]
    finally:
        await store.close()
    procs = [json.loads(p.read_text()) if p.exists() else {} for p in outs]
    full = sorted(per_second.values())[1:-1] or [0]  # whole seconds only
    return {"offered_msg_per_s": round(offered, 1), "messages": n, "budget_per_s": args.budget,
            "reactions": len(landed), "reactions_per_s_mean": round(statistics.mean(full), 1),
            "reactions_per_s_max": max(full),
            "delay_p50_s": round(percentile([d for _, d in landed], 50), 2) if landed else None,
            "delay_p99_s": round(percentile([d for _, d in landed], 99), 2) if landed else None,
            "dropped_stale": sum(p.get("stale", 0) for p in procs),
            "dropped_overflow": sum(p.get("overflow", 0) for p in procs),
            "loop_lag_p99_ms": [round(p["lag_p99_ms"], 1) if p.get("lag_p99_ms") is not None else None for p in procs],
            "recorded": recorded, "nothing_lost": recorded == n}


async def run(args) -> tuple[list[dict], dict]:
    with postgres.server() as srv, tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        stores = await store_part(args.rows, await postgres.create_database(srv, "store_bench"), Path(tmp))
        cluster = await cluster_part(args, await postgres.create_database(srv, "cluster_bench"), Path(tmp)) \
            if args.seconds > 0 else {}
    return stores, cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="predictions for the store part")
    parser.add_argument("--rate", type=float, default=200, help="messages/s offered to the two processes")
    parser.add_argument("--seconds", type=float, default=30, help="push phase of the cluster part (0: skip it)")
    parser.add_argument("--budget", type=float, default=40, help="the bot-wide REST budget, requests/s")
    parser.add_argument("--max-age", type=float, default=30, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="JSON output (default benchmarks/results/cluster.json)")
    args = parser.parse_args(argv)
    reason = postgres.missing_reason()
    if reason:
        parser.error(reason)
    stores, cluster = asyncio.run(run(args))
    print()
    if cluster:
        print("two processes:", json.dumps(cluster))
    write_results("cluster", stores, {"cluster": cluster, "args": {k: str(v) if isinstance(v, Path) else v
                                                                for k, v in vars(args).items()}}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
