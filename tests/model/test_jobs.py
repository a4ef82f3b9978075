"""TrainingJob: a fine-tune in a spawned child, followed from asyncio."""

from __future__ import annotations

import dataclasses
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from model import finetune, jobs
from model.finetune import FinetuneCancelled
from model.jobs import TrainingBusy, TrainingCancelled, TrainingFailed, TrainingJob
from model.progress import TrainingEvent
from model.registry import Registry
from tests.helpers import ROOT, corrections, fast_finetune_config


async def test_events_stream_and_the_result_comes_back(tmp_path, word_model_dir):
    config = fast_finetune_config(tmp_path, word_model_dir, force=True, epochs=3)
    job = TrainingJob(corrections(), config, nice=5).start()
    events = [e async for e in job.events()]
    result = await job.result()
    assert result.deployed and result.version == "v1" and result.examples == 12
    assert all(isinstance(e, TrainingEvent) for e in events)
    stages = [e.stage for e in events if e.kind == "stage"]
    assert stages == ["tokenize", "train", "save"]
    progress = [e for e in events if e.kind == "progress"]
    assert progress[-1].step == progress[-1].max_steps == 9
    assert Registry(tmp_path / "models").current().name == "v1"
    assert not job.running and not TrainingJob.busy()


async def test_one_job_at_a_time_and_a_killed_child_is_a_failure(tmp_path, word_model_dir):
    endless = fast_finetune_config(tmp_path, word_model_dir, force=True, epochs=10_000)
    first = TrainingJob(corrections(), endless).start()
    with pytest.raises(TrainingBusy, match="already running"):
        TrainingJob(corrections(), fast_finetune_config(tmp_path, word_model_dir, force=True)).start()
    async for event in first.events():
        if event.kind == "progress":
            os.kill(first.pid, signal.SIGKILL)  # what the OOM killer would do
            break
    with pytest.raises(TrainingFailed, match="killed by SIGKILL"):
        await first.result()
    assert Registry(tmp_path / "models").list() == [] and not TrainingJob.busy()


async def test_cancel_stops_training_and_deploys_nothing(tmp_path, word_model_dir):
    job = TrainingJob(corrections(), fast_finetune_config(tmp_path, word_model_dir, force=True, epochs=10_000)).start()
    assert not TrainingJob(corrections()).cancel()  # never started: nothing to cancel
    async for event in job.events():
        if event.kind == "progress":
            assert job.cancel()
    with pytest.raises(TrainingCancelled, match="nothing was deployed"):
        await job.result()
    assert not job.running and job.last_stage == "train"
    assert Registry(tmp_path / "models").list() == []


async def test_a_crash_in_the_child_is_training_failed(tmp_path, word_model_dir):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(word_model_dir, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"not a model")
    job = TrainingJob(corrections(), fast_finetune_config(tmp_path, corrupt, force=True)).start()
    with pytest.raises(TrainingFailed, match="nothing was deployed") as info:
        await job.result()
    assert "corrupt" in str(info.value) and "Traceback" in info.value.details
    assert Registry(tmp_path / "models").list() == []


# --------------------------------------------------------------------------- a parent that dies

#: A bot in miniature (light: no torch here): starts a job, prints the child's pid once it trains, waits.
PARENT = """
import asyncio, json, sys
from model.finetune_config import FinetuneConfig
from model.jobs import TrainingJob

async def main():
    examples, config = json.loads(sys.argv[1])
    job = TrainingJob(examples, FinetuneConfig(**config), nice=0).start()  # not starved on a busy machine
    async for event in job.events():
        if event.kind == "progress":
            print(job.pid, flush=True)
            break
    await asyncio.sleep(600)

asyncio.run(main())
"""


def ended_within(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` (not our child: no waitpid) ends within ``seconds``; a pidfd says when."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], seconds)[0])
    finally:
        os.close(fd)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux pidfds")
def test_a_child_whose_parent_is_killed_stops_and_deploys_nothing(tmp_path, word_model_dir):
    config = fast_finetune_config(tmp_path, word_model_dir, force=True, epochs=10_000)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable, "-c", PARENT, json.dumps([corrections(), dataclasses.asdict(config)])]
    with open(tmp_path / "parent.log", "w") as log:  # also takes the resource tracker's words on the kill
        parent = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=ROOT)
    child = None
    try:
        started = parent.stdout.readline()  # the child is training now
        assert started, (tmp_path / "parent.log").read_text()
        child = int(started)
        parent.kill()  # kill -9: no cleanup in the parent at all
        parent.wait()
        assert ended_within(child, 60), "the training process outlived its parent"  # it stops at its next step
    finally:
        parent.kill()
        parent.stdout.close()
        if child is not None and not ended_within(child, 0):
            os.kill(child, signal.SIGKILL)
    assert Registry(tmp_path / "models").current() is None


def test_a_parent_gone_at_the_last_step_deploys_nothing(tmp_path, word_model_dir):
    """The check before ``set_current`` asks the parent itself, not a flag a watcher may not have set yet."""
    watch = jobs.ParentWatch(os.getppid())
    assert watch.alive()

    def on_event(event: TrainingEvent) -> None:
        if event.kind == "stage" and event.stage == "save":
            watch.parent_pid = -1  # as if the parent died while the candidate is being saved

    config = fast_finetune_config(tmp_path, word_model_dir, force=True, epochs=2)
    with pytest.raises(FinetuneCancelled):
        finetune.run(corrections(), config, on_event=on_event,
                     should_stop=jobs.stop_check(threading.Event(), watch))
    assert Registry(tmp_path / "models").current() is None


# --------------------------------------------------------------------------- secrets


def _environ_after_exec(pid: int, timeout: float = 30.0) -> list[bytes]:
    """The child's environment once its exec has finished (slow on a busy machine).

    Between fork and exec /proc shows the forked copy of this process's own start-up block (or nothing),
    not what the child was given, so wait until it shows something else.
    """
    forked_copy = Path("/proc/self/environ").read_bytes()
    deadline = time.monotonic() + timeout
    while True:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        if (environ and environ != forked_copy) or time.monotonic() > deadline:
            return environ.split(b"\0")
        time.sleep(0.01)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
async def test_the_child_environment_has_no_secrets(tmp_path, word_model_dir, monkeypatch):
    monkeypatch.setenv("DISCORD_TOKEN", "discord-secret-value")
    monkeypatch.setenv("GITHUB_TOKEN", "github-secret-value")
    monkeypatch.setenv("HF_TOKEN", "hf_needed_for_private_hub_models")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    job = TrainingJob(corrections(), fast_finetune_config(tmp_path, word_model_dir, epochs=10_000)).start()
    try:
        environ = _environ_after_exec(job.pid)  # what the child got at exec
    finally:
        job.cancel()
    with pytest.raises(TrainingCancelled):
        await job.result()
    names = {entry.partition(b"=")[0].decode() for entry in environ}
    assert "DISCORD_TOKEN" not in names and "GITHUB_TOKEN" not in names
    assert {"HF_TOKEN", "TOKENIZERS_PARALLELISM", "OMP_NUM_THREADS"} <= names
    assert os.environ["DISCORD_TOKEN"] == "discord-secret-value"  # the parent's own is back
