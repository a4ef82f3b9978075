"""Chat messages as the model can read them: one function for training, evaluation and inference.

Why: a BERT WordPiece vocabulary has no emoji, so ``lmao 💀💀 i can't 😭`` reaches the model as
``l ##ma ##o [UNK] i can ' t [UNK]``, and in chat the emoji is often the emotion. Discord's own
markup (``<@123>``, ``<:pepehands:456>``, links, code blocks) is noise the model never saw in training.

:func:`normalize` (``chat`` text form):

- Unicode emoji become their CLDR names (the ``emoji`` package): ``😭`` → ``loudly crying face``;
  skin tones are dropped (``👍🏽`` → ``thumbs up``). Names rather than new vocabulary tokens: the
  pretrained encoder already knows the words, so every emoji means something from the first step,
  including the thousands no training set shows (``benchmarks/accuracy.md`` has the measurement).
- Discord custom emoji ``<:pepe_cry:123>`` / ``<a:PepeHands:1>`` become their names split into words
  (``pepe cry``, ``pepe hands``); the name is all a reader of the text sees of it too.
- User, role and channel mentions become ``@user``, ``@role``, ``#channel``; slash-command mentions
  ``/name``; timestamps ``<t:…>`` ``time``; URLs ``link``; fenced code blocks and inline code ``code``.
  Who or what is named does not change the emotion, and ids are noise.
- Quoted lines (``> …``, and everything after ``>>> ``) are someone else's words: they are dropped,
  so they do not decide the label. A message that is only a quote normalises to ``""``.
- Elongations and shouting are kept as signal: a run of one character is capped at three
  (``soooooo`` → ``sooo``, ``!!!!!!`` → ``!!!``), which keeps the stretch but gives the tokenizer one
  spelling of it; case is left as written (an uncased tokenizer lowercases it; a cased one sees it).
- Spoiler bars ``||…||`` and emphasis markers are removed, keeping the words; whitespace is collapsed.

``raw`` keeps the text as written (apart from :func:`model.text.encodable`); a model records its
form in ``config.text_form`` (``train --text-form``), and one without the attribute reads ``chat``.
"""

from __future__ import annotations

import re
from functools import lru_cache

import emoji

from model.text import encodable

#: The text forms a model can be trained on; ``config.text_form`` names one.
TEXT_FORMS = ("chat", "raw")
DEFAULT_TEXT_FORM = "chat"

_FENCED = re.compile(r"```.*?(```|$)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_CUSTOM_EMOJI = re.compile(r"<a?:([A-Za-z0-9_~]{1,64}):\d+>")
_USER = re.compile(r"<@!?\d+>")
_ROLE = re.compile(r"<@&\d+>")
_CHANNEL = re.compile(r"<#\d+>")
_COMMAND = re.compile(r"</([\w\- ]{1,64}):\d+>")
_TIMESTAMP = re.compile(r"<t:-?\d+(?::[tTdDfFR])?>")
_URL = re.compile(r"<?(?:https?://|www\.)[^\s>]+>?", re.IGNORECASE)
_SPOILER = re.compile(r"\|\|(.+?)\|\|", re.DOTALL)
_EMPHASIS = re.compile(r"(\*\*\*|\*\*|__|~~)(?=\S)(.+?)(?<=\S)\1")
_RUN = re.compile(r"(.)\1{3,}", re.DOTALL)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_SKIN_TONE = re.compile(r"_(?:light|medium-light|medium|medium-dark|dark)_skin_tone")
_SPACE = re.compile(r"\s+")


def _without_quotes(text: str) -> str:
    """``text`` without its quoted lines: ``> `` quotes one line, ``>>> `` the rest of the message."""
    kept = []
    for line in text.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith(">>> ") or stripped == ">>>":
            break
        if stripped.startswith("> ") or stripped == ">":
            continue
        kept.append(line)
    return "\n".join(kept)


def has_own_words(text: str) -> bool:
    """Whether ``text`` holds anything besides quoted lines (cheap: the bot asks before tagging)."""
    return bool(_without_quotes(text).strip())


def _words(name: str) -> str:
    """``pepe_cry`` / ``PepeHands`` / ``kekw`` → ``pepe cry`` / ``Pepe Hands`` / ``kekw``."""
    return _CAMEL.sub(" ", name.replace("_", " ").replace("~", " ").strip())


@lru_cache(maxsize=4096)
def _emoji_name(char: str) -> str:
    name = emoji.demojize(char, delimiters=("", ""))
    return " " + _SKIN_TONE.sub("", name).replace("_", " ").replace("-", " ").strip() + " "


def _demojize(text: str) -> str:
    if not emoji.emoji_count(text):
        return text
    return "".join(_emoji_name(tok.chars) if isinstance(tok.value, emoji.EmojiMatch) else tok.chars
                   for tok in emoji.analyze(text, non_emoji=True, join_emoji=True))


def normalize(text: str) -> str:
    """``text`` in the ``chat`` form (see the module docstring); ``""`` when nothing of the writer's own is left."""
    text = encodable(text)
    text = _without_quotes(text)
    text = _FENCED.sub(" code ", text)
    text = _INLINE_CODE.sub(" code ", text)
    text = _CUSTOM_EMOJI.sub(lambda m: f" {_words(m.group(1))} ", text)
    text = _ROLE.sub(" @role ", text)
    text = _USER.sub(" @user ", text)
    text = _CHANNEL.sub(" #channel ", text)
    text = _COMMAND.sub(lambda m: f" /{m.group(1)} ", text)
    text = _TIMESTAMP.sub(" time ", text)
    text = _URL.sub(" link ", text)
    text = _SPOILER.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\2", text)
    text = _demojize(text)
    text = _RUN.sub(lambda m: m.group(1) * 3, text)
    return _SPACE.sub(" ", text).strip()


def prepare(text: str, form: str = DEFAULT_TEXT_FORM) -> str:
    """``text`` as a model trained on ``form`` reads it: :func:`normalize` for ``chat``, as written for ``raw``."""
    return normalize(text) if form == "chat" else encodable(text)


def text_form(config) -> str:
    """The text form a model (its ``config``) was trained on; a model that records none reads ``chat``."""
    form = getattr(config, "text_form", None)
    return form if form in TEXT_FORMS else DEFAULT_TEXT_FORM
