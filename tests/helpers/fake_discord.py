"""A small local fake of Discord for wire-level tests: real discord.py HTTPClient + DiscordWebSocket.

It serves, on 127.0.0.1 and a free port, just enough of REST v10 and the gateway for a bot to log in,
sync its (global or guild) slash commands, connect, become ready with one guild holding one text
channel (or ``channels=N`` of them, for load tests), receive a member's MESSAGE_CREATE and add a reaction:

REST (``/api/v10``; every request is recorded, anything unknown answers a Discord-style 404):

* ``GET /users/@me`` - login; a token other than the fake's answers 401 (``discord.LoginFailure``)
* ``GET /oauth2/applications/@me`` and ``GET /applications/@me`` - application info
* ``GET /gateway`` and ``GET /gateway/bot`` - the fake's websocket URL
* ``GET``/``PUT /applications/{app}/commands`` and ``.../guilds/{guild}/commands`` - what was last put
  there (``FakeDiscord.commands``; ``[]`` at first)
* ``PUT /channels/{c}/messages/{m}/reactions/{emoji}/@me`` - the first ``reaction_429s`` calls (or, with
  ``first_put_429``, each reaction's first call) answer 429 with a user-scoped rate limit (``retry_after``
  body, ``Retry-After``, ``X-RateLimit-*`` unless ``limit_headers=False``, and the ``Via`` header discord.py
  needs to tell a Discord 429 from a Cloudflare ban), then 204 with an exhausted bucket that resets after
  ``reaction_reset_after`` seconds (discord.py sleeps that long before the call returns)

``guilds=0`` makes a bot that is in no server yet; ``guilds=N`` puts it in N servers (``guild_ids``, spread over
``shard_count`` shards as Discord does: ``(guild_id >> 22) % shard_count``). Each IDENTIFY's ``shard`` decides
which servers its READY and GUILD_CREATEs carry, and :meth:`FakeDiscord.push_message` delivers a server's
messages on its shard's connection, so several bot processes with disjoint shard ranges can share one fake.

Gateway (at ``/``, like ``wss://gateway.discord.gg/``): HELLO (op 10), IDENTIFY (op 2; a wrong token
closes with 4004), READY, GUILD_CREATE, heartbeat ACKs (op 11); other ops are recorded and ignored.
When the client asks for ``compress=zlib-stream`` (discord.py does unless it has zstd) every frame is
a binary chunk of one zlib stream ending in a Z_SYNC_FLUSH, exactly as Discord sends them; otherwise
(or with ``compress=zstd-stream``, which this fake does not implement) frames are plain JSON text.

discord.py talks to it once two class attributes are patched (see :meth:`FakeDiscord.patch`):
``discord.http.Route.BASE`` (REST) and ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` -
``Client.connect`` never asks ``/gateway`` for the first connection, it uses that default.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

#: A token shaped like a real bot token (three base64url parts) for the tests' fakes; only ever sent to 127.0.0.1.
TOKEN = "MTA4NzY1NDMyMTA5ODc2NTQzMg.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"

DISCORD_EPOCH_MS = 1_420_070_400_000
ADMIN_PERMISSIONS = ((1 << 53) - 1) & ~(1 << 3)  # every permission but ADMINISTRATOR (sent as a string)
EVERYONE_PERMISSIONS = (1 << 6) | (1 << 10) | (1 << 11) | (1 << 16)  # add reactions, view, send, history

# Gateway opcodes
DISPATCH, HEARTBEAT, IDENTIFY, RESUME, HELLO, HEARTBEAT_ACK = 0, 1, 2, 6, 10, 11


def snowflake(counter: int, when: float | None = None) -> int:
    """A well-formed snowflake created at ``when`` (default: now)."""
    ms = int((time.time() if when is None else when) * 1000)
    return ((ms - DISCORD_EPOCH_MS) << 22) | (counter & 0xFFF)


async def first_of(awaitable, connect: asyncio.Task, timeout: float, what: str = "it"):
    """Await ``awaitable`` while the bot's gateway task runs, failing fast if that task dies first."""
    waiter = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({waiter, connect}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        if connect in done:
            raise RuntimeError(f"gateway task ended while waiting for {what}: {connect.exception() or 'returned'}")
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
    return waiter.result()


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat()


@dataclass
class Recorded:
    """One REST request as the fake saw it (the path is the raw, percent-encoded one)."""

    method: str
    path: str
    time: float
    status: int = 0
    authorized: bool = False
    json: Any = None


RECORDED = web.RequestKey("recorded", Recorded) if hasattr(web, "RequestKey") else "recorded"


@dataclass
class GatewayConnection:
    ws: web.WebSocketResponse
    compress: str | None
    zlib: Any = None
    seq: int = 0
    identify: dict | None = None
    shard: int = 0  # the shard it IDENTIFYed as
    received: list[dict] = field(default_factory=list)
    heartbeats: int = 0


class FakeDiscord:
    BOT_ID = 1087654321098765432
    APP_ID = 1087654321098765432
    OWNER_ID = 1000000000000000001
    GUILD_ID = 1100000000000000001
    CHANNEL_ID = 1100000000000000002
    MEMBER_ID = 1100000000000000003
    BOT_ROLE_ID = 1100000000000000004
    EXTRA_CHANNEL_BASE = 1100000000000100000  # extra channels (``channels=`` > 1) are this + 1, + 2, ...

    def __init__(self, token: str, *, reaction_429s: int = 1, retry_after: float = 0.3,
                 heartbeat_interval_ms: int = 1_500, channels: int = 1, identify_close: int | None = None,
                 guilds: int = 1, first_put_429: bool = False, limit_headers: bool = True,
                 reaction_reset_after: float = 0.25, shard_count: int = 1) -> None:
        if channels < 1:
            raise ValueError("the fake guild needs at least one text channel")
        self.token = token
        # CHANNEL_ID ("general") first, then extra text channels for load tests ("load-1", ...).
        self.channel_ids: list[int] = [self.CHANNEL_ID] + [self.EXTRA_CHANNEL_BASE + i for i in range(1, channels)]
        self.reaction_429s = reaction_429s
        self.retry_after = retry_after
        #: 0: the bot is in no server (READY lists none, no GUILD_CREATE); more: GUILD_ID, then guild_ids[1:]
        self.guild_count = guilds
        #: what /gateway/bot recommends; a server is on shard (guild_id >> 22) % shard_count, as on Discord
        self.shard_count = shard_count
        # consecutive (id >> 22) values: the servers spread over the shards in turn
        self.guild_ids = [self.GUILD_ID + (k << 22) for k in range(guilds)]
        #: each message's first reaction PUT answers 429 (every reaction needs one of discord.py's retries)
        self.first_put_429 = first_put_429
        #: False: no X-RateLimit-* headers on reactions, so discord.py cannot pace itself
        self.limit_headers = limit_headers
        #: the reaction bucket's X-RateLimit-Reset-After on a 204: discord.py sleeps that long after the PUT
        self.reaction_reset_after = reaction_reset_after
        #: what the bot synced, by scope ("global" or the guild id): GET answers it, PUT replaces it
        self.commands: dict[str, list[dict]] = {}
        self.heartbeat_interval_ms = heartbeat_interval_ms
        #: close every IDENTIFY with this code (4004: the token was reset while REST still took it)
        self.identify_close = identify_close
        self.requests: list[Recorded] = []
        self.reactions: list[Recorded] = []
        self.connections: list[GatewayConnection] = []
        self.session_id = "fakesession0001"
        self.port = 0
        self._counter = itertools.count(1)
        self._reaction_calls = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.app = self._make_app()

    # ------------------------------------------------------------------ lifecycle

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def start(self) -> FakeDiscord:
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, shutdown_timeout=1.0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        for conn in self.connections:
            if not conn.ws.closed:
                try:
                    await asyncio.wait_for(conn.ws.close(code=1001), 2.0)
                except (asyncio.TimeoutError, ConnectionError):
                    pass
        if self._runner is not None:
            await asyncio.wait_for(self._runner.cleanup(), 5.0)
            self._runner = None

    def patch(self, monkeypatch) -> None:
        """Point discord.py's REST base and default gateway at this fake (undone by ``monkeypatch``)."""
        import discord.gateway
        import discord.http
        import yarl

        monkeypatch.setattr(discord.http.Route, "BASE", self.api_base)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(self.gateway_url))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate, timeout: float) -> None:
        """Wait until ``predicate()`` holds (checked after each request or gateway message)."""
        async def waiter() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(waiter(), timeout)

    # ------------------------------------------------------------------ payloads

    def bot_user(self) -> dict:
        return {"id": str(self.BOT_ID), "username": "Emotion Machine", "discriminator": "0", "global_name": None,
                "avatar": None, "bot": True, "verified": True, "mfa_enabled": False, "flags": 0,
                "public_flags": 0}

    def member_user(self) -> dict:
        return {"id": str(self.MEMBER_ID), "username": "alice", "discriminator": "0", "global_name": "Alice",
                "avatar": None, "public_flags": 0}

    def application(self) -> dict:
        return {"id": str(self.APP_ID), "name": "Emotion Machine", "description": "", "icon": None,
                "bot_public": False, "bot_require_code_grant": False, "verify_key": "0" * 64,
                "owner": {"id": str(self.OWNER_ID), "username": "owner", "discriminator": "0", "avatar": None},
                "team": None, "flags": 0, "summary": "", "type": None, "bot": self.bot_user()}

    def shard_of(self, guild_id: int) -> int:
        return (guild_id >> 22) % self.shard_count

    def channel_of(self, guild_id: int) -> int:
        """A server's first text channel (``CHANNEL_ID`` for the first server)."""
        return self.CHANNEL_ID if guild_id == self.GUILD_ID else guild_id + 2

    def guild(self, guild_id: int | None = None) -> dict:
        """GUILD_CREATE of ``guild_id`` (default: the first server); the others have one channel each."""
        data = self._guild()
        if guild_id is None or guild_id == self.GUILD_ID:
            return data
        data = json.loads(json.dumps(data).replace(str(self.GUILD_ID), str(guild_id)))
        data["channels"] = data["channels"][:1]
        data["channels"][0]["id"] = str(self.channel_of(guild_id))
        data["roles"][1]["id"] = str(guild_id + 4)
        data["members"][0]["roles"] = [str(guild_id + 4)]
        data["name"] = f"Fake Guild {self.guild_ids.index(guild_id)}"
        return data

    def _guild(self) -> dict:
        joined = iso(time.time() - 86_400)
        member = lambda user, roles: {"user": user, "roles": roles, "joined_at": joined, "deaf": False,  # noqa: E731
                                      "mute": False, "flags": 0, "nick": None, "avatar": None}
        return {
            "id": str(self.GUILD_ID), "name": "Fake Guild", "icon": None, "splash": None, "discovery_splash": None,
            "owner_id": str(self.OWNER_ID), "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0, "mfa_level": 0, "features": [],
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None,
            "public_updates_channel_id": None, "preferred_locale": "en-US", "premium_tier": 0,
            "premium_subscription_count": 0, "nsfw_level": 0, "vanity_url_code": None, "description": None,
            "banner": None, "max_members": 500_000, "emojis": [], "stickers": [], "unavailable": False,
            "large": False, "member_count": 3, "joined_at": joined, "lazy": True, "application_id": None,
            "roles": [
                {"id": str(self.GUILD_ID), "name": "@everyone", "permissions": str(EVERYONE_PERMISSIONS),
                 "position": 0, "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0},
                {"id": str(self.BOT_ROLE_ID), "name": "Emotion Machine", "permissions": str(ADMIN_PERMISSIONS),
                 "position": 1, "color": 0, "hoist": False, "managed": True, "mentionable": False, "flags": 0,
                 "tags": {"bot_id": str(self.BOT_ID)}},
            ],
            "channels": [
                {"id": str(cid), "type": 0, "name": "general" if i == 0 else f"load-{i}", "position": i,
                 "parent_id": None, "topic": None, "nsfw": False, "last_message_id": None,
                 "rate_limit_per_user": 0, "permission_overwrites": [], "flags": 0}
                for i, cid in enumerate(self.channel_ids)
            ],
            "threads": [], "members": [member(self.bot_user(), [str(self.BOT_ROLE_ID)]),
                                       member(self.member_user(), [])],
            "presences": [], "voice_states": [], "stage_instances": [], "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def ready(self, shard: int = 0) -> dict:
        guilds = [{"id": str(g), "unavailable": True} for g in self.guild_ids if self.shard_of(g) == shard]
        return {"v": 10, "user": self.bot_user(), "guilds": guilds,
                "session_id": self.session_id, "resume_gateway_url": self.gateway_url,
                "shard": [shard, self.shard_count],
                "application": {"id": str(self.APP_ID), "flags": 0}, "private_channels": [],
                "relationships": [], "presences": [], "user_settings": {}, "session_type": "normal"}

    # ------------------------------------------------------------------ gateway

    async def _send(self, conn: GatewayConnection, payload: dict) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        if conn.zlib is not None:
            await conn.ws.send_bytes(conn.zlib.compress(data) + conn.zlib.flush(zlib.Z_SYNC_FLUSH))
        else:
            await conn.ws.send_str(data.decode())

    async def dispatch(self, event: str, data: dict, conn: GatewayConnection | None = None) -> None:
        """Send a DISPATCH (op 0) to ``conn`` (default: the latest identified connection)."""
        conn = conn or self.current()
        conn.seq += 1
        await self._send(conn, {"op": DISPATCH, "t": event, "s": conn.seq, "d": data})

    def current(self, shard: int | None = None) -> GatewayConnection:
        live = [c for c in self.connections if c.identify is not None and not c.ws.closed
                and (shard is None or c.shard == shard)]
        if not live:
            raise RuntimeError("no identified gateway connection")
        return live[-1]

    async def push_message(self, content: str, *, author: dict | None = None, channel_id: int | None = None,
                           guild_id: int | None = None) -> int:
        """Deliver MESSAGE_CREATE from a (non-bot) guild member, on its server's shard; returns the new message id."""
        guild_id = guild_id or self.GUILD_ID
        now = time.time()
        message_id = snowflake(next(self._counter), now)
        data = {
            "id": str(message_id), "channel_id": str(channel_id or self.channel_of(guild_id)),
            "guild_id": str(guild_id),
            "author": author or self.member_user(),
            "member": {"roles": [], "joined_at": iso(now - 86_400), "deaf": False, "mute": False, "flags": 0,
                       "nick": None, "avatar": None},
            "content": content, "timestamp": iso(now), "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "mention_channels": [],
            "attachments": [], "embeds": [], "reactions": [], "pinned": False, "type": 0, "flags": 0,
            "components": [], "nonce": None,
        }
        await self.dispatch("MESSAGE_CREATE", data, self.current(self.shard_of(guild_id)))
        return message_id

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        compress = request.query.get("compress")
        conn = GatewayConnection(ws, compress, zlib.compressobj() if compress == "zlib-stream" else None)
        self.connections.append(conn)
        await self._notify()
        await self._send(conn, {"op": HELLO, "s": None, "t": None,
                                "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:  # discord.py only sends JSON text
                continue
            payload = json.loads(msg.data)
            op = payload.get("op")
            conn.received.append({"op": op, "time": time.monotonic()})
            if op == HEARTBEAT:
                conn.heartbeats += 1
                await self._send(conn, {"op": HEARTBEAT_ACK, "s": None, "t": None, "d": None})
            elif op == IDENTIFY:
                d = payload.get("d") or {}
                if d.get("token") != self.token or self.identify_close is not None:
                    await ws.close(code=self.identify_close or 4004, message=b"Authentication failed.")
                    break
                conn.identify = {k: v for k, v in d.items() if k != "token"}  # never keep the token
                conn.shard = int((d.get("shard") or [0, 1])[0])
                await self.dispatch("READY", self.ready(conn.shard), conn)
                for guild_id in self.guild_ids:
                    if self.shard_of(guild_id) == conn.shard:
                        await self.dispatch("GUILD_CREATE", self.guild(guild_id), conn)
            elif op == RESUME:
                await ws.close(code=4009, message=b"Session timed out.")  # no resuming here
                break
            await self._notify()
        await self._notify()
        return ws

    # ------------------------------------------------------------------ REST

    @staticmethod
    def _json(data: Any, status: int = 200, headers: dict | None = None) -> web.Response:
        # discord.py only parses bodies whose Content-Type is exactly "application/json".
        return web.Response(status=status, body=json.dumps(data).encode(),
                            headers={"Content-Type": "application/json", **(headers or {})})

    def _limit_headers(self, bucket: str, limit: int, remaining: int, reset_after: float) -> dict:
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
                "X-RateLimit-Reset-After": f"{reset_after:.3f}", "X-RateLimit-Bucket": bucket}

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        rec = Recorded(request.method, request.raw_path, time.monotonic(),
                       authorized=request.headers.get("Authorization") == f"Bot {self.token}")
        if request.can_read_body:
            try:
                rec.json = await request.json()
            except ValueError:
                rec.json = None
        self.requests.append(rec)
        request[RECORDED] = rec
        try:
            if request.path.startswith("/api/") and not rec.authorized:
                response = self._json({"message": "401: Unauthorized", "code": 0}, 401)
            else:
                response = await handler(request)
        except web.HTTPNotFound:
            response = self._json({"message": "404: Not Found", "code": 0}, 404)
        except web.HTTPMethodNotAllowed:
            response = self._json({"message": "405: Method Not Allowed", "code": 0}, 405)
        rec.status = response.status
        await self._notify()
        return response

    async def _me(self, request: web.Request) -> web.Response:
        return self._json(self.bot_user(), headers=self._limit_headers("users-me", 5, 4, 5.0))

    async def _app_info(self, request: web.Request) -> web.Response:
        return self._json(self.application())

    async def _gateway_info(self, request: web.Request) -> web.Response:
        return self._json({"url": self.gateway_url})

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        return self._json({"url": self.gateway_url, "shards": self.shard_count,
                           "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 86_400_000,
                                                   "max_concurrency": 1}})

    async def _commands(self, request: web.Request) -> web.Response:
        if request.match_info["app"] != str(self.APP_ID):
            return self._json({"message": "Unknown Application", "code": 10002}, 404)
        scope = request.match_info.get("guild", "global")
        if request.method == "PUT":
            body = request[RECORDED].json or []
            self.commands[scope] = [{"description": "", **c, "id": str(snowflake(next(self._counter))),
                                     "application_id": str(self.APP_ID), "version": "1"} for c in body]
        return self._json(self.commands.get(scope, []), headers=self._limit_headers("commands", 2, 1, 20.0))

    async def _reaction(self, request: web.Request) -> web.Response:
        rec = request[RECORDED]
        first_of_message = not any(r.path == rec.path for r in self.reactions)
        self.reactions.append(rec)
        self._reaction_calls += 1
        bucket = "reactions-bucket-0001"
        if self._reaction_calls <= self.reaction_429s or (self.first_put_429 and first_of_message):
            headers = {"Retry-After": str(max(1, math.ceil(self.retry_after))), "X-RateLimit-Scope": "user",
                       "Via": "1.1 google"}
            if self.limit_headers:
                headers.update(self._limit_headers(bucket, 1, 0, self.retry_after))
            return self._json({"message": "You are being rate limited.", "retry_after": self.retry_after,
                               "global": False}, 429, headers)
        headers = self._limit_headers(bucket, 1, 0, self.reaction_reset_after) if self.limit_headers else {}
        return web.Response(status=204, headers=headers)

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        api = "/api/v10"
        r = app.router
        r.add_get("/", self._gateway)
        r.add_get(f"{api}/users/@me", self._me)
        r.add_get(f"{api}/oauth2/applications/@me", self._app_info)
        r.add_get(f"{api}/applications/@me", self._app_info)
        r.add_get(f"{api}/gateway", self._gateway_info)
        r.add_get(f"{api}/gateway/bot", self._gateway_bot)
        for path in (f"{api}/applications/{{app}}/commands", f"{api}/applications/{{app}}/guilds/{{guild}}/commands"):
            r.add_get(path, self._commands)
            r.add_put(path, self._commands)
        r.add_put(f"{api}/channels/{{channel}}/messages/{{message}}/reactions/{{emoji}}/@me", self._reaction)
        return app
