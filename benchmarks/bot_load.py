"""The whole bot under load: messages at a set rate across many channels, against a fake Discord.

    python benchmarks/bot_load.py [--rate 200] [--channels 20] [--seconds 60] [--max-age 30]
                                  [--threads 1 2] [--drain SECONDS] [--tracemalloc] [--out FILE]

The real ``EmotionBot`` (discord.py client, tagging cog, inference worker, pacer, SQLite store)
runs a MiniLM-L6-sized classifier (``Classifier.load(folder, quantize="auto")``: int8 on CPU) and
talks over loopback to ``tests/helpers/fake_discord.FakeDiscord``. The fake runs in its own process (spawned),
so its JSON/zlib/HTTP work never runs on the bot's event loop; after the bot has identified and been
told to start, it pushes MESSAGE_CREATE events at ``--rate`` round-robin over ``--channels`` text
channels for ``--seconds`` (GoEmotions dev comments when ``../shared/data/goemotions`` exists), answers
every reaction PUT with 204 (no 429s) and records when it pushed each message and when each reaction
arrived. Both times are taken in the fake's process with one clock, so the latency (reaction PUT
arrival - message push) needs no clock agreement between processes.

The bot runs with ``threshold=0`` and ``show_neutral`` on, so every message asks for a reaction. After the
push phase the bot gets up to ``--drain`` seconds to empty its queues, then closes (flushing the store).

Reported per inference-thread count (each count runs in a fresh process when several are given, so
peak RSS is per run): reactions sent / dropped (stale, queue overflow) / failed / still queued at close;
latency p50/p99 from push to reaction PUT; event-loop lag p99 during the push phase (``LoopLag``,
1 ms ticker); peak RSS (``getrusage``) and RSS growth over the push phase (``/proc/self/statm``;
``--tracemalloc`` adds Python-heap numbers but slows every allocation, so it is off by default);
prediction rows in the store; and ``worker.pending()``, ``pacer.queued()``, ``store.buffered`` and
the bot's in-flight ``on_message`` tasks sampled every second (max, value at the end of the push
phase, value after the drain, and "GROWING" when the trend over the last third of the push phase still
rises by more than half a second of arrivals; needs a push phase of 6 s or more).

Expected shape at 200 msg/s over 20 channels (10 msg/s a channel): Discord takes ~4 reactions/s a
channel, and the pacer also caps the whole bot at ``global_requests_per_s`` (40/s by default), so most
reactions are dropped - stale (older than ``--max-age``) or pushed out of the bounded per-channel
queue. That is the designed behaviour; every message must still be recorded in the store.
Targets: loop lag p99 <= 20 ms, no queue growing without bound, the offered rate actually offered,
every message recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DEFAULT_DATA, LoopLag, chat_texts, median, percentile, write_results  # noqa: E402

# Same shape as a real bot token (three base64url parts); only ever sent to 127.0.0.1.
TOKEN = "MTA4NzY1NDMyMTA5ODc2NTQzMg.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"
QUEUES = ("worker_pending", "pacer_queued", "store_buffered", "inflight_tasks")

log = logging.getLogger("bot_load")


# =========================================================================== fake Discord process


def fake_main(conn, channels: int, data: str, deadline_s: float) -> None:
    """Entry point of the spawned fake-Discord process; talks to the bot process over ``conn``."""
    try:
        asyncio.run(_fake_serve(conn, channels, Path(data), deadline_s), debug=False)
    except Exception as exc:  # noqa: BLE001 - report it to the parent rather than die silently
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except (OSError, ValueError):
            pass
    finally:
        conn.close()


async def _recv(conn, timeout: float):
    """Receive one message from a Pipe without blocking the loop (polls; bounded by ``timeout``)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if conn.poll():
            return conn.recv()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no message on the pipe within {timeout:.0f}s")


async def _fake_serve(conn, channels: int, data: Path, deadline_s: float) -> None:
    from tests.helpers.fake_discord import FakeDiscord

    # A real gateway's interval (41.25 s): heartbeats are not what this measures.
    fake = await FakeDiscord(TOKEN, reaction_429s=0, channels=channels, heartbeat_interval_ms=41_250).start()
    try:
        conn.send(("port", fake.port))
        cmd = await _recv(conn, deadline_s)
        if cmd[0] != "start":
            return
        _, rate, seconds = cmd
        n = max(1, round(rate * seconds))
        texts, source = chat_texts(n, data, seed=0)
        await fake.wait_for(lambda: any(c.identify is not None and not c.ws.closed for c in fake.connections), 15)
        ids = fake.channel_ids
        pushes: list[tuple[int, int, float]] = []  # (message id, channel id, push time)
        late: list[float] = []  # how far behind schedule each push started
        error = None
        conn.send(("started", source))
        t0 = time.monotonic()
        for i, text in enumerate(texts):
            target = t0 + i / rate
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            late.append(max(0.0, time.monotonic() - target))
            channel = ids[i % len(ids)]
            pushed_at = time.monotonic()
            try:
                mid = await asyncio.wait_for(fake.push_message(text, channel_id=channel), 5)
            except (RuntimeError, ConnectionError, asyncio.TimeoutError) as exc:  # the bot went away
                error = f"push {i} failed: {type(exc).__name__}: {exc}"
                break
            pushes.append((mid, channel, pushed_at))
        push_seconds = time.monotonic() - t0
        conn.send(("pushed", {"pushed": len(pushes), "push_seconds": push_seconds, "error": error,
                              "late_p99_ms": percentile(late, 99) * 1000, "late_max_ms": max(late, default=0) * 1000}))
        cmd = await _recv(conn, deadline_s)  # "collect", once the bot has drained and closed
        prefix = "/api/v10/channels/"
        reactions = []
        for rec in fake.reactions:
            parts = rec.path[len(prefix):].split("/") if rec.path.startswith(prefix) else []
            if len(parts) >= 3:
                reactions.append((int(parts[2]), int(parts[0]), rec.time, rec.status))
        unknown = sorted({f"{r.method} {r.path}" for r in fake.requests if r.status == 404})[:10]
        conn.send(("records", {"pushes": pushes, "reactions": reactions, "unknown_routes": unknown,
                               "requests": len(fake.requests)}))
        await _recv(conn, 30)  # "stop" (or time out and stop anyway)
    finally:
        await fake.stop()


# =========================================================================== bot process


def rss_mib() -> float:
    """Current resident set size (Linux ``/proc``; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (units per second) of ``(t, value)`` points."""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (v - mv) for t, v in points) / den if den else float("nan")


def growth_verdict(points: list[tuple[float, float]], noise: float) -> str:
    """"GROWING" when the least-squares trend over the last third of the push phase rises by more than
    ``noise`` items (a plateau, a sawtooth at a cap, or flush noise stays "bounded")."""
    if len(points) < 6:
        return "n/a (run too short)"
    tail = points[2 * len(points) // 3:]
    rise = slope(tail) * (tail[-1][0] - tail[0][0])
    return "GROWING" if rise > noise else "bounded"


async def drive_bot(args, threads: int, folder: Path, tmp: Path, conn, port: int) -> dict:
    import discord.gateway
    import discord.http
    import yarl

    from bot.client import EmotionBot, freeze_startup_heap
    from bot.settings import Settings
    from model.classifier import Classifier
    from tests.helpers.fake_discord import FakeDiscord, first_of

    # Point discord.py at the fake (what FakeDiscord.patch does with pytest's monkeypatch).
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = f"http://127.0.0.1:{port}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{port}/")

    settings = Settings(token=TOKEN, db_path=tmp / "bot.db", models_dir=tmp / "models", threshold=0.0,
                        quantize="auto", device=args.device, inference_threads=threads,
                        reaction_max_age=args.max_age)
    classifier = Classifier.load(folder, device=settings.device, quantize=settings.quantize)
    freeze_startup_heap()  # as `emotion-machine run` does
    bot = EmotionBot(settings, classifier, guild_ready_timeout=0.5)
    connect: asyncio.Task | None = None
    samples: list[dict] = []
    result: dict = {"threads": threads, "device": str(classifier.device), "quantized": classifier.quantized,
                    "policy": args.policy}
    try:
        await asyncio.wait_for(bot.login(TOKEN), 20)  # setup_hook: the pacer exists from here
        if args.policy == "fifo":  # the pacer before #15: always the oldest first, however far behind
            bot.pacer.backlog_after = float("inf")
        connect = asyncio.create_task(bot.connect(reconnect=False), name="gateway")
        await first_of(bot.wait_until_ready(), connect, 30, "READY")
        got = {c.id for c in bot.get_guild(FakeDiscord.GUILD_ID).text_channels}
        if len(got) != args.channels:
            raise RuntimeError(f"the bot sees {len(got)} text channels, wanted {args.channels}")
        # Every message asks for a reaction: threshold 0 (Settings) and neutral shown too.
        gs = await bot.store.update_guild_settings(FakeDiscord.GUILD_ID, show_neutral=True)
        if not (gs.threshold == 0.0 and gs.show_neutral and gs.reactions):
            raise RuntimeError(f"guild settings would skip reactions: {gs}")
        warm, _ = chat_texts(64, args.data, seed=1)
        await asyncio.wait_for(bot.worker.classify_many(warm), 120)  # load int8 kernels, size the pools
        worker0 = bot.worker.processed

        if args.tracemalloc:
            import tracemalloc

            tracemalloc.start()
        rss_start = rss_mib()
        pacer, worker, store = bot.pacer, bot.worker, bot.store

        def sample(phase: str, t: float, lag_from: int) -> dict:
            lag_window = lag.samples[lag_from:]
            row = {"t": round(t, 2), "phase": phase, "worker_pending": worker.pending(),
                   "pacer_queued": pacer.queued(), "store_buffered": store.buffered,
                   "inflight_tasks": len(bot.inflight), "classified": worker.processed - worker0,
                   "sent": pacer.stats.sent, "dropped_stale": pacer.stats.dropped_stale,
                   "dropped_overflow": pacer.stats.dropped_overflow, "rss_mib": round(rss_mib(), 1),
                   "lag_max_ms": round(max(lag_window, default=0.0) * 1000, 2)}
            samples.append(row)
            return row

        with LoopLag() as lag:
            conn.send(("start", args.rate, args.seconds))
            t0 = time.monotonic()
            reply = await _recv(conn, 30)
            if reply[0] != "started":
                raise RuntimeError(f"fake Discord did not start: {reply}")
            result["texts"] = reply[1]
            # Push phase: sample every second until the fake says it is done (bounded).
            pushed_info = None
            next_tick, lag_from = t0 + 1.0, 0
            push_deadline = t0 + args.seconds + 60
            while pushed_info is None:
                if conn.poll():
                    msg = conn.recv()
                    if msg[0] != "pushed":
                        raise RuntimeError(f"fake Discord: {msg}")
                    pushed_info = msg[1]
                    break
                now = time.monotonic()
                if now > push_deadline:
                    raise TimeoutError("the fake did not finish pushing in time")
                if now >= next_tick:
                    sample("load", now - t0, lag_from)
                    lag_from, next_tick = len(lag.samples), next_tick + 1.0
                await asyncio.sleep(min(0.05, max(0.0, next_tick - now)))
            load_end = time.monotonic()
            load_lag = list(lag.samples)
            end_of_load = sample("load", load_end - t0, lag_from)
            lag_from = len(lag.samples)
            rss_end = end_of_load["rss_mib"]
            if args.tracemalloc:
                traced, traced_peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                result["tracemalloc_current_mib"] = traced / 2**20
                result["tracemalloc_peak_mib"] = traced_peak / 2**20

            # Drain phase: let queued work finish (or go stale), bounded by --drain.
            drain_end = load_end + args.drain
            while time.monotonic() < drain_end:
                await asyncio.sleep(1.0)
                row = sample("drain", time.monotonic() - t0, lag_from)
                lag_from = len(lag.samples)
                if not any(row[q] for q in ("worker_pending", "pacer_queued", "inflight_tasks")):
                    break
            drained_s = time.monotonic() - load_end

        # Counts as of the end of the drain; close() then gives queued reactions 2 s and drops the rest
        # (pacer.stats.dropped_at_close), so what happens during close is reported apart.
        stats = pacer.stats
        before = {"sent": stats.sent, "dropped_stale": stats.dropped_stale,
                  "dropped_overflow": stats.dropped_overflow, "failed": stats.failed,
                  "left_queued_at_close": pacer.queued(), "unclassified_at_close": len(bot.inflight),
                  "shed": bot.services.tagging.shed}
        await asyncio.wait_for(bot.close(), 60)
        await asyncio.wait_for(asyncio.gather(connect, return_exceptions=True), 15)
        result.update({
            "pushed_info": pushed_info, "load_seconds": load_end - t0, "drain_seconds": drained_s, **before,
            "sent_total": stats.sent, "sent_during_close": stats.sent - before["sent"],
            "dropped_at_close": stats.dropped_at_close,
            "max_queue_per_channel": pacer.max_queue,
            "pacer_latency_p50_s": percentile(list(stats.latencies), 50),
            "pacer_latency_p99_s": percentile(list(stats.latencies), 99),
            "classified": worker.processed - worker0, "batches": worker.batches,
            "store_dropped_predictions": store.dropped_predictions,
            "loop_lag_p50_ms": percentile(load_lag, 50) * 1000, "loop_lag_p99_ms": percentile(load_lag, 99) * 1000,
            "loop_lag_max_ms": max(load_lag, default=float("nan")) * 1000,
            "rss_start_mib": rss_start, "rss_end_mib": rss_end, "rss_growth_mib": rss_end - rss_start,
            "peak_rss_mib": peak_rss_mib(),
        })
    finally:
        if not bot.is_closed():
            try:
                await asyncio.wait_for(bot.close(), 30)
            except Exception:  # noqa: BLE001 - already failing; do not hide the first error
                log.exception("closing the bot failed")
        if connect is not None and not connect.done():
            connect.cancel()
            await asyncio.gather(connect, return_exceptions=True)
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
    result["samples"] = samples
    return result


def summarise(args, result: dict, records: dict, db: Path) -> dict:
    """Join the fake's records with the bot's numbers into one flat dict."""
    pushes = {mid: (ch, t) for mid, ch, t in records["pushes"]}
    ok = [(mid, t) for mid, _, t, status in records["reactions"] if status == 204]
    latencies = [t - pushes[mid][1] for mid, t in ok if mid in pushes]
    reacted = {mid for mid, _ in ok}
    con = sqlite3.connect(db)
    try:
        recorded = {r[0] for r in con.execute("SELECT message_id FROM predictions")}
    finally:
        con.close()
    rows = len(recorded)
    pushed = len(pushes)
    info = result["pushed_info"]
    load = [s for s in result["samples"] if s["phase"] == "load"]
    drain = [s for s in result["samples"] if s["phase"] == "drain"]
    queues = {}
    for q in QUEUES:
        values = [s[q] for s in load]
        points = [(s["t"], s[q]) for s in load]
        queues[q] = {"max": max(values, default=0), "end_of_push": values[-1] if values else 0,
                     "after_drain": (drain[-1] if drain else load[-1])[q] if load else 0,
                     "slope_last_third_per_s": slope(points[2 * len(points) // 3:]),
                     # noise: half a second of arrivals (the store flushes every 0.5 s), at least 10
                     "verdict": growth_verdict(points, noise=max(10.0, 0.5 * args.rate))}
    rss_half = [(s["t"], s["rss_mib"]) for s in load[len(load) // 2:]]
    accounted = (result["sent"] + result["dropped_stale"] + result["dropped_overflow"] + result["failed"]
                 + result["left_queued_at_close"] + result["unclassified_at_close"] + result["shed"])
    summary = {
        **{k: v for k, v in result.items() if k not in ("samples", "pushed_info")},
        "pushed": pushed, "offered_msg_s": pushed / max(1e-9, info["push_seconds"]),
        "push_late_p99_ms": info["late_p99_ms"], "push_error": info["error"],
        "reaction_puts": len(records["reactions"]), "reactions_204": len(ok), "messages_reacted": len(reacted),
        "duplicate_reactions": len(ok) - len(reacted),
        # PUTs that reached Discord although the pacer's deadline counted them as dropped (stale).
        "delivered_but_counted_dropped": max(0, len(ok) - result["sent_total"]),
        "unmatched_reactions": sum(mid not in pushes for mid, _ in ok),
        "reactions_per_s": len(ok) / max(1e-9, result["load_seconds"] + result["drain_seconds"]),
        "latency_p50_s": percentile(latencies, 50), "latency_p99_s": percentile(latencies, 99),
        "latency_median_s": median(latencies), "latency_max_s": max(latencies, default=float("nan")),
        "prediction_rows": rows, "pushed_not_recorded": len(set(pushes) - recorded) - result["shed"],
        "not_accounted_for": pushed - accounted,
        "rss_slope_last_half_mib_per_min": slope(rss_half) * 60,
        "unknown_routes": records["unknown_routes"], "queues": queues, "samples": result["samples"],
    }
    return summary


def _build_model(out: str, conn) -> None:
    """Spawned helper: write the MiniLM-L6 folder (its fp32 load must not count in the bot's peak RSS)."""
    from benchmarks.common import minilm_folder
    from model.labels import SEED13

    _, weights = minilm_folder(Path(out), SEED13)
    conn.send(weights)
    conn.close()


def build_model(out: Path) -> str:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_build_model, args=(str(out), child), name="build-minilm", daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(300):
            raise TimeoutError("building the MiniLM-L6 folder took more than 300s")
        return parent.recv()
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        parent.close()


def run_config(args, threads: int, folder: Path, weights: str) -> dict:
    """One full run (fake process + bot) at ``threads`` inference threads; returns the summary."""
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bot_load-") as tmpname:
        tmp = Path(tmpname)
        parent, child = ctx.Pipe()
        deadline = args.seconds + args.drain + 300
        proc = ctx.Process(target=fake_main, args=(child, args.channels, str(args.data), deadline),
                           name="fake-discord", daemon=True)
        proc.start()
        child.close()
        try:
            if not parent.poll(60):
                raise TimeoutError("the fake Discord process did not report its port within 60s")
            msg = parent.recv()
            if msg[0] != "port":
                raise RuntimeError(f"fake Discord: {msg}")
            print(f"threads={threads}: fake Discord (pid {proc.pid}) on 127.0.0.1:{msg[1]}", flush=True)
            # debug=False even if PYTHONASYNCIODEBUG is set: debug mode would inflate the loop lag.
            result = asyncio.run(drive_bot(args, threads, folder, tmp, parent, msg[1]), debug=False)
            parent.send(("collect",))
            if not parent.poll(60):
                raise TimeoutError("the fake Discord process did not send its records within 60s")
            msg = parent.recv()
            if msg[0] != "records":
                raise RuntimeError(f"fake Discord: {msg}")
            parent.send(("stop",))
            summary = summarise(args, result, msg[1], tmp / "bot.db")
            summary["model"] = weights
            return summary
        finally:
            proc.join(15)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            parent.close()


# =========================================================================== report


def ms(seconds: float) -> float:
    return seconds * 1000


def table(runs: list[dict]) -> list[dict]:
    """One row per metric, one column per run (thread count)."""
    spec = [
        ("offered msg/s", lambda r: r["offered_msg_s"]),
        ("messages pushed", lambda r: r["pushed"]),
        ("prediction rows in store", lambda r: r["prediction_rows"]),
        ("reactions sent (pacer)", lambda r: r["sent"]),
        ("  more sent during close", lambda r: r["sent_during_close"]),
        ("reaction PUTs seen (204)", lambda r: r["reactions_204"]),
        ("reactions/s", lambda r: r["reactions_per_s"]),
        ("dropped stale", lambda r: r["dropped_stale"]),
        ("  of which reached Discord", lambda r: r["delivered_but_counted_dropped"]),
        ("dropped overflow", lambda r: r["dropped_overflow"]),
        ("failed", lambda r: r["failed"]),
        ("messages shed (overload)", lambda r: r["shed"]),
        ("still queued at close", lambda r: r["left_queued_at_close"]),
        ("still in on_message at close", lambda r: r["unclassified_at_close"]),
        ("not accounted for", lambda r: r["not_accounted_for"]),
        ("push->reaction p50 ms", lambda r: ms(r["latency_p50_s"])),
        ("push->reaction p99 ms", lambda r: ms(r["latency_p99_s"])),
        ("fake's push lateness p99 ms", lambda r: r["push_late_p99_ms"]),
        ("loop lag p50 ms", lambda r: r["loop_lag_p50_ms"]),
        ("loop lag p99 ms", lambda r: r["loop_lag_p99_ms"]),
        ("loop lag max ms", lambda r: r["loop_lag_max_ms"]),
        ("peak RSS MiB", lambda r: r["peak_rss_mib"]),
        ("RSS growth MiB (push)", lambda r: r["rss_growth_mib"]),
        ("RSS slope MiB/min (2nd half)", lambda r: r["rss_slope_last_half_mib_per_min"]),
    ]
    if any("tracemalloc_peak_mib" in r for r in runs):
        spec.append(("tracemalloc peak MiB", lambda r: r.get("tracemalloc_peak_mib")))
    for q in QUEUES:
        spec.append((f"{q} max/end/drained", lambda r, q=q: "{max}/{end_of_push}/{after_drain} {verdict}".format(
            **r["queues"][q])))
    rows = []
    for name, get in spec:
        row = {"metric": name}
        for r in runs:
            row[f"threads={r['threads']}"] = get(r)
        rows.append(row)
    return rows


def targets(args, run: dict) -> dict:
    return {
        "loop lag p99 <= 20 ms": run["loop_lag_p99_ms"] <= 20,
        "no queue grows without bound": ("n/a (push phase under 6 s)"
                                         if any(q["verdict"].startswith("n/a") for q in run["queues"].values())
                                         else all(q["verdict"] == "bounded" for q in run["queues"].values())),
        "offered rate >= 95% of --rate": run["offered_msg_s"] >= 0.95 * args.rate,
        "every message recorded (or shed under overload)": run["pushed_not_recorded"] == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200, help="messages per second offered (all channels)")
    parser.add_argument("--channels", type=int, default=20, help="text channels, messages round-robin over them")
    parser.add_argument("--seconds", type=float, default=60, help="length of the push phase")
    parser.add_argument("--max-age", type=float, default=30, help="reaction_max_age: older reactions are dropped")
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}),
                        help="inference thread counts to measure, one run each (default: 1 and the CPU count)")
    parser.add_argument("--drain", type=float, default=None,
                        help="max seconds to let queues empty after pushing (default: max-age + 10)")
    parser.add_argument("--device", default="auto", help="EMOTION_DEVICE for the classifier (default auto)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="GoEmotions folder for realistic texts")
    parser.add_argument("--policy", choices=("newest", "fifo"), default="newest",
                        help="the pacer when a channel is behind: newest first (the bot's) or oldest first "
                             "(the baseline before #15)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace Python allocations during the push phase (slows the bot)")
    parser.add_argument("--out", type=Path, help="JSON output (default benchmarks/results/bot_load.json)")
    # internal, for the one-process-per-thread-count runs: write one run's raw JSON, reuse the model folder
    parser.add_argument("--run-json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model-what", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drain is None:
        args.drain = args.max_age + 10
    if args.rate <= 0 or args.seconds <= 0 or args.channels < 1 or min(args.threads) < 1:
        parser.error("--rate and --seconds must be positive, --channels and --threads at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    if args.run_json is not None:  # a child of a multi-run: the parent built the model folder
        args.run_json.write_text(json.dumps(run_config(args, args.threads[0], args.model_dir, args.model_what)))
        return
    with tempfile.TemporaryDirectory(prefix="bot_load-model-") as model_tmp:
        folder = Path(model_tmp) / "minilm"
        weights = build_model(folder)
        print(f"model: {weights}", flush=True)
        if len(args.threads) == 1:
            runs = [run_config(args, args.threads[0], folder, weights)]
        else:  # each thread count in a fresh process: peak RSS and allocator state are per run
            runs = []
            base = [sys.executable, str(Path(__file__).resolve()), "--rate", str(args.rate), "--channels",
                    str(args.channels), "--seconds", str(args.seconds), "--max-age", str(args.max_age),
                    "--drain", str(args.drain), "--device", args.device, "--data", str(args.data),
                    "--model-dir", str(folder), "--model-what", weights]
            if args.tracemalloc:
                base.append("--tracemalloc")
            for threads in args.threads:
                out = Path(model_tmp) / f"threads{threads}.json"
                subprocess.run([*base, "--threads", str(threads), "--run-json", str(out)], check=True,
                               timeout=args.seconds + args.drain + 600)
                runs.append(json.loads(out.read_text()))

    rows = table(runs)
    checks = {f"threads={r['threads']}": targets(args, r) for r in runs}
    extra = {"config": {"rate": args.rate, "channels": args.channels, "seconds": args.seconds,
                        "max_age": args.max_age, "drain": args.drain, "threads": args.threads},
             "model": runs[0]["model"], "texts": runs[0].get("texts"), "targets": checks,
             "runs": runs}
    write_results("bot_load", rows, extra, args.out)
    for name, check in checks.items():
        print(f"targets {name}: {check}")
    for r in runs:
        if r["unknown_routes"] or r["push_error"] or r["unmatched_reactions"] or r["duplicate_reactions"]:
            print(f"threads={r['threads']}: unknown routes {r['unknown_routes']}, push error {r['push_error']}, "
                  f"unmatched {r['unmatched_reactions']}, duplicates {r['duplicate_reactions']}")


if __name__ == "__main__":
    main()
