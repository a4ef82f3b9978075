"""``EmotionBot``: opens the store, starts the worker, loads the cogs; ``close()`` undoes it in reverse."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import discord
from discord.ext import commands

from bot import command_sync
from bot.cluster import IDENTIFY_WINDOW
from bot.errors import install_error_handler
from bot.pacer import ReactionPacer, SharedRateLimiter
from bot.pacer import trace_config as pacer_trace
from bot.services import Services, open_store
from bot.settings import Settings
from bot.store import Store, StoreError
from model.classifier import Classifier
from model.worker import InferenceWorker

log = logging.getLogger(__name__)

EXTENSIONS: tuple[str, ...] = (
    "bot.cogs.tagging",
    "bot.cogs.feedback",
    "bot.cogs.emotion",
    "bot.cogs.admin",
    "bot.cogs.guilds",
    "bot.cogs.stats",
    "bot.cogs.privacy",
    "bot.cogs.review",
)


#: What the bot needs where it tags and answers (README, "Setting up the Discord side", step 4).
INVITE_PERMISSIONS = discord.Permissions(view_channel=True, send_messages=True, send_messages_in_threads=True,
                                         read_message_history=True, add_reactions=True, attach_files=True)
INVITE_SCOPES = ("bot", "applications.commands")


def invite_url(application_id: int) -> str:
    """The link that adds the bot to a server with its slash commands and the permissions it needs."""
    return discord.utils.oauth_url(application_id, permissions=INVITE_PERMISSIONS, scopes=INVITE_SCOPES)


def silence_voice_warnings() -> None:
    """The bot never joins voice: discord.py's "PyNaCl/davey is not installed" warnings would only worry an admin."""
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False


def make_intents() -> discord.Intents:
    """Guilds, guild messages and message content (privileged: enable it in the Developer Portal)."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.message_content = True
    return intents


def load_classifier(settings: Settings) -> Classifier:
    """The registry's current version when there is one, else the configured model (hub id or folder)."""
    from model.registry import Registry

    current = Registry(settings.models_dir).current_path()
    source = str(current) if current is not None else settings.model
    return Classifier.load(source, device=settings.device, quantize=settings.quantize)


def freeze_startup_heap() -> None:
    """Exempt what is loaded at startup (torch, transformers, discord.py, the model) from garbage collection.

    Those objects live for the whole run, yet each full collection walks all of them: measured
    with ``benchmarks/bot_load.py``, gen-2 passes stalled the event loop 40-275 ms, growing
    with the heap. After ``gc.freeze()`` a full pass scans only what came later. Call it once,
    before connecting; not after a model swap (the old model would then never be freed).
    """
    gc.collect()
    gc.freeze()


class EmotionBot(commands.Bot):
    settings: Settings
    store: Store
    worker: InferenceWorker
    pacer: ReactionPacer
    services: Services
    started_at: float
    commands_synced: int = 0

    def __init__(self, settings: Settings, classifier: Classifier, *, store: Store | None = None,
                 store_options: dict | None = None, **options) -> None:
        """``store``: already open (the bot closes it); without one, ``setup_hook`` opens it with ``store_options``."""
        silence_voice_warnings()
        options.setdefault("http_trace", pacer_trace())  # shows the pacer discord.py's retries
        super().__init__(command_prefix=commands.when_mentioned, intents=make_intents(),
                         help_command=None, allowed_mentions=discord.AllowedMentions.none(), **options)
        self.settings = settings
        self._classifier = classifier
        self.accepting = True
        self.inflight: set[asyncio.Task] = set()
        self.started_at = time.time()
        self.store_options = store_options or {}
        self._closing: asyncio.Future | None = None
        self._announced = False
        if store is not None:
            self.store = store

    async def setup_hook(self) -> None:
        if getattr(self, "store", None) is None:
            self.store = await open_store(self.settings, **self.store_options)
        self.worker = InferenceWorker(self._classifier, max_batch=self.settings.max_batch,
                                      torch_threads=self.settings.inference_threads).start()
        self.services = Services.build(self.settings, self.store, self.worker)
        await self.services.retraining.listen()  # with PostgreSQL: follow what the other processes deploy
        heads = await self.services.serving.heads_for(self._classifier)  # the servers' own models
        if heads:
            self.services.serving.swap(self._classifier, heads)
        self.pacer = ReactionPacer(channel_rate=self.settings.channel_reactions_per_s,
                                   global_rate=self.settings.global_requests_per_s,
                                   global_limit=self._bot_wide_budget(),
                                   max_age=self.settings.reaction_max_age)
        install_error_handler(self.tree)
        for extension in EXTENSIONS:
            try:
                await self.load_extension(extension)
            except Exception:  # noqa: BLE001 - one broken cog must not stop the bot
                log.exception("failed to load extension %s", extension)
        await self.sync_commands()

    def _bot_wide_budget(self) -> SharedRateLimiter | None:
        """With PostgreSQL every process of the bot draws its reactions from one budget (EMOTION_GLOBAL_REQUESTS_PER_S
        is the bot's, not a process's); interaction responses never wait for it (Discord does not count them)."""
        lease = getattr(self.store, "lease_requests", None)
        if lease is None:
            return None
        rate = self.settings.global_requests_per_s
        return SharedRateLimiter(lambda n: lease("rest", rate, max(1.0, rate), n), rate)

    async def sync_commands(self) -> None:
        """Sync to one guild when EMOTION_GUILD_ID is set (instant), else globally (up to an hour); only when
        the commands changed since the last sync (``bot.command_sync``). In a cluster only the process
        running shard 0 syncs: the commands are the application's, not a shard's."""
        shard_ids = getattr(self, "shard_ids", None)
        if shard_ids is not None and 0 not in shard_ids:
            return
        try:
            self.commands_synced = await command_sync.sync_commands(
                self.tree, self.application_id, self.settings.guild_id,
                command_sync.state_path(self.settings.db_path, self.settings.models_dir))
        except discord.HTTPException as exc:
            log.error("could not sync slash commands (HTTP %s); they may be out of date", exc.status)

    async def on_ready(self) -> None:
        """Say once that the bot is up; while it is in no server, how to invite it."""
        if self._announced:  # a new gateway session dispatches READY again
            return
        self._announced = True
        servers = len(self.guilds)
        log.info("logged in as %s in %d %s, %d commands synced", self.user, servers,
                 "server" if servers == 1 else "servers", self.commands_synced)
        if not servers:
            log.warning("the bot is in no server yet: invite it with %s", invite_url(self.application_id))

    def track(self, task: asyncio.Task) -> None:
        """Remember in-flight work so a shutdown can let it finish."""
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    @property
    def classifier(self) -> Classifier:
        """The model being served (the one the worker runs once it has started)."""
        worker = getattr(self, "worker", None)
        return worker.classifier if worker is not None else self._classifier

    async def close(self) -> None:
        """Shut down once, whoever asks (a signal handler, ``async with``, a test): later calls wait for it."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._closing)

    async def _shutdown(self, drain_timeout: float = 5.0) -> None:
        """Stop taking messages, let in-flight ones finish, then close pacer, worker, store and gateway."""
        self.accepting = False
        pending = [t for t in self.inflight if t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending, timeout=drain_timeout)
        for name in ("pacer", "worker", "store"):
            part = getattr(self, name, None)
            if part is not None:
                try:
                    await part.close()
                except Exception:  # noqa: BLE001 - keep closing the rest
                    log.exception("closing %s failed", name)
        await super().close()


class ShardedEmotionBot(EmotionBot, commands.AutoShardedBot):
    """The bot running some shards of the application (``run --shards 0-3 --shard-count 8``).

    Discord puts a server on shard ``(guild_id >> 22) % shard_count``; each process of a cluster runs a
    disjoint range, and discord.py's AutoShardedBot runs this range in one process.
    """

    def __init__(self, *args, max_concurrency: int = 1, **options) -> None:
        super().__init__(*args, **options)
        self.max_concurrency = max(1, max_concurrency)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Discord allows ``max_concurrency`` IDENTIFYs per 5 s for the whole application, in buckets
        ``shard_id % max_concurrency``. With PostgreSQL every process of the bot, on every machine, takes its
        bucket's turn from the database; alone, discord.py's own 5-second pause between shards."""
        take_turn = getattr(self.store, "take_turn", None)
        if take_turn is None or shard_id is None:
            return await super().before_identify_hook(shard_id, initial=initial)
        bucket = shard_id % self.max_concurrency
        try:
            await take_turn(f"identify.{bucket}", IDENTIFY_WINDOW)
        except StoreError as exc:
            log.warning("could not take the IDENTIFY turn from the database (%s); waiting 5 s instead", exc)
            await super().before_identify_hook(shard_id, initial=False)


def make_bot(settings: Settings, classifier: Classifier, *, shard_ids: list[int] | None = None,
             shard_count: int | None = None, max_concurrency: int = 1, **options) -> EmotionBot:
    """One bot for every shard (the default), or the given shards of ``shard_count``."""
    if shard_ids is None and shard_count is None:
        return EmotionBot(settings, classifier, **options)
    return ShardedEmotionBot(settings, classifier, shard_ids=shard_ids, shard_count=shard_count,
                             max_concurrency=max_concurrency, **options)
