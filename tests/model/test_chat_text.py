"""Chat-aware text (model/chat_text.py): Discord-shaped messages become what the model can read, the same way
in training, evaluation and the bot."""

from __future__ import annotations

import pytest

from model.chat_text import has_own_words, normalize, prepare, text_form


@pytest.mark.parametrize(("message", "expected"), [
    # unicode emoji: names the pretrained vocabulary knows (the tokenizer had [UNK] for them)
    ("lmao 💀💀 i can't 😭", "lmao skull skull i can't loudly crying face"),
    ("nice 👍🏽", "nice thumbs up"),  # skin tone dropped
    ("❤️❤️❤️", "red heart red heart red heart"),
    # Discord custom emoji: their names, split into words
    ("<:pepe_cry:811223344556677889> <a:PepeHands:1>", "pepe cry Pepe Hands"),
    # mentions, channels, roles, slash commands, timestamps: who or what, not how it feels
    ("thanks <@123456789012345678> and <@!42> in <#99> cc <@&7>", "thanks @user and @user in #channel cc @role"),
    ("try </retrain:123> <t:1700000000:R>", "try /retrain time"),
    # links and code
    ("look https://cdn.discordapp.com/a.png?x=1 lol", "look link lol"),
    ("```py\nraise ValueError('boom')\n``` why", "code why"),
    ("run `pip install` ugh", "run code ugh"),
    # spoilers and emphasis keep their words
    ("||he dies|| **NO WAY**", "he dies NO WAY"),
    # elongation and shouting stay as signal: capped, never erased; case as written
    ("sooooooo goooood!!!!!!!", "sooo goood!!!"),
    ("WHY WOULD YOU DO THIS", "WHY WOULD YOU DO THIS"),
])
def test_discord_messages_become_words_the_model_can_read(message, expected):
    assert normalize(message) == expected


def test_quoted_lines_are_someone_elses_words_and_do_not_decide_the_label():
    assert normalize("> you are all idiots\nlol i love this server") == "lol i love this server"
    assert normalize("i agree\n>>> everything here\nis quoted") == "i agree"
    assert normalize("> only a quote") == "" and not has_own_words("> only a quote\n>   ")
    assert has_own_words("> quote\nmine") and has_own_words(">not a quote, a face >_<")
    assert normalize(">not a quote") == ">not a quote"


def test_broken_text_and_long_messages_still_normalise():
    assert normalize("\ud83d oops") == "\ufffd oops"  # a lone surrogate (JSON escape) cannot break the batch
    long = "so angry 😡 " * 400  # 4,000+ characters
    out = normalize(long)
    assert out.startswith("so angry enraged face so angry") or out.startswith("so angry pouting face so angry")
    assert normalize("") == "" and normalize("   \n ") == ""


def test_the_model_records_its_text_form_and_raw_keeps_the_text():
    class Config:
        pass

    config = Config()
    assert text_form(config) == "chat"  # a model that records none reads chat
    config.text_form = "raw"
    assert text_form(config) == "raw" and prepare("hi 😭 <@1>", "raw") == "hi 😭 <@1>"
    assert prepare("hi 😭 <@1>", "chat") == "hi loudly crying face @user"


def test_the_classifier_and_training_tokenize_the_same_normalised_text(tmp_path):
    from datasets import Dataset

    from model.classifier import Classifier
    from model.hf import tokenize
    from tests.helpers import build_tiny_model

    clf = Classifier.load(build_tiny_model(tmp_path / "m"), device="cpu")
    message = "so happy 😄 <@123> > no"
    ids = clf.encode([message])[0]
    assert ids == clf.tokenizer(normalize(message))["input_ids"]
    unk = clf.tokenizer.unk_token_id
    trained = tokenize(Dataset.from_dict({"text": [message]}), clf.tokenizer, max_length=64)["input_ids"][0]
    assert trained == ids
    raw = tokenize(Dataset.from_dict({"text": [message]}), clf.tokenizer, max_length=64, text_form="raw")
    assert raw["input_ids"][0] != ids and unk in raw["input_ids"][0]
