"""/correct and Apps ▸ Correct emotion through simcord, with every bad input."""

from __future__ import annotations

import discord
import pytest
import simcord
from simcord.enums import ChannelType

from tests.helpers import build_guild, reactions, running


@pytest.fixture
def world(simcord_env):
    return (simcord_env, *build_guild(simcord_env, members=("alice", "bob"), manager=None))


def link(guild, channel, message) -> str:
    return f"https://discord.com/channels/{guild.id}/{channel.id}/{message.id}"


async def assert_refused(env, user, channel, message: str, expected: str) -> None:
    """``/correct message`` by ``user`` answers with ``expected`` and stores no correction."""
    r = await user.slash(channel, "correct", message=message, emotion="anger")
    assert expected in r.response.content
    assert await env.bot.store.count_corrections() == 0


async def test_correct_by_id_stores_the_correction_and_swaps_the_reaction(world):
    env, guild, general, alice, bob = world
    msg = await alice.send(general, "ugh not again")
    assert reactions(msg) == [("😄", 1)]
    r = await bob.slash(general, "correct", message=str(msg.id), emotion="anger")
    assert r.ephemeral
    assert "happiness" in r.response.content and "anger" in r.response.content
    assert reactions(general.history()[-1]) == [("😠", 1)]
    assert await env.bot.store.corrections_for_training() == [("ugh not again", "anger")]


async def test_correct_by_link_and_case_insensitive_label(world):
    env, guild, general, alice, bob = world
    msg = await alice.send(general, "wow really")
    r = await bob.slash(general, "correct", message=link(guild, general, msg), emotion="Surprise")
    assert "surprise" in r.response.content
    assert await env.bot.store.corrections_for_training() == [("wow really", "surprise")]


async def test_a_later_correction_by_the_same_user_replaces_the_earlier(world):
    env, guild, general, alice, bob = world
    msg = await alice.send(general, "oh sure")
    await bob.slash(general, "correct", message=str(msg.id), emotion="anger")
    await bob.slash(general, "correct", message=str(msg.id), emotion="sarcasm")
    assert await env.bot.store.corrections_for_training() == [("oh sure", "sarcasm")]


async def test_unknown_label_is_refused_with_the_valid_ones(world):
    env, guild, general, alice, bob = world
    msg = await alice.send(general, "hmm")
    r = await bob.slash(general, "correct", message=str(msg.id), emotion="hangry")
    assert r.ephemeral and "not an emotion this model knows" in r.response.content and "sadness" in r.response.content
    assert await env.bot.store.count_corrections() == 0


@pytest.mark.parametrize("ref, expected", [
    ("not a link", "not a message link or id"),
    ("https://discord.com/channels/@me/1/2", "direct message"),
    ("123456789012345678", "deleted or doesn't exist"),
])
async def test_bad_references_get_a_clear_message(world, ref, expected):
    env, guild, general, alice, bob = world
    r = await bob.slash(general, "correct", message=ref, emotion="anger")
    assert r.ephemeral and expected in r.response.content


async def test_a_message_from_another_server_is_refused(world):
    env, guild, general, alice, bob = world
    other = env.create_guild("Other")
    elsewhere = other.create_text_channel("x")
    carol = other.add_member(env.create_user("carol"))
    foreign = await carol.send(elsewhere, "i am so happy")
    await assert_refused(env, bob, general, link(other, elsewhere, foreign), "another server")


async def test_a_deleted_message_is_reported(world):
    env, guild, general, alice, bob = world
    msg = await alice.send(general, "soon gone")
    await alice.delete(msg)
    r = await bob.slash(general, "correct", message=str(msg.id), emotion="anger")
    assert "deleted" in r.response.content


async def test_the_bots_own_message_cannot_be_corrected(world):
    env, guild, general, alice, bob = world
    mine = await env.bot.get_channel(general.id).send("I am the bot")
    await env.settle()
    r = await bob.slash(general, "correct", message=str(mine.id), emotion="anger")
    assert "my own messages" in r.response.content


async def test_a_channel_the_user_cannot_read_is_refused(world):
    env, guild, general, alice, bob = world
    mods = guild.create_role("Mods")
    mod = guild.add_member(env.create_user("mod"), roles=[mods])
    secret = guild.create_text_channel("secret", overwrites={
        guild.default_role: discord.PermissionOverwrite(view_channel=False),
        mods: discord.PermissionOverwrite(view_channel=True),
        guild.me: discord.PermissionOverwrite(view_channel=True)})
    hidden = await mod.send(secret, "secret plans")
    await assert_refused(env, bob, general, link(guild, secret, hidden), "channels you can read")


async def test_an_opted_out_authors_message_is_not_stored(world):
    env, guild, general, alice, bob = world
    msg = await alice.send(general, "hello there")
    await alice.slash(general, "emotion optout")
    await assert_refused(env, bob, general, str(msg.id), "opted out")


async def test_autocomplete_lists_the_models_labels(world):
    env, guild, general, alice, bob = world
    choices = await bob.autocomplete(general, "correct", "emotion", "sa")
    assert [c["value"] for c in choices] == ["sadness", "sarcasm"]
    assert len(await bob.autocomplete(general, "correct", "emotion", "")) == 13


async def test_context_menu_shows_the_prediction_and_stores_the_choice(world):
    env, guild, general, alice, bob = world
    msg = await alice.send(general, "so scared right now")
    r = await bob.context_menu(general, "Correct emotion", msg)
    assert r.ephemeral and "happiness" in r.response.content
    await bob.select(r.response, ["fear"])
    assert "fear" in r.response.content and r.response.components == []
    assert await env.bot.store.corrections_for_training() == [("so scared right now", "fear")]
    assert reactions(general.history()[-1]) == [("😨", 1)]


async def test_context_menu_pages_label_sets_larger_than_25(tmp_path, bot_settings):
    from bot.client import EmotionBot
    from model.classifier import Classifier
    from model.labels import GOEMOTIONS
    from tests.helpers.tiny import build_tiny_model

    clf = Classifier.load(build_tiny_model(tmp_path / "go", GOEMOTIONS, confident="joy"), device="cpu")
    bot = EmotionBot(bot_settings, clf, store_options={"flush_interval": 0.01})
    async with running(bot) as env:
        guild, general, alice, bob = build_guild(env, "G", members=("alice", "bob"), manager=None)
        msg = await alice.send(general, "thanks so much")
        r = await bob.context_menu(general, "Correct emotion", msg)
        assert "page 1/2" in r.response.content
        await bob.click(r.response, custom_id="correct:next")
        assert "page 2/2" in r.response.content
        await bob.select(r.response, ["neutral"])
        assert await bot.store.corrections_for_training() == [("thanks so much", "neutral")]


async def test_context_menu_on_a_bot_message_is_refused(world):
    env, guild, general, alice, bob = world
    mine = await env.bot.get_channel(general.id).send("bot text")
    await env.settle()
    r = await bob.context_menu(general, "Correct emotion", mine)
    assert r.ephemeral and "my own messages" in r.response.content


# --------------------------------------------------------------------------- private threads

def private_thread(env, guild, parent, owner, *members):
    """A private thread of ``owner`` in ``parent`` that the bot and ``members`` were added to."""
    backend = env.backend
    made = backend.create_thread(parent.id, "private", owner.id, type=ChannelType.PRIVATE_THREAD)
    for member in (backend.bot_user, *members):
        backend.add_thread_member(made.id, member.id)
    return simcord.ChannelHandle(env, guild, made)


@pytest.fixture
async def secret(world):
    """alice's message in her private thread of #general; bob is not in the thread."""
    env, guild, general, alice, bob = world
    thread = private_thread(env, guild, general, alice)
    await env.settle()
    msg = await alice.send(thread, "our secret plans")
    assert reactions(msg) == [("😄", 1)]
    return thread, msg


@pytest.mark.parametrize("ref", ["link", "id", "pair"])
async def test_a_private_thread_the_member_is_not_in_is_refused_without_its_label_or_text(world, secret, ref):
    env, guild, general, alice, bob = world
    thread, msg = secret
    text = {"link": link(guild, thread, msg), "id": str(msg.id), "pair": f"{thread.id}-{msg.id}"}[ref]
    r = await bob.slash(general, "correct", message=text, emotion="anger")
    assert r.ephemeral and "channels you can read" in r.response.content
    assert "happiness" not in r.response.content and "secret" not in r.response.content
    assert await env.bot.store.count_corrections() == 0
    assert reactions(thread.history()[-1]) == [("😄", 1)]


async def test_thread_members_and_thread_managers_may_correct_in_a_private_thread(world, secret):
    env, guild, general, alice, bob = world
    thread, msg = secret
    env.backend.add_thread_member(thread.id, bob.id)
    await env.settle()
    r = await bob.slash(general, "correct", message=link(guild, thread, msg), emotion="fear")
    assert "fear" in r.response.content
    keepers = guild.create_role("Keepers", permissions=discord.Permissions(manage_threads=True))
    keeper = guild.add_member(env.create_user("keeper"), roles=[keepers])
    r = await keeper.slash(general, "correct", message=link(guild, thread, msg), emotion="anger")
    assert "anger" in r.response.content
    assert (await env.bot.store.stats())["corrections"] == 2


async def test_a_thread_member_may_use_the_menu_in_a_private_thread(world, secret):
    env, guild, general, alice, bob = world
    thread, msg = secret
    r = await alice.context_menu(thread, "Correct emotion", msg)
    assert "happiness" in r.response.content
    await alice.select(r.response, ["fear"])
    assert "fear" in r.response.content
    assert await env.bot.store.corrections_for_training() == [("our secret plans", "fear")]
