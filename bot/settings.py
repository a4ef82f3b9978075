"""One frozen settings object, read once from the environment (and ``.env`` in the working folder).

Every knob has a default here and a commented line in ``.env.example``. The token is kept
out of ``repr`` so it cannot reach a log line or a traceback by accident. ``.env`` is read from
the folder the bot starts in, the one its relative paths (``data/emotion.db``) start from; the
environment wins over it.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from model.defaults import DEFAULT_MODEL, is_hub_source


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
    #: A SQLite file (the embedded default), or a ``postgresql://`` URL (kept a str; repr hides it: a password).
    db_path: Path | str = field(default=Path("data/emotion.db"), repr=False)
    #: Connections a PostgreSQL store may hold (ignored for SQLite).
    db_pool_size: int = 10
    models_dir: Path = Path("data/models")
    inference_threads: int = 1
    training_threads: int = 1
    max_batch: int | None = None  # None: the classifier's choice for its device (32 on CPU, 512 on CUDA)
    threshold: float = 0.5
    reaction_max_age: float = 30.0
    channel_reactions_per_s: float = 3.5  # Discord allows 4: a margin for timing jitter and retries
    global_requests_per_s: float = 40.0  # Discord allows 50, shared with the bot's other requests
    retention_days: float = 30.0
    min_corrections: int = 20
    #: None: FinetuneConfig's default (the training defaults are declared there only).
    finetune_epochs: float | None = None
    finetune_lr: float | None = None
    finetune_batch_size: int | None = None
    finetune_mix: float | None = None
    #: The learning rate of a server's own model (its head; None: FinetuneConfig's head_learning_rate).
    server_lr: float | None = None
    #: Days a server's data and model are kept after the bot leaves it (0: forgotten at the next purge).
    guild_grace_days: float = 30.0
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
    "quantize": "EMOTION_QUANTIZE", "db_path": "EMOTION_DB", "db_pool_size": "EMOTION_DB_POOL_SIZE",
    "models_dir": "EMOTION_MODELS_DIR",
    "inference_threads": "EMOTION_INFERENCE_THREADS", "training_threads": "EMOTION_TRAINING_THREADS",
    "max_batch": "EMOTION_MAX_BATCH", "threshold": "EMOTION_THRESHOLD",
    "reaction_max_age": "EMOTION_REACTION_MAX_AGE", "channel_reactions_per_s": "EMOTION_CHANNEL_REACTIONS_PER_S",
    "global_requests_per_s": "EMOTION_GLOBAL_REQUESTS_PER_S", "retention_days": "EMOTION_RETENTION_DAYS",
    "min_corrections": "EMOTION_MIN_CORRECTIONS", "finetune_epochs": "EMOTION_FINETUNE_EPOCHS",
    "finetune_lr": "EMOTION_FINETUNE_LR", "finetune_batch_size": "EMOTION_FINETUNE_BATCH_SIZE",
    "finetune_mix": "EMOTION_FINETUNE_MIX", "server_lr": "EMOTION_SERVER_LR",
    "guild_grace_days": "EMOTION_GUILD_GRACE_DAYS",
    "replay_path": "EMOTION_REPLAY_PATH",
    "replay_ratio": "EMOTION_REPLAY_RATIO", "guild_id": "EMOTION_GUILD_ID", "log_level": "EMOTION_LOG_LEVEL",
}

_CHOICES = {"quantize": {"auto", "int8", "none"}, "log_level": {"DEBUG", "INFO", "WARNING", "ERROR"}}


#: What the Hugging Face libraries read from the environment themselves (most of it once, at import).
HUB_PREFIXES = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TOKENIZERS_")


def read_dotenv() -> dict[str, str]:
    """``.env`` of the working folder (not of the code's folder: relative paths in it start here); {} if none."""
    path = Path.cwd() / ".env"
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def export_hub_settings() -> None:
    """Put ``.env``'s Hugging Face variables (``HF_HUB_OFFLINE``, ``HF_HOME``, ...) into ``os.environ``.

    The hub and transformers read them from the environment, not from :class:`Settings`, so call this
    before they are imported. The environment wins; nothing else (never ``DISCORD_TOKEN``) is exported,
    so training children don't inherit the token.
    """
    for name, value in read_dotenv().items():
        if name.startswith(HUB_PREFIXES) and name not in os.environ:
            os.environ[name] = value


def load_settings(env: dict[str, str] | None = None, *, dotenv: bool = True) -> Settings:
    """Build :class:`Settings` from ``env`` (default: ``os.environ`` over ``.env`` of the working folder)."""
    from_file: dict[str, str] = {}
    if env is None:  # read, not loaded: the token must not reach child processes' environments
        from_file = read_dotenv() if dotenv else {}
        env = {**from_file, **os.environ}
    _refuse_unknown(env, from_file)
    values: dict = {}
    for f in fields(Settings):
        name = _ENV[f.name]
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            continue
        raw = raw.strip()
        kind = f.type.replace(" | None", "") if isinstance(f.type, str) else f.type
        try:
            value = {"int": int, "float": float, "Path": Path, "Path | str": database_target}.get(kind, str)(raw)
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
                 "finetune_epochs", "finetune_lr", "server_lr"):
        if getattr(settings, name) is not None and getattr(settings, name) <= 0:
            raise SettingsError(f"{_ENV[name]} must be greater than 0")
    for name in ("inference_threads", "training_threads", "max_batch", "min_corrections", "finetune_batch_size",
                 "db_pool_size"):
        if getattr(settings, name) is not None and getattr(settings, name) < 1:
            raise SettingsError(f"{_ENV[name]} must be at least 1")
    if settings.guild_grace_days < 0:
        raise SettingsError(f"EMOTION_GUILD_GRACE_DAYS must be 0 or more, not {settings.guild_grace_days}")
    if settings.finetune_mix is not None and not 0 < settings.finetune_mix <= 1:
        raise SettingsError(f"EMOTION_FINETUNE_MIX must be above 0 and at most 1, not {settings.finetune_mix}")
    _check_paths(settings)
    return settings


def _refuse_unknown(env: dict[str, str], from_file: dict[str, str]) -> None:
    """An ``EMOTION_*`` name that is no setting is a typo that would silently keep the default."""
    known = {name.removeprefix("EMOTION_") for name in _ENV.values()}
    for name in sorted(env):
        short = name.removeprefix("EMOTION_")
        if short != name and short not in known:
            where = "in .env" if name in from_file and name not in os.environ else "in the environment"
            close = difflib.get_close_matches(short, known, n=1)  # on the part after EMOTION_: it is all shared
            hint = f"did you mean EMOTION_{close[0]}?" if close else "the settings are listed in .env.example"
            raise SettingsError(f"{name} ({where}) is not a setting: {hint}")


def database_target(value: str | Path) -> Path | str:
    """EMOTION_DB / ``--db``: a ``postgresql://`` URL stays a str; anything else is a SQLite file's path."""
    from bot.store.urls import is_postgres_url

    return value if is_postgres_url(value) else Path(value)


def _check_paths(settings: Settings) -> None:
    """Paths that cannot work, refused now rather than when the bot first writes or retrains."""
    db = settings.db_path
    if isinstance(db, Path):  # a PostgreSQL URL is checked by the server, at the first connection
        if db.is_dir():
            raise SettingsError(f"EMOTION_DB={db} is a folder: name a file inside it, e.g. {db / 'emotion.db'}")
        blocker = next((p for p in db.parents if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise SettingsError(f"EMOTION_DB={db}: {blocker} is a file, not a folder: choose another path")
    replay = settings.replay_path
    if replay and replay.strip().lower() != "none" and not Path(replay).expanduser().exists() \
            and not is_hub_source(replay):
        raise SettingsError(f"EMOTION_REPLAY_PATH={replay}: no such file or folder (relative paths start in "
                            f"{Path.cwd()}): name a CSV/JSONL file or a GoEmotions folder, leave it empty "
                            "(the data the model records it was trained on), or none (no replay)")
