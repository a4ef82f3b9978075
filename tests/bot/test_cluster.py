"""One bot as a cluster: the supervisor (staggered starts, restarts, stop), and two real bot processes with
disjoint shard ranges against the fake Discord, sharing one PostgreSQL database and one models folder."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import urllib.parse

import pytest

from bot.cli import main
from bot.cluster import IDENTIFY_WINDOW, Cluster, identify_time, split_shards
from model.labels import emoji_for
from model.registry import Registry
from tests.bot.test_shutdown import LAUNCH
from tests.helpers.fake_discord import TOKEN, FakeDiscord
from tests.helpers.tiny import build_tiny_model


def test_shards_are_split_into_even_contiguous_ranges():
    assert split_shards(8, 2) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert split_shards(7, 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split_shards(1, 1) == [[0]]
    with pytest.raises(ValueError, match="at least one shard"):
        split_shards(2, 3)
    assert identify_time(4, 1) == 4 * IDENTIFY_WINDOW and identify_time(4, 16) == IDENTIFY_WINDOW


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_the_supervisor_staggers_restarts_and_stops_its_children(tmp_path, monkeypatch):
    import bot.cluster

    monkeypatch.setattr(bot.cluster, "IDENTIFY_WINDOW", 0.4)
    child = "import sys, time; open(sys.argv[1], 'a').write(f'{time.monotonic()}\\n'); time.sleep(600)"

    def command(shards):
        return [sys.executable, "-c", child, str(tmp_path / f"starts-{shards[0]}")]

    cluster = Cluster(command, [[0, 1], [2]], max_concurrency=1, healthy_after=0.1, grace=5)
    running = asyncio.create_task(cluster.run())
    first, second = cluster.members
    try:
        await _until(lambda: second.process is not None, 10, "the second start")
        # the second waited for the first's two IDENTIFY windows (2 shards, max_concurrency 1)
        assert second.started_at - first.started_at >= 2 * 0.4 - 0.01
        pid = first.process.pid
        os.kill(pid, signal.SIGKILL)
        await _until(lambda: first.restarts == 1 and first.process.pid != pid and first.process.returncode is None,
                     10, "the restart")
        assert first.exits == [-signal.SIGKILL]
    finally:
        cluster.stop()
        assert await asyncio.wait_for(running, 15) == 0
    assert all(m.process.returncode == -signal.SIGTERM for m in cluster.members)  # stopped, not killed


def _reacted(fake: FakeDiscord, channel_id: int, emoji: str) -> int:
    quoted = urllib.parse.quote(emoji)
    return sum(1 for r in fake.reactions if f"/channels/{channel_id}/" in r.path and quoted in r.path
               and r.method == "PUT")


async def test_two_processes_share_the_shards_the_database_and_the_models(tmp_path, pg_url):
    """Each process tags only its servers; a rollback is served by both; kill -9 of one leaves the other tagging
    and the supervisor restarts it; reactions of both together stay under the bot-wide budget."""
    models = tmp_path / "models"
    registry = Registry(models)
    for label in ("happiness", "sadness"):  # v1 says happiness, v2 (current) says sadness, for every text
        _, folder = registry.allocate()
        build_tiny_model(folder, confident=label)
        registry.set_current(registry.commit(folder, {"base": "tiny", "parent": None}).name)
    fake = await FakeDiscord(TOKEN, reaction_429s=0, shard_count=2, guilds=4, reaction_reset_after=0.0).start()
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH)
    budget = 6.0
    env = {**os.environ, "DISCORD_TOKEN": TOKEN, "EMOTION_MODEL": str(models / "v1"), "EMOTION_DB": pg_url,
           "EMOTION_MODELS_DIR": str(models), "EMOTION_QUANTIZE": "none", "HF_HUB_OFFLINE": "1",
           "EMOTION_GLOBAL_REQUESTS_PER_S": str(budget), "EMOTION_LOG_LEVEL": "INFO", "PYTHONPATH": os.getcwd()}

    def command(shards):
        return [sys.executable, str(script), fake.api_base, fake.gateway_url, "--shards", f"{shards[0]}-{shards[-1]}",
                "--shard-count", "2"]

    by_shard = {s: [g for g in fake.guild_ids if fake.shard_of(g) == s] for s in (0, 1)}
    assert all(len(g) == 2 for g in by_shard.values())
    cluster = Cluster(command, split_shards(2, 2), max_concurrency=2, env=env, grace=20, healthy_after=1)
    running = asyncio.create_task(cluster.run())

    def identified(shard: int) -> bool:
        return any(c.identify is not None and c.shard == shard and not c.ws.closed for c in fake.connections)

    async def tag_everywhere(emoji: str, timeout: float = 40) -> None:
        for guild_id in fake.guild_ids:
            await fake.push_message(f"hello {time.monotonic()}", guild_id=guild_id)
        await _until(lambda: all(_reacted(fake, fake.channel_of(g), emoji) for g in fake.guild_ids), timeout,
                     f"{emoji} in every server")

    try:
        await _until(lambda: identified(0) and identified(1), 90, "both processes to IDENTIFY")
        shards_of = {c.shard: c.identify["shard"] for c in fake.connections if c.identify}
        assert shards_of == {0: [0, 2], 1: [1, 2]}  # disjoint: each process IDENTIFYs its own shard only
        await asyncio.sleep(1.0)  # GUILD_CREATEs handled
        await tag_everywhere(emoji_for("sadness"))

        # a rollback from the command line (or /model rollback in either process) is served by both
        assert await asyncio.to_thread(main, ["models", "rollback", "v1", "--models-dir", str(models),
                                              "--db", pg_url]) == 0
        await asyncio.sleep(5.0)  # "within 5 s"
        await tag_everywhere(emoji_for("happiness"), timeout=20)

        # kill -9 the process of shard 0: shard 1's servers are still tagged, and the supervisor brings it back
        victim = cluster.members[0]
        pid = victim.process.pid
        os.kill(pid, signal.SIGKILL)
        await _until(lambda: not identified(0), 10, "shard 0 to drop")
        before = {g: _reacted(fake, fake.channel_of(g), emoji_for("happiness")) for g in fake.guild_ids}
        for guild_id in by_shard[1]:
            await fake.push_message("still here", guild_id=guild_id)
        await _until(lambda: all(_reacted(fake, fake.channel_of(g), emoji_for("happiness")) > before[g]
                                 for g in by_shard[1]), 20, "shard 1 to keep tagging")
        await _until(lambda: victim.restarts == 1 and identified(0), 90, "the restarted process")
        await asyncio.sleep(1.0)
        before = {g: _reacted(fake, fake.channel_of(g), emoji_for("happiness")) for g in by_shard[0]}
        for guild_id in by_shard[0]:  # new messages on the restarted process's shard: tagged again
            await fake.push_message("back again", guild_id=guild_id)
        await _until(lambda: all(_reacted(fake, fake.channel_of(g), emoji_for("happiness")) > before[g]
                                 for g in by_shard[0]), 40, "the restarted process to tag")

        # a burst over both processes: together they stay within the bot-wide budget
        start = len(fake.reactions)
        for i in range(30):
            await fake.push_message(f"burst {i}", guild_id=fake.guild_ids[i % 4])
        await asyncio.sleep(4.0)
        times = sorted(r.time for r in fake.reactions[start:])
        assert times, "no reaction to the burst"
        windows = [sum(1 for t in times if s <= t < s + 2.0) for s in times]
        assert max(windows) <= budget * 2.0 + budget + 2, (max(windows), len(times))  # 2 s at the rate, + a burst
    finally:
        cluster.stop()
        await asyncio.wait_for(running, 60)
        await fake.stop()
