"""The bot's flows as plain Python, one module each, shared by the cogs, the shell and the CLI.

Front ends parse their input into the typed requests here, call a service, and render the
typed result (:mod:`bot.render` has the Discord and the plain-text forms). No Discord object
crosses into this package.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.services.common import Actor, NotAllowed, Refusal, Serving
from bot.services.correcting import CorrectingService
from bot.services.guild_config import GuildConfigService
from bot.services.guild_data import GuildDataService
from bot.services.mood import MoodService
from bot.services.privacy import InFlight, PrivacyService
from bot.services.retraining import RetrainingService
from bot.services.review import ReviewService
from bot.services.tagging import TaggingService
from bot.store import GuildSettings
from bot.store import open_store as store_at

__all__ = ["Actor", "NotAllowed", "Refusal", "Services", "Serving", "open_store"]


async def open_store(settings, **options):
    """The database every front end serves from (SQLite or PostgreSQL), with the defaults the settings give."""
    options.setdefault("pool_size", settings.db_pool_size)
    return await store_at(settings.db_path, defaults=GuildSettings(threshold=settings.threshold), **options)


@dataclass
class Services:
    """Every service, wired to one store and one served model."""

    serving: Serving
    tagging: TaggingService
    correcting: CorrectingService
    retraining: RetrainingService
    mood: MoodService
    privacy: PrivacyService
    guild_config: GuildConfigService
    review: ReviewService
    guild_data: GuildDataService

    @classmethod
    def build(cls, settings, store, worker) -> Services:
        serving = Serving(worker, str(settings.models_dir))
        inflight = InFlight()  # one view of the work under way, so a forget or a delete reaches all of it
        return cls(serving=serving, tagging=TaggingService(settings, store, serving, inflight),
                   correcting=CorrectingService(store, serving, inflight),
                   retraining=RetrainingService(settings, store, serving), mood=MoodService(store),
                   privacy=PrivacyService(settings, store, inflight), guild_config=GuildConfigService(store),
                   review=ReviewService(store), guild_data=GuildDataService(settings, store, serving))
