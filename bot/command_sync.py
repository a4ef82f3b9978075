"""Slash-command syncing that remembers what it synced, in a small file beside the database.

Discord allows 200 command creations a day, and each sync of a changed tree can reorder or briefly
hide commands; a start with an unchanged tree therefore syncs nothing. The file also remembers the
server the commands were synced to (``EMOTION_GUILD_ID``): when that changes, the old server's copies
are removed, or every command would be listed twice there (its own copy and the global one).
Delete the file to force a sync.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import discord
from discord import app_commands

from model.registry import write_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncState:
    application_id: int
    guild_id: int | None  # None: global
    digest: str  # of the command payloads sent


def state_path(db_path: Path | str, models_dir: Path) -> Path:
    """``data/emotion.db`` → ``data/emotion.commands.json``; with PostgreSQL, beside the models folder."""
    if isinstance(db_path, str):  # a postgresql:// URL
        return Path(models_dir).with_name("emotion.commands.json")
    return Path(db_path).with_suffix(".commands.json")


def read_state(path: Path) -> SyncState | None:
    """The last sync, or None when there is none (or the file is unreadable: then syncing again is safe)."""
    try:
        return SyncState(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        log.warning("ignoring %s (%s); syncing the slash commands again", path, exc)
        return None


def write_state(path: Path, state: SyncState) -> None:
    """Atomically (the registry's writer): a torn file is never read back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(asdict(state)))


def payload_digest(payload: list[dict]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


async def sync_commands(tree: app_commands.CommandTree, application_id: int, guild_id: int | None,
                        path: Path) -> int:
    """Sync to ``guild_id`` (instant) or globally (up to an hour) unless nothing changed; the number of commands.

    Raises ``discord.HTTPException`` when the sync itself fails (the state is then left as it was).
    """
    guild = discord.Object(guild_id) if guild_id else None
    if guild is not None:
        tree.copy_global_to(guild=guild)
    payload = [command.to_dict(tree) for command in tree.get_commands(guild=guild)]
    wanted = SyncState(application_id, guild_id, payload_digest(payload))
    before = await asyncio.to_thread(read_state, path)
    if before == wanted:
        log.info("slash commands unchanged since the last sync; not syncing them again")
        return len(payload)
    await tree.sync(guild=guild)
    if before is not None and before.application_id == application_id and before.guild_id not in (None, guild_id):
        await clear_guild(tree, before.guild_id)
    await asyncio.to_thread(write_state, path, wanted)
    return len(payload)


async def clear_guild(tree: app_commands.CommandTree, guild_id: int) -> None:
    """Remove the copies synced to ``guild_id`` earlier: the tree holds none for it, so a sync sends ``[]``."""
    try:
        await tree.sync(guild=discord.Object(guild_id))
    except discord.HTTPException as exc:  # e.g. the bot left that server: its copies went with it
        log.warning("could not remove the slash commands synced to server %s before (HTTP %s)", guild_id, exc.status)
    else:
        log.info("removed the slash commands synced to server %s before (EMOTION_GUILD_ID changed)", guild_id)
