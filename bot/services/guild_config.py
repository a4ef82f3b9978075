"""Server settings: who may change them, and what ``tagging on/off/only/all`` means for the channel lists."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.services.common import Actor, Refusal
from bot.store import GuildSettings

Tagging = Literal["on", "off", "only", "all"]


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """The options of ``/emotion-config``; None leaves a setting as it is."""

    #: The channel ``tagging`` applies to (the front end defaults it to where the command ran).
    channel_id: int | None = None
    tagging: Tagging | None = None
    #: The channel was named explicitly (naming one without ``tagging`` is a mistake worth saying).
    channel_named: bool = False
    #: Server-wide settings to set (``enabled``, ``threshold``, ``show_neutral``, ``reactions``, ``review``: off
    #: empties the server's review queue); None: unchanged.
    settings: Mapping[str, Any] = field(default_factory=dict)


def channel_changes(current: GuildSettings, channel_id: int, tagging: Tagging) -> dict:
    """The allowed/denied lists after ``tagging`` for ``channel_id``.

    ``off`` denies it; ``only`` adds it to the allow-list (tagging only such channels); ``on`` lifts a
    denial and, while an allow-list exists, adds to it; ``all`` drops the allow-list.
    """
    if tagging == "all":
        return {"allowed_channels": frozenset()}
    allowed, denied = set(current.allowed_channels), set(current.denied_channels)
    denied.discard(channel_id)
    allowed.discard(channel_id)
    if tagging == "off":
        denied.add(channel_id)
    elif tagging == "only" or allowed:  # with an 'only' list, 'on' means: add to it
        allowed.add(channel_id)
    return {"allowed_channels": frozenset(allowed), "denied_channels": frozenset(denied)}


class GuildConfigService:
    def __init__(self, store) -> None:
        self.store = store

    async def configure(self, actor: Actor, guild_id: int, change: ConfigChange) -> tuple[GuildSettings, bool]:
        """Apply ``change`` (Manage Server only); (the settings now, whether anything changed)."""
        actor.require_manager("change the server's settings")
        current = await self.store.get_guild_settings(guild_id)
        changes: dict = {}
        if change.tagging is not None:
            if change.channel_id is None:
                raise Refusal("Say which channel `tagging` applies to.")
            changes.update(channel_changes(current, change.channel_id, change.tagging))
        elif change.channel_named:
            raise Refusal("Say what to do with that channel: set `tagging` to on, off or only.")
        changes.update({key: value for key, value in change.settings.items() if value is not None})
        if not changes:
            return current, False
        try:
            return await self.store.update_guild_settings(guild_id, **changes), True
        except ValueError as exc:
            raise Refusal(str(exc)) from None
