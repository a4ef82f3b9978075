"""TrainingJob: a fine-tune in a spawned child, followed from asyncio."""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from model.jobs import TrainingBusy, TrainingCancelled, TrainingFailed, TrainingJob
from model.progress import TrainingEvent
from model.registry import Registry
from tests.helpers import corrections, fast_finetune_config


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
