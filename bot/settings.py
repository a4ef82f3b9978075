"""One frozen settings object, read once from the environment (and ``.env``).

Every knob has a default here and a commented line in ``.env.example``. The token is kept
out of ``repr`` so it cannot reach a log line or a traceback by accident.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from model.defaults import DEFAULT_MODEL


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and the fix."""


# Three dot-separated base64url parts: the shape of every Discord bot token.
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}$")


@dataclass(frozen=True)
class Settings:
    token: str = field(default="", repr=False)
    model: str = DEFAULT_MODEL
    device: str = "auto"
    quantize: str = "auto"
    db_path: Path = Path("data/emotion.db")
    models_dir: Path = Path("data/models")
    inference_threads: int = 1
    training_threads: int = 1
    max_batch: int = 32
    threshold: float = 0.5
    reaction_max_age: float = 30.0
    channel_reactions_per_s: float = 4.0
    global_requests_per_s: float = 45.0
    retention_days: float = 30.0
    min_corrections: int = 20
    #: None: FinetuneConfig's default (the training defaults are declared there only).
    finetune_epochs: float | None = None
    finetune_lr: float | None = None
    finetune_batch_size: int | None = None
    replay_path: str = ""
    replay_ratio: float = 4.0
    guild_id: int | None = None
    log_level: str = "INFO"

    def require_token(self) -> str:
        """The token, checked for shape; never echoed back in the error."""
        token = self.token.strip()
        if not token:
            raise SettingsError("DISCORD_TOKEN is not set: copy .env.example to .env and put your bot token there")
        if not _TOKEN_SHAPE.match(token):
            raise SettingsError(
                "DISCORD_TOKEN does not look like a bot token (three parts separated by dots): "
                "copy it again from the Developer Portal's Bot page into .env (see .env.example)")
        return token


_ENV = {
    "token": "DISCORD_TOKEN", "model": "EMOTION_MODEL", "device": "EMOTION_DEVICE",
    "quantize": "EMOTION_QUANTIZE", "db_path": "EMOTION_DB", "models_dir": "EMOTION_MODELS_DIR",
    "inference_threads": "EMOTION_INFERENCE_THREADS", "training_threads": "EMOTION_TRAINING_THREADS",
    "max_batch": "EMOTION_MAX_BATCH", "threshold": "EMOTION_THRESHOLD",
    "reaction_max_age": "EMOTION_REACTION_MAX_AGE", "channel_reactions_per_s": "EMOTION_CHANNEL_REACTIONS_PER_S",
    "global_requests_per_s": "EMOTION_GLOBAL_REQUESTS_PER_S", "retention_days": "EMOTION_RETENTION_DAYS",
    "min_corrections": "EMOTION_MIN_CORRECTIONS", "finetune_epochs": "EMOTION_FINETUNE_EPOCHS",
    "finetune_lr": "EMOTION_FINETUNE_LR", "finetune_batch_size": "EMOTION_FINETUNE_BATCH_SIZE",
    "replay_path": "EMOTION_REPLAY_PATH",
    "replay_ratio": "EMOTION_REPLAY_RATIO", "guild_id": "EMOTION_GUILD_ID", "log_level": "EMOTION_LOG_LEVEL",
}

_CHOICES = {"quantize": {"auto", "int8", "none"}, "log_level": {"DEBUG", "INFO", "WARNING", "ERROR"}}


def load_settings(env: dict[str, str] | None = None, *, dotenv: bool = True) -> Settings:
    """Build :class:`Settings` from ``env`` (default: ``os.environ`` after loading ``.env``)."""
    if env is None:
        env = dict(os.environ)
        if dotenv:  # read, not loaded: the token must not reach child processes' environments
            from dotenv import dotenv_values

            env = {**{k: v for k, v in dotenv_values().items() if v is not None}, **env}
    values: dict = {}
    for f in fields(Settings):
        name = _ENV[f.name]
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            continue
        raw = raw.strip()
        kind = f.type.replace(" | None", "") if isinstance(f.type, str) else f.type
        try:
            value = {"int": int, "float": float, "Path": Path}.get(kind, str)(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a valid {kind}") from None
        if f.name in _CHOICES:
            value = value.upper() if f.name == "log_level" else value.lower()
            if value not in _CHOICES[f.name]:
                raise SettingsError(f"{name} must be one of {sorted(_CHOICES[f.name])}, not {raw!r}")
        values[f.name] = value
    settings = Settings(**values)
    if not 0.0 <= settings.threshold <= 1.0:
        raise SettingsError(f"EMOTION_THRESHOLD must be between 0 and 1, not {settings.threshold}")
    for name in ("reaction_max_age", "channel_reactions_per_s", "global_requests_per_s", "retention_days",
                 "finetune_epochs", "finetune_lr"):
        if getattr(settings, name) is not None and getattr(settings, name) <= 0:
            raise SettingsError(f"{_ENV[name]} must be greater than 0")
    for name in ("inference_threads", "training_threads", "max_batch", "min_corrections", "finetune_batch_size"):
        if getattr(settings, name) is not None and getattr(settings, name) < 1:
            raise SettingsError(f"{_ENV[name]} must be at least 1")
    return settings
