"""Every server learns on its own: isolation of lines, owner-only base, hot swap per server, leave and forget."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from bot.services import Actor, NotAllowed, Refusal, Serving
from bot.services.guild_data import DAY, GuildDataService
from bot.services.retraining import RetrainingService
from bot.store import Correction, GuildSettings, PredictionRow
from model import finetune
from model.classifier import Classifier
from model.registry import Registry, server_root
from model.worker import InferenceWorker
from tests.helpers import build_tiny_model, fast_finetune_config

A, B, C = 111, 222, 333
ADMIN_A = Actor(user_id=1, guild_id=A, can_manage=True, name="ann")
ADMIN_B = Actor(user_id=2, guild_id=B, can_manage=True, name="bob")
OWNER = Actor.operator("owner")
SAD = ["i am so sad", "sad sad today", "so sad sorry", "sad ugh", "very sad"]
ANGRY = ["i am so angry", "angry angry today", "so angry why", "angry hate", "very angry"]


async def correct(store, guild: int, texts, label: str, first_id: int) -> None:
    for i, text in enumerate(texts):
        await store.add_correction(Correction(text, label, guild_id=guild, channel_id=guild + 1,
                                              message_id=first_id + i, author_id=7, corrector_id=8))


@pytest.mark.parametrize("call", ["prepare", "rollback", "info"])
async def test_an_admin_of_one_server_cannot_act_on_anothers_line(services, call):
    with pytest.raises(NotAllowed, match="only .* for the server you are in"):
        await getattr(services.retraining, call)(ADMIN_B, guild_id=A)
    with pytest.raises(NotAllowed, match="Only the bot's owner"):  # nor on the base, which every server shares
        await getattr(services.retraining, call)(ADMIN_B)


async def test_a_servers_retrain_takes_its_own_corrections_only_and_the_base_only_shared_ones(services, store):
    await correct(store, A, SAD, "sadness", 1000)
    await correct(store, B, ANGRY, "anger", 2000)
    await correct(store, C, ["wow really"] * 1, "surprise", 3000)
    await store.add_examples([Correction("oh sure yeah right", "sarcasm", source="import")])

    run_a = await services.retraining.prepare(ADMIN_A, guild_id=A)
    run_b = await services.retraining.prepare(ADMIN_B, guild_id=B)
    assert sorted(t for t, _ in run_a.job.examples) == sorted(SAD) and run_a.config.guild_id == A
    assert sorted(t for t, _ in run_b.job.examples) == sorted(ANGRY) and run_b.config.guild_id == B
    assert run_a.config.head_learning_rate == run_a.config.head_learning_rate > run_a.config.learning_rate

    # the base: no server shares yet, so the operator's import only (too few)
    with pytest.raises(Refusal, match="Only 1 corrections from the servers that share"):
        await services.retraining.prepare(OWNER)
    await store.update_guild_settings(B, share=True)
    run = await services.retraining.prepare(OWNER)
    assert sorted(t for t, _ in run.job.examples) == sorted([*ANGRY, "oh sure yeah right"])
    assert run.config.guild_id is None
    assert (await services.retraining.info(OWNER)).corrections == 6
    assert (await services.retraining.info(ADMIN_A, guild_id=A)).corrections == 5


async def test_while_one_server_trains_another_is_told_without_names(services, store):
    await correct(store, A, SAD, "sadness", 1000)
    await correct(store, B, ANGRY, "anger", 2000)

    class Running:
        running = True
        started_by = "ann"
        guild_id = A

    services.retraining.running = Running()
    with pytest.raises(Refusal) as refused:
        await services.retraining.prepare(ADMIN_B, guild_id=B)
    assert "another model" in str(refused.value) and "ann" not in str(refused.value)
    with pytest.raises(Refusal, match="started by ann"):
        await services.retraining.prepare(ADMIN_A, guild_id=A)


@pytest.fixture(scope="module")
def wide_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("wide") / "model", confident="happiness", word_std=0.5)


def train_line(settings, model_dir, guild: int, sad_label: str, angry_label: str, **changes) -> str:
    """Train ``guild``'s line (as its /retrain's child would) and return the version's folder."""
    rows = [(t, sad_label) for t in SAD] + [(t, angry_label) for t in ANGRY]
    config = fast_finetune_config(settings.models_dir.parent, model_dir, base=None, fallback_base=str(model_dir),
                                  models_dir=str(settings.models_dir), guild_id=guild, force=True,
                                  head_learning_rate=5e-2, **changes)
    return finetune.run(rows, config).path


@pytest.fixture
async def served(settings, store, wide_dir):
    classifier = Classifier.load(wide_dir, version="base")
    worker = InferenceWorker(classifier, max_wait=0.001).start()
    try:
        yield RetrainingService(settings, store, Serving(worker, str(settings.models_dir))), worker
    finally:
        await worker.close()


async def test_each_servers_deploy_and_rollback_touch_its_own_line_only(settings, served, wide_dir):
    service, worker = served
    path_a = train_line(settings, wide_dir, A, "sadness", "anger")
    path_b = train_line(settings, wide_dir, B, "anger", "sadness")
    assert await service.deploy(path_a, "v1", previous=None, guild_id=A) is None
    assert await service.deploy(path_b, "v1", previous=None, guild_id=B) is None
    assert worker.classifier.version == "base" and set(worker.heads) == {A, B}

    async def labels(guild):
        return [(await worker.classify(t, guild)).label for t in ("sad sad sad", "angry today")]

    assert await labels(A) == ["sadness", "anger"]
    assert await labels(B) == ["anger", "sadness"]
    assert await labels(C) == ["happiness", "happiness"]  # a server that never retrained: the base
    info = await service.info(ADMIN_A, guild_id=A)
    assert info.current.name == "v1" and info.serving_version == "v1@base" and info.versions == ["v1"]

    rolled = await service.rollback(ADMIN_A, "base", guild_id=A)
    assert rolled is None and A not in worker.heads and Registry(server_root(settings.models_dir, A)).current() is None
    assert await labels(A) == ["happiness", "happiness"]
    assert await labels(B) == ["anger", "sadness"]  # B's line untouched by A's rollback
    assert (await service.rollback(ADMIN_A, "v1", guild_id=A)).name == "v1"
    assert await labels(A) == ["sadness", "anger"]
    with pytest.raises(Refusal, match="no earlier version of this server's model"):
        await service.rollback(ADMIN_A, guild_id=A)


async def test_a_damaged_server_version_leaves_that_server_on_what_it_had(settings, served, wide_dir):
    service, worker = served
    path = train_line(settings, wide_dir, A, "sadness", "anger")
    (server_root(settings.models_dir, A) / "v1" / "head.safetensors").write_bytes(b"cut short by a full disk")
    error = await service.deploy(path, "v1", previous=None, guild_id=A)
    assert error is not None and "cannot be read" in error
    assert A not in worker.heads and Registry(server_root(settings.models_dir, A)).current_name() is None


async def test_a_servers_hot_swap_under_load_fails_nothing_and_moves_no_other_server(settings, served, wide_dir):
    service, worker = served
    path_a = train_line(settings, wide_dir, A, "sadness", "anger")
    path_a2 = train_line(settings, wide_dir, A, "anger", "sadness")  # v2: the other way round
    path_b = train_line(settings, wide_dir, B, "anger", "sadness")
    await service.deploy(path_a, "v1", previous=None, guild_id=A)
    await service.deploy(path_b, "v1", previous=None, guild_id=B)

    async def traffic():
        return await asyncio.gather(*(worker.classify(t, g) for _ in range(30)
                                      for g in (A, B) for t in ("sad sad sad", "angry today")))

    load = asyncio.ensure_future(traffic())
    await asyncio.sleep(0.01)
    assert await service.deploy(path_a2, "v2", previous="v1", guild_id=A) is None  # while the load runs
    results = await load
    b_results = results[2::4] + results[3::4]
    assert len(results) == 120 and all(r.label in ("sadness", "anger") for r in results)  # nothing failed
    assert {r.label for r in results[2::4]} == {"anger"} and {r.label for r in results[3::4]} == {"sadness"}
    assert {r.version for r in b_results} == {"v1@base"}
    assert [(await worker.classify(t, A)).label for t in ("sad sad sad", "angry today")] == ["anger", "sadness"]


async def test_a_new_base_serves_only_the_heads_trained_on_it(settings, served, wide_dir, tmp_path):
    service, worker = served
    await service.deploy(train_line(settings, wide_dir, A, "sadness", "anger"), "v1", previous=None, guild_id=A)
    registry = Registry(settings.models_dir)
    _, folder = registry.allocate()
    build_tiny_model(folder, confident="fear", word_std=0.5, seed=3)
    version = registry.commit(folder, {"base": "tiny", "parent": None})
    registry.set_current(version.name)
    assert await service.deploy(str(version.path), version.name, previous=None) is None
    assert worker.classifier.version == "v1" and A not in worker.heads  # A's head sits on the old base
    info = await service.info(ADMIN_A, guild_id=A)
    assert info.note is not None and "earlier base" in info.note and info.serving_version == "v1"


async def test_leaving_keeps_a_server_for_the_grace_period_then_forgets_all_of_it(settings, store, served, wide_dir):
    service, worker = served
    settings = dataclasses.replace(settings, guild_grace_days=7)
    data = GuildDataService(settings, store, service.serving)
    await service.deploy(train_line(settings, wide_dir, A, "sadness", "anger"), "v1", previous=None, guild_id=A)
    await service.deploy(train_line(settings, wide_dir, B, "anger", "sadness"), "v1", previous=None, guild_id=B)
    for guild in (A, B):
        await correct(store, guild, SAD, "sadness", guild * 10)
        await store.update_guild_settings(guild, threshold=0.3)
        await store.record_prediction(PredictionRow(guild_id=guild, channel_id=1, message_id=guild * 100,
                                                    author_id=7, label="joy", probability=0.9, model_version="v1",
                                                    created_at=time.time()))

    await data.left(A)
    assert A not in worker.heads and B in worker.heads
    assert await data.purge(now=time.time() + 6 * DAY) == []  # within the grace period: nothing goes
    assert await data.present([A, B]) == [A]  # invited back: everything is there again
    assert A in worker.heads and await store.count_corrections(guild_id=A) == 5

    await data.left(A)
    forgotten = await data.purge(now=time.time() + 8 * DAY)
    assert [f.guild_id for f in forgotten] == [A] and forgotten[0].versions == 1
    assert forgotten[0].counts["corrections"] == 5 and forgotten[0].counts["predictions"] == 1
    assert await store.count_corrections(guild_id=A) == 0 and await store.get_prediction(A * 100) is None
    assert await store.get_guild_settings(A) == GuildSettings()
    assert not server_root(settings.models_dir, A).exists() and A not in worker.heads
    # B is untouched
    assert await store.count_corrections(guild_id=B) == 5 and await store.get_prediction(B * 100) is not None
    assert (await store.get_guild_settings(B)).threshold == 0.3 and B in worker.heads
    assert await data.purge(now=time.time() + 30 * DAY) == []  # forgotten once


async def test_forgetting_a_server_at_once_is_the_operators(settings, store):
    data = GuildDataService(settings, store)
    await correct(store, A, SAD, "sadness", 1000)
    with pytest.raises(NotAllowed, match="owner"):
        await data.forget(ADMIN_A, A)
    assert (await data.forget(OWNER, A)).counts["corrections"] == 5


async def test_servers_removed_while_the_bot_was_offline_are_marked_at_start(settings, store, wide_dir):
    train_line(settings, wide_dir, A, "sadness", "anger")  # A: a model line
    await store.update_guild_settings(C, threshold=0.2)  # C: only settings
    await correct(store, B, SAD, "sadness", 1000)  # B: corrections, and the bot is still there
    data = GuildDataService(dataclasses.replace(settings, guild_grace_days=0), store)
    assert await data.absent([B]) == [A, C]
    assert await data.present([B, C]) == [C]  # C invited the bot back before the purge
    assert [f.guild_id for f in await data.purge(now=time.time() + 1)] == [A]
    assert await store.count_corrections(guild_id=B) == 5
