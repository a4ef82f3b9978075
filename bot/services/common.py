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
    """

    user_id: int
    guild_id: int | None = None
    can_manage: bool = False
    name: str = ""
    can_moderate: bool = False

    @classmethod
    def operator(cls, name: str = "operator") -> Actor:
        return cls(user_id=0, guild_id=None, can_manage=True, name=name, can_moderate=True)

    def require_manager(self, what: str) -> None:
        if not self.can_manage:
            raise NotAllowed(f"You need the Manage Server permission to {what}.")

    def require_moderator(self, what: str) -> None:
        if not self.can_moderate:
            raise NotAllowed(f"You need the Manage Messages permission to {what}.")


class Serving:
    """The classifier being served and the worker that runs it; a deploy swaps both at once.

    The bot and the shell each hold one; the CLI, which serves nothing, holds none.
    """

    def __init__(self, worker) -> None:
        self.worker = worker

    @property
    def classifier(self):
        return self.worker.classifier

    def swap(self, classifier) -> None:
        """Serve ``classifier`` from the next batch on; no request fails, nothing restarts."""
        self.worker.swap(classifier)

    async def load(self, path: str, *, version: str, device: str, quantize: str):
        """Load a model folder off the event loop (seconds of disk and CPU work)."""
        from model.classifier import Classifier

        return await asyncio.to_thread(Classifier.load, path, device=device, quantize=quantize, version=version)
