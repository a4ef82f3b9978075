"""``/retrain`` and ``/model``: fine-tune on the community's corrections, hot-swap, roll back.

Training runs in a child process (:class:`model.jobs.TrainingJob`) with its own thread budget,
so tagging goes on; its progress edits one message. A deployed version replaces the worker's
model between two batches: no request fails and nothing restarts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import UserError, is_manager, manager_only
from model.classifier import Classifier, ModelLoadError
from model.finetune_config import FinetuneConfig, FinetuneResult
from model.jobs import TrainingBusy, TrainingCancelled, TrainingFailed, TrainingJob
from model.registry import Registry, RegistryError

log = logging.getLogger(__name__)

EDIT_EVERY = 2.0  # seconds between progress edits: Discord rate-limits message edits
TOKEN_LIFETIME = 14 * 60  # an interaction token can edit its response for 15 minutes


def progress_bar(fraction: float, width: int = 20) -> str:
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    return f"`{'█' * filled}{'░' * (width - filled)}` {fraction:4.0%}"


def progress_text(event: dict, examples: int) -> str:
    head = f"🧠 Retraining on {examples} corrections"
    if event.get("event") == "progress" and event.get("max_steps"):
        eta = event.get("eta_s")
        loss = event.get("loss")
        parts = [f"epoch {event.get('epoch', 0):.1f}", f"step {event['step']}/{event['max_steps']}"]
        if loss is not None:
            parts.append(f"loss {loss:.3f}")
        if eta is not None:
            parts.append(f"about {int(eta // 60)}m{int(eta % 60):02d}s left")
        return f"{head}\n{progress_bar(event['step'] / event['max_steps'])}\n" + " · ".join(parts)
    stage = event.get("stage", "starting")
    what = {"tokenize": "preparing data", "evaluate": "evaluating", "train": "training", "save": "saving"}
    return f"{head}\n{progress_bar(0 if stage != 'save' else 1)}\n{what.get(stage, stage)}…"


def metrics_line(name: str, m: dict) -> str:
    if not m:
        return f"{name}: -"
    return f"{name}: accuracy {m.get('accuracy', 0):.3f} · macro-F1 {m.get('macro_f1', 0):.3f}"


def result_text(result: FinetuneResult) -> str:
    verdict = f"✅ Deployed **{result.version}**" if result.deployed else "⏸️ Not deployed"
    lines = [f"{verdict}: {result.reason}"]
    if result.before or result.after:
        where = f" (on {result.eval_set})" if result.eval_set else ""
        lines += [f"Before vs after{where}:", metrics_line("current", result.before),
                  metrics_line("candidate", result.after)]
    lines.append(f"{result.examples} corrections ({result.holdout} held out), "
                 f"{result.replay_examples} replay examples, {result.seconds:.0f} s")
    return "\n".join(lines)


class CancelView(discord.ui.View):
    """A Cancel button on the progress message (Manage Server, checked again on click)."""

    def __init__(self, job: TrainingJob) -> None:
        super().__init__(timeout=None)
        self.job = job

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.danger, custom_id="retrain:cancel")
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        try:
            is_manager(interaction)
        except app_commands.CheckFailure as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        self.job.cancel()
        await interaction.response.send_message("Cancelling the retrain…", ephemeral=True)


class Admin(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot
        self.job: TrainingJob | None = None
        self.started_by: str = ""

    @property
    def registry(self) -> Registry:
        return Registry(self.bot.settings.models_dir)

    async def cog_unload(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()

    # -- /retrain -----------------------------------------------------------------------------------

    @app_commands.command(name="retrain", description="Fine-tune the model on the corrections members made (Manage Server)")
    @app_commands.describe(force="Deploy even if the new model is not better on the held-out corrections")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    @manager_only()
    async def retrain(self, interaction: discord.Interaction, force: bool = False) -> None:
        if self.job is not None and self.job.running:
            raise UserError(f"A retrain is already running (started by {self.started_by}); "
                            "wait for it to finish or press its Cancel button.")
        settings = self.bot.settings
        examples = await self.bot.store.corrections_for_training()
        if len(examples) < settings.min_corrections:
            raise UserError(f"Only {len(examples)} corrections so far; retraining needs at least "
                            f"{settings.min_corrections} (EMOTION_MIN_CORRECTIONS). Members can add them "
                            "with /correct or Apps → Correct emotion.")
        config = FinetuneConfig(
            fallback_base=self.bot.classifier.source or settings.model, models_dir=str(settings.models_dir),
            replay=settings.replay_path or None, replay_ratio=settings.replay_ratio,
            epochs=settings.finetune_epochs, learning_rate=settings.finetune_lr,
            batch_size=settings.finetune_batch_size, torch_threads=settings.training_threads,
            device=settings.device, force=force)
        job = TrainingJob(examples, config)
        view = CancelView(job)
        # answer first (Discord's 3 s): a child started before a failed answer would train unwatched
        await interaction.response.send_message(progress_text({}, len(examples)), view=view)
        previous = await asyncio.to_thread(self._current_name)
        try:
            job.start()
        except TrainingBusy:
            view.stop()
            await self.edit(interaction, "A retrain is already running in this bot; wait for it to finish.", None)
            return
        self.job, self.started_by = job, interaction.user.display_name
        try:
            await self.follow(interaction, job, len(examples), view, previous)
        finally:
            view.stop()

    async def follow(self, interaction: discord.Interaction, job: TrainingJob, examples: int,
                     view: discord.ui.View, previous: str | None) -> None:
        started = time.monotonic()
        last = 0.0
        async for event in job.events():
            now = time.monotonic()
            if now - last >= EDIT_EVERY and now - started < TOKEN_LIFETIME:
                last = now
                await self.edit(interaction, progress_text(event, examples), view)
        try:
            result = await job.result()
        except TrainingCancelled:
            text = "🛑 Retrain cancelled; nothing was deployed."
        except TrainingFailed as exc:
            log.error("training failed: %s\n%s", exc, getattr(exc, "details", ""))
            text = ("❌ Training failed (details are in the bot's log).\n"
                    f"Nothing was deployed; I keep using **{self.bot.classifier.version}**.")
        else:
            text = result_text(result)
            if result.deployed:
                text += await self.deploy(result, previous)
        if time.monotonic() - started < TOKEN_LIFETIME:
            await self.edit(interaction, text, None)
        else:  # the interaction token has expired: post the result as a new message
            await interaction.channel.send(text)

    async def edit(self, interaction: discord.Interaction, text: str, view) -> None:
        try:
            await interaction.edit_original_response(content=text, view=view)
        except discord.HTTPException as exc:
            log.info("could not update the retrain message (HTTP %s)", exc.status)

    async def deploy(self, result: FinetuneResult, previous: str | None) -> str:
        """Load the new version off the loop and swap it into the worker; record it in the store.

        If it cannot be loaded, ``current`` goes back to ``previous`` so a restart does not pick it up.
        """
        settings = self.bot.settings
        try:
            classifier = await asyncio.to_thread(Classifier.load, result.path, device=settings.device,
                                                 quantize=settings.quantize, version=result.version)
        except ModelLoadError as exc:
            log.error("deployed version could not be loaded: %s", exc)
            if previous:
                await asyncio.to_thread(self.registry.set_current, previous, reason="load failed")
            return f"\n⚠️ {result.version} was saved but could not be loaded (see the log); still serving the old model."
        self.bot.deploy(classifier)
        try:
            await self.bot.store.add_model_version(
                result.version, result.path, parent=result.parent, base=result.base,
                metrics={"before": result.before, "after": result.after}, examples=result.examples,
                make_current=True)
        except Exception as exc:  # noqa: BLE001 - the registry on disk is the source of truth
            log.warning("could not record %s in the database: %s", result.version, exc)
        return f"\nNow tagging with **{result.version}**."

    # -- /model ------------------------------------------------------------------------------------

    model = app_commands.Group(name="model", description="The model's versions (Manage Server)",
                               default_permissions=discord.Permissions(manage_guild=True), guild_only=True)

    @model.command(name="info", description="The current version, its metrics and the corrections since")
    @manager_only()
    async def info(self, interaction: discord.Interaction) -> None:
        version = await asyncio.to_thread(self._current)
        clf = self.bot.classifier
        if version is None:
            since = None
            lines = [f"Serving the base model `{clf.source}` (no fine-tuned version yet)."]
        else:
            meta = version.metadata
            metrics = meta.get("metrics") or {}
            created = version.created
            since = datetime.fromisoformat(created).timestamp() if created else None
            lines = [f"Current version **{version.name}** (created {created or '?'}, parent "
                     f"{meta.get('parent') or 'base'}), serving **{clf.version}** on {clf.device}.",
                     metrics_line("before", metrics.get("before") or {}),
                     metrics_line("after", metrics.get("after") or {})]
        count = await self.bot.store.count_corrections(since=since)
        lines.append(f"{count} corrections since then." if since else f"{count} corrections stored.")
        versions = await asyncio.to_thread(lambda: [v.name for v in self.registry.list()])
        if versions:
            lines.append("Versions: " + ", ".join(versions))
        await interaction.response.send_message("\n".join(lines), ephemeral=True)

    def _current(self):
        try:
            return self.registry.current()
        except RegistryError:
            return None

    def _current_name(self) -> str | None:
        try:
            return self.registry.current_name()
        except RegistryError:
            return None

    @model.command(name="rollback", description="Go back to an earlier version (default: the previous one)")
    @app_commands.describe(version="A version such as v2; leave empty for the previous deployed one")
    @manager_only()
    async def rollback(self, interaction: discord.Interaction, version: str | None = None) -> None:
        if self.job is not None and self.job.running:
            raise UserError("A retrain is running; wait for it (or cancel it) before rolling back.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        previous = await asyncio.to_thread(self._current_name)
        try:
            target = await asyncio.to_thread(self.registry.rollback, version)
        except RegistryError as exc:
            raise UserError(str(exc)) from None
        settings = self.bot.settings
        try:
            classifier = await asyncio.to_thread(Classifier.load, target.path, device=settings.device,
                                                 quantize=settings.quantize, version=target.name)
        except ModelLoadError as exc:
            log.error("rollback to %s failed: %s", target.name, exc)
            if previous:  # keep the pointer on the model that is actually served
                await asyncio.to_thread(self.registry.set_current, previous, reason="rollback failed")
            raise UserError(f"{target.name} could not be loaded (see the bot's log); nothing changed.") from None
        self.bot.deploy(classifier)
        try:
            await self.bot.store.set_current_model_version(target.name)
        except Exception:  # noqa: BLE001 - not every version is recorded in the store
            pass
        await interaction.followup.send(f"Rolled back: now tagging with **{target.name}**.", ephemeral=True)

    @rollback.autocomplete("version")
    async def version_autocomplete(self, interaction: discord.Interaction, current: str):
        names = await asyncio.to_thread(lambda: [v.name for v in self.registry.list()])
        return [app_commands.Choice(name=n, value=n) for n in reversed(names) if current in n][:25]


async def setup(bot) -> None:
    await bot.add_cog(Admin(bot))
