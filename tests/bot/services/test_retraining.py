"""The retraining rules, once for /retrain, the shell and the CLI: who, how many, which knobs, deploys."""

from __future__ import annotations

import dataclasses

import pytest

from bot.services import Actor, NotAllowed, Refusal, Serving
from bot.services.retraining import RetrainingService, TrainingOverrides
from bot.store import Correction
from model.finetune_config import FinetuneConfig
from model.registry import Registry
from tests.helpers.tiny import build_tiny_model

OPERATOR = Actor.operator()
MEMBER = Actor(user_id=5, guild_id=1, can_manage=False)


@pytest.mark.parametrize("call", ["prepare", "rollback", "info"])
async def test_only_managers_may_act_on_their_server_and_only_the_owner_on_the_base(services, call):
    with pytest.raises(NotAllowed, match="Manage Server"):
        await getattr(services.retraining, call)(MEMBER, guild_id=1)
    with pytest.raises(NotAllowed, match="Only the bot's owner"):
        await getattr(services.retraining, call)(dataclasses.replace(MEMBER, can_manage=True))


async def test_too_few_corrections_are_refused_with_the_numbers(services, store):
    await store.add_examples([Correction("so sad", "sadness", source="import")])
    with pytest.raises(Refusal, match="Only 1 corrections from the servers that share theirs, imports and the shell "
                                      "so far; retraining needs at least 3"):
        await services.retraining.prepare(OPERATOR)
    with pytest.raises(Refusal, match="at least 5"):
        await services.retraining.prepare(OPERATOR, overrides=TrainingOverrides(min_corrections=5))
    await store.add_examples([Correction("so happy", "happiness", source="import")])
    run = await services.retraining.prepare(OPERATOR, overrides=TrainingOverrides(min_corrections=2))
    assert run.examples == 2 and not run.running  # prepared, not started: the front end answers first


def test_knobs_come_from_finetune_config_then_settings_then_the_run(settings, store):
    service = RetrainingService(settings, store)
    defaults = FinetuneConfig()
    config = service.config_for()
    assert (config.epochs, config.learning_rate, config.batch_size) == (
        defaults.epochs, defaults.learning_rate, defaults.batch_size)  # declared once, in FinetuneConfig
    assert config.torch_threads == 1 and config.fallback_base == settings.model  # the training thread budget
    tuned = RetrainingService(dataclasses.replace(settings, finetune_epochs=2.0, training_threads=2), store)
    assert (tuned.config_for().epochs, tuned.config_for().torch_threads) == (2.0, 2)
    run = tuned.config_for(force=True, overrides=TrainingOverrides(epochs=7, learning_rate=1e-3, threads=1,
                                                                   base="v3", replay="r.csv"))
    assert (run.epochs, run.learning_rate, run.torch_threads, run.base, run.replay, run.force) == (
        7, 1e-3, 1, "v3", "r.csv", True)
    assert not config.save_refused and tuned.config_for(overrides=TrainingOverrides(save_refused=True)).save_refused
    # replay unset: None, so the fine-tune replays what the base records; "none" switches it off
    assert config.replay is None and config.mix == defaults.mix == 0.5
    assert RetrainingService(dataclasses.replace(settings, finetune_mix=1.0), store).config_for().mix == 1.0
    assert service.config_for(overrides=TrainingOverrides(mix=0.25)).mix == 0.25
    off = RetrainingService(dataclasses.replace(settings, replay_path="none"), store).config_for()
    assert off.replay == "none"


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(learning_rate=-1.0), dict(threads=0), dict(min_corrections=0)])
def test_nonsense_overrides_are_refused(bad):
    with pytest.raises(Refusal, match="must be greater than 0"):
        TrainingOverrides(**bad)
    with pytest.raises(Refusal, match="mix must be above 0 and at most 1, not 1.5"):
        TrainingOverrides(mix=1.5)


async def test_rollback_serves_the_version_or_keeps_the_served_one(settings, store, worker, tmp_path):
    registry = Registry(settings.models_dir)
    for label in ("sadness", "anger"):
        name, folder = registry.allocate()
        build_tiny_model(folder, confident=label)
        registry.set_current(registry.commit(folder, {"base": "tiny", "parent": None}).name)
    service = RetrainingService(settings, store, Serving(worker))
    assert (await service.rollback(OPERATOR, "v1")).name == "v1"
    assert worker.classifier.version == "v1" and registry.current_name() == "v1"
    assert (await service.info(OPERATOR)).versions == ["v1", "v2"]

    (registry.get("v2").path / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(Refusal, match="v2 could not be loaded"):
        await service.rollback(OPERATOR, "v2")
    assert worker.classifier.version == "v1" and registry.current_name() == "v1"  # the pointer follows what is served
    (registry.get("v2").path / "config.json").write_text("{ broken")
    with pytest.raises(Refusal, match="v2 .* is not a complete model.*current is still v1"):
        await service.rollback(OPERATOR, "v2")  # refused before the pointer moves
    with pytest.raises(Refusal, match="v9"):
        await service.rollback(OPERATOR, "v9")


async def test_a_failed_first_deploy_clears_current_so_a_restart_serves_the_base_model(settings, store, worker):
    """The child points current at the candidate; if it then cannot load and nothing was current before,
    current must not stay on it (the next start would fail to load it)."""
    registry = Registry(settings.models_dir)
    _, folder = registry.allocate()
    build_tiny_model(folder)
    version = registry.commit(folder, {"base": "tiny", "parent": None})
    registry.set_current(version.name, reason="deployed")
    (version.path / "model.safetensors").write_bytes(b"truncated by a full disk")
    service = RetrainingService(settings, store, Serving(worker))
    error = await service.deploy(str(version.path), version.name, previous=None)
    assert error is not None and "incomplete or corrupt" in error
    assert worker.classifier.version == "base"
    assert registry.current_name() is None
    assert registry.history()[-1]["version"] is None and "v1" in registry.history()[-1]["reason"]
