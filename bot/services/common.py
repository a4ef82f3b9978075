"""What every service shares: who is acting, how a flow refuses, and the model being served.

Services are plain Python: they take typed facts that a front end (a cog, the shell, the CLI)
gathered, apply the flow's rules once, and return typed results the front end renders.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


class Refusal(Exception):
    """A request the flow turns down; the message is for the person who asked, in plain words."""


class NotAllowed(Refusal):
    """The actor may not do this (e.g. retrain without Manage Server)."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks, as the front end established it from server-side data (never from the client's say-so).

    ``can_manage``: Manage Server (or Administrator) in ``guild_id`` on Discord; the shell and the
    CLI act as the operator, who may do everything. ``can_moderate``: Manage Messages (or Administrator).
    ``is_owner``: the bot's owner (the application's owner or team, as Discord says): the only one
    who changes the base model every server shares.
    """

    user_id: int
    guild_id: int | None = None
    can_manage: bool = False
    name: str = ""
    can_moderate: bool = False
    is_owner: bool = False

    @classmethod
    def operator(cls, name: str = "operator") -> Actor:
        return cls(user_id=0, guild_id=None, can_manage=True, name=name, can_moderate=True, is_owner=True)

    def require_manager(self, what: str) -> None:
        if not self.can_manage:
            raise NotAllowed(f"You need the Manage Server permission to {what}.")

    def require_manager_of(self, guild_id: int, what: str) -> None:
        """Manage Server in *that* server (the operator may act on any): one server's admin never reaches another's."""
        if self.is_owner and self.guild_id is None:
            return
        self.require_manager(what)
        if self.guild_id != guild_id:
            raise NotAllowed(f"You can only {what} for the server you are in.")

    def require_owner(self, what: str) -> None:
        if not self.is_owner:
            raise NotAllowed(f"Only the bot's owner can {what}: it changes the model every server shares.")

    def require_moderator(self, what: str) -> None:
        if not self.can_moderate:
            raise NotAllowed(f"You need the Manage Messages permission to {what}.")


class Serving:
    """The base classifier and the servers' heads on it, and the worker that runs them.

    The bot and the shell each hold one; the CLI, which serves nothing, holds none. A deploy of
    the base swaps the classifier and the heads that fit it at once; a server's deploy swaps its
    head only (:mod:`model.heads`).
    """

    def __init__(self, worker, models_dir: str | None = None) -> None:
        self.worker = worker
        self.models_dir = models_dir

    @property
    def classifier(self):
        return self.worker.classifier

    def head_of(self, guild_id: int | None):
        """The head server ``guild_id`` is served with, or None (the base's own)."""
        return self.worker.heads.get(guild_id) if guild_id is not None else None

    def swap(self, classifier, heads: dict | None = None) -> None:
        """Serve ``classifier`` (with ``heads``, prepared for it) from the next batch on; nothing restarts."""
        self.worker.swap(classifier, heads or {})

    def set_head(self, guild_id: int, head) -> None:
        """Serve ``guild_id`` with ``head`` (None: the base) from the next batch on; other servers untouched."""
        self.worker.set_head(guild_id, head)

    async def heads_for(self, classifier, only=None) -> dict:
        """Every server line's (or those in ``only``) current head that fits ``classifier``, loaded off the loop."""
        if self.models_dir is None:
            return {}
        from model.heads import load_server_heads

        return await asyncio.to_thread(load_server_heads, self.models_dir, classifier, only)

    async def load_head(self, path: str):
        """A server version's head, checked against the served base and ready for it (HeadError if not)."""
        from model.heads import Head

        classifier = self.classifier
        return await asyncio.to_thread(lambda: classifier.prepare_head(Head.load(path)))

    async def load(self, path: str, *, version: str, device: str, quantize: str):
        """Load a model folder off the event loop (seconds of disk and CPU work)."""
        from model.classifier import Classifier

        return await asyncio.to_thread(Classifier.load, path, device=device, quantize=quantize, version=version)
