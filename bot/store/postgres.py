"""The PostgreSQL backend (asyncpg): ``EMOTION_DB=postgresql://...`` selects it; SQLite stays the default.

The parts run unchanged: their SQL (``?`` and ``:name`` parameters) is numbered for PostgreSQL once per
statement (:func:`numbered`), and a transaction hands them an adapter with the three calls they use.

* A bounded pool (``pool_size``): writes of this process still go one at a time (``self._lock``, as on
  SQLite, so the caches change in commit order); reads run beside them on other connections.
* A write is durable when it returns (PostgreSQL's COMMIT, fsync on). A connection that broke before the
  transaction began is replaced and the write retried once; after that the caller gets a StoreError
  saying the server is unreachable. Reads are retried once the same way.
* The caches (opt-outs, settings, channel lists) follow other processes through LISTEN/NOTIFY: triggers
  announce each change with the writer's origin, so a process ignores its own.
* The URL's password never appears in a message: :attr:`path` is the URL without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

from .base import RESYNC, StoreBase
from .errors import StoreError, closed_error
from .parts import StoreParts, check_options
from .records import GuildSettings
from .schema import SCHEMA_VERSION, postgres_migrations
from .urls import display_url, is_postgres_url

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The channel the cache triggers announce on (bot/migrations/postgresql).
CHANGES = "emotion_machine_changes"
#: pg_advisory_xact_lock key of the migration runner (two processes starting at once migrate one after the other).
MIGRATION_LOCK = 0x656D6F74  # "emot"
POOL_SIZE = 10
ACQUIRE_TIMEOUT = 30.0  # seconds a statement waits for a free connection of the pool
LEASE_TIMEOUT = 0.5  # seconds a REST budget lease may take

_CONNECTION_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError,
                      asyncpg.PostgresConnectionError, asyncpg.exceptions.AdminShutdownError,
                      asyncpg.exceptions.CannotConnectNowError)
#: What asyncpg raises for a failed statement or connection (OSError covers TimeoutError).
DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError, OSError,
             asyncio.TimeoutError)  # asyncio's is not OSError's TimeoutError before Python 3.11


_NAME = re.compile(r"[A-Za-z_]\w*")


@functools.lru_cache(maxsize=1024)
def numbered(sql: str) -> tuple[str, tuple[str, ...] | None]:
    """``sql`` with ``?`` and ``:name`` parameters as PostgreSQL's ``$n``; the names in order (None: positional).

    Quoted strings, comments and ``::`` casts are left alone; a repeated ``:name`` is one parameter.
    """
    out: list[str] = []
    names: list[str] = []
    positional = 0
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            end = i + 1
            while True:
                end = sql.find(c, end)
                if end < 0:
                    raise ValueError(f"unterminated quote in SQL: {sql[i:i + 40]!r}")
                if sql.startswith(c * 2, end):
                    end += 2
                    continue
                break
            out.append(sql[i:end + 1])
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end])
            i = end
        elif sql.startswith("::", i):
            out.append("::")
            i += 2
        elif c == "?":
            positional += 1
            out.append(f"${positional}")
            i += 1
        elif c == ":" and (match := _NAME.match(sql, i + 1)):
            name = match.group()
            if name not in names:
                names.append(name)
            out.append(f"${names.index(name) + 1}")
            i = match.end()
        else:
            out.append(c)
            i += 1
    if positional and names:
        raise ValueError("SQL mixes ? and :name parameters")
    return "".join(out), tuple(names) if names else None


def bind(sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> tuple[str, list[Any]]:
    """The numbered statement and its arguments in order."""
    text, names = numbered(sql)
    if names is None:
        return text, list(params)
    return text, [params[name] for name in names]  # type: ignore[index]


def _rowcount(status: str) -> int:
    """Rows a statement touched, from its command tag ("UPDATE 3", "INSERT 0 5")."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _Result:
    __slots__ = ("rowcount",)

    def __init__(self, rowcount: int) -> None:
        self.rowcount = rowcount


class Transaction:
    """What a part's transaction body gets: the calls of an aiosqlite connection it uses, on asyncpg."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> _Result:
        text, args = bind(sql, params)
        return _Result(_rowcount(await self._conn.execute(text, *args)))

    async def executemany(self, sql: str, rows: Any) -> _Result:
        """One statement per row, in this transaction (asyncpg's executemany gives no row count)."""
        total = 0
        for params in rows:
            total += (await self.execute(sql, params)).rowcount
        return _Result(total)

    async def execute_fetchall(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple]:
        text, args = bind(sql, params)
        return [tuple(row) for row in await self._conn.fetch(text, *args)]


def _broken(exc: BaseException) -> bool:
    """The connection (not the statement) failed: worth one retry on a fresh connection."""
    if isinstance(exc, asyncpg.exceptions.DataError):  # an InterfaceError, but about the arguments, not the line
        return False
    return getattr(exc, "emotion_connecting", False) or isinstance(exc, _CONNECTION_ERRORS)


# (exception classes, reason, explanation) - first match wins.
_KINDS: tuple[tuple[tuple[type[BaseException], ...], str, str], ...] = (
    ((asyncpg.exceptions.DataError,), "error", "a value did not fit its column (a bug: please report it)"),
    ((asyncpg.exceptions.InvalidAuthorizationSpecificationError,), "cantopen",
     "the server refused the login; check the user and password in EMOTION_DB"),
    ((asyncpg.exceptions.InvalidCatalogNameError,), "cantopen",
     "the database does not exist; create it (createdb) or fix its name in EMOTION_DB"),
    ((asyncpg.exceptions.DiskFullError,), "full", "the database server's disk is full; free some space and retry"),
    ((asyncpg.exceptions.ReadOnlySQLTransactionError,), "readonly",
     "the server is read-only (a standby?); point EMOTION_DB at the primary"),
    ((asyncpg.exceptions.IntegrityConstraintViolationError,), "constraint",
     "the database refused the data, which breaks one of its constraints"),
    ((asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError,
      asyncpg.exceptions.LockNotAvailableError), "locked", "another connection holds a lock it needs; retry"),
    ((asyncpg.exceptions.TooManyConnectionsError,), "unavailable",
     "the server has no connection slot left (lower EMOTION_DB_POOL_SIZE or raise max_connections)"),
    ((TimeoutError, asyncio.TimeoutError), "unavailable", "the database server did not answer in time"),
    ((OSError, asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError, asyncpg.PostgresConnectionError,
      asyncpg.exceptions.OperatorInterventionError),
     "unavailable", "the database server cannot be reached or closed the connection; check that it runs"),
)


def translate_error(exc: BaseException, where: str, action: str) -> StoreError:
    """A StoreError naming the database (never its password) with a sentence an operator can act on."""
    reason, explanation = next(
        ((reason, text) for kinds, reason, text in _KINDS if isinstance(exc, kinds)),
        ("error", "PostgreSQL reported an error"),
    )
    if reason == "error" and getattr(exc, "emotion_connecting", False):
        reason, explanation = "unavailable", "the database server refused a new connection"
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return StoreError(f"Could not {action} ({where}): {explanation}. [PostgreSQL: {detail}]",
                      path=where, reason=reason)


def _server_settings(origin: str, lock_timeout_ms: int) -> dict[str, str]:
    # Keepalives: a process that vanished without closing (a machine lost) ends its session within ~90 s, and
    # with it the advisory locks it held (training, IDENTIFY turns).
    return {"application_name": "emotion-machine", "emotion_machine.origin": origin,
            "lock_timeout": str(int(lock_timeout_ms)), "timezone": "UTC",
            "tcp_keepalives_idle": "60", "tcp_keepalives_interval": "10", "tcp_keepalives_count": "3"}


class ClusterLock:
    """A held advisory lock; :meth:`release` (safe twice) frees it for the other processes."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn: asyncpg.Connection | None = conn

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*DB_ERRORS):
                await conn.close(timeout=5)  # closing the session frees its advisory locks


class PostgresConnection(StoreBase):
    """The PostgreSQL backend of :class:`bot.store.base.StoreBase`: a bounded asyncpg pool."""

    dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool, url: str, *, read_only: bool, origin: str, lock_timeout_ms: int) -> None:
        super().__init__(pool, display_url(url), read_only=read_only)
        self._url = url  # with the password: only ever handed to asyncpg
        self._origin = origin
        self._lock_timeout_ms = lock_timeout_ms
        self._listener: asyncpg.Connection | None = None
        self._listened = False  # a listener ran before: a new one follows a gap
        self._turns: set[asyncio.Task] = set()  # turns held (take_turn), ended in the background
        self._changed = True  # another process may have written: reload at the next check
        self._subscribers: dict[str, list[Callable[[str], None]]] = {}

    @property
    def origin(self) -> str:
        """This store's random id: what its writes and announcements carry, so it can skip its own."""
        return self._origin

    @classmethod
    async def _connect_pool(cls, url: str, *, pool_size: int, origin: str, lock_timeout_ms: int) -> asyncpg.Pool:
        where = display_url(url)
        try:
            return await asyncpg.create_pool(
                url, min_size=1, max_size=pool_size, server_settings=_server_settings(origin, lock_timeout_ms),
                command_timeout=60, timeout=10)
        except DB_ERRORS as exc:
            raise translate_error(exc, where, "connect to the database") from exc

    async def _setup(self) -> None:
        """Migrations (or, read-only, the version check), the change listener and the caches: once, by ``open``."""
        if self.read_only:
            await self._check_schema_readable()
        else:
            await self._migrate()
            await self._listen()
        await self.refresh_caches()

    # ----------------------------------------------------------------- schema

    async def _schema_version(self, conn: asyncpg.Connection) -> int:
        if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
            return 0
        return await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")

    def _newer_error(self, version: int) -> StoreError:
        return StoreError(
            f"The database {self.path} has schema version {version}, newer than this version of Emotion Machine "
            f"understands ({SCHEMA_VERSION}). Upgrade the bot; migrations only go forward.",
            path=self.path, reason="newer")

    async def _migrate(self) -> None:
        """Every pending step in one transaction, under an advisory lock: processes starting together wait in turn."""

        async def body(tx: Transaction) -> list[str]:
            conn = tx._conn
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            current = await self._schema_version(conn)
            if current > SCHEMA_VERSION:
                raise self._newer_error(current)
            applied = []
            for version, name, sql in postgres_migrations():
                if version <= current:
                    continue
                if name == "baseline" and current:
                    raise StoreError(f"The database {self.path} is at schema version {current}, before this build's "
                                     f"PostgreSQL baseline V{version}: it was not made by Emotion Machine",
                                     path=self.path, reason="old")
                await conn.execute(sql)  # no arguments: the simple protocol runs the whole script
                await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                await conn.execute("DELETE FROM schema_version")
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
                applied.append(f"V{version}__{name}")
            return applied

        for step in await self._write("migrate the database", body):
            log.info("Applied migration %s to %s", step, self.path)

    async def _check_schema_readable(self) -> None:
        version = await self._with_connection("read the schema version", self._schema_version)
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"The database {self.path} has schema version {version}, not {SCHEMA_VERSION}, and it was opened "
                "read-only, so it cannot be migrated: open it once read-write (start the bot) first, or use the "
                "version of Emotion Machine that wrote it.", path=self.path,
                reason="newer" if version > SCHEMA_VERSION else "old")

    # ----------------------------------------------------------------- changes made by other processes

    async def _listen(self) -> None:
        """(Re)open the connection that hears other processes' changes; until it runs, every check reloads.

        After a reconnection each subscriber hears :data:`RESYNC`: announcements may have been missed.
        """
        self._changed = True
        conn = None
        try:
            settings = _server_settings(self._origin, self._lock_timeout_ms)
            conn = await asyncpg.connect(self._url, server_settings=settings, timeout=10)
            await conn.add_listener(CHANGES, self._on_notify)
            for channel in self._subscribers:
                await conn.add_listener(channel, self._on_notify)
        except DB_ERRORS as exc:
            if conn is not None:
                conn.terminate()
            log.warning("%s; the caches reload at every check until it works", translate_error(
                exc, self.path, "listen for other processes' changes"))
            return
        conn.add_termination_listener(self._on_listener_lost)
        again, self._listener, self._listened = self._listened, conn, True
        if again:
            for channel in self._subscribers:
                self._on_notify(conn, 0, channel, RESYNC)

    def _on_listener_lost(self, conn: asyncpg.Connection) -> None:
        self._changed = True
        if self._listener is conn:
            self._listener = None

    def _on_notify(self, conn: asyncpg.Connection, pid: int, channel: str, payload: str) -> None:
        if channel == CHANGES:
            if payload != self._origin:
                self._changed = True
            return
        for callback in self._subscribers.get(channel, ()):
            try:
                callback(payload)
            except Exception:  # one subscriber's bug must not silence the others
                log.exception("A listener for %s failed", channel)

    async def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(payload)`` (on the loop) for every NOTIFY on ``channel``, from any process."""
        self._subscribers.setdefault(channel, []).append(callback)
        if self._listener is not None and len(self._subscribers[channel]) == 1:
            try:
                await self._listener.add_listener(channel, self._on_notify)
            except DB_ERRORS as exc:
                raise translate_error(exc, self.path, f"listen on {channel}") from exc

    async def notify(self, channel: str, payload: str) -> None:
        """Announce ``payload`` on ``channel`` to every process (this one's subscribers too)."""
        await self._with_connection("announce a change",
                                    lambda conn: conn.execute("SELECT pg_notify($1, $2)", channel, payload))

    async def _session_of_its_own(self, action: str) -> asyncpg.Connection:
        """A connection outside the pool: its session-level advisory locks live exactly as long as it does."""
        try:
            return await asyncpg.connect(self._url, timeout=10,
                                         server_settings=_server_settings(self._origin, self._lock_timeout_ms))
        except DB_ERRORS as exc:
            raise translate_error(exc, self.path, action) from exc

    async def try_cluster_lock(self, name: str) -> ClusterLock | None:
        """Hold the cluster-wide lock ``name`` (e.g. "training") if no process holds it; None if one does.

        A session-level advisory lock on a connection of its own: a process that dies frees it with its session.
        """
        conn = await self._session_of_its_own(f"take the {name} lock")
        try:
            if await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", f"emotion_machine.{name}"):
                return ClusterLock(conn)
        except DB_ERRORS as exc:
            await conn.close()
            raise translate_error(exc, self.path, f"take the {name} lock") from exc
        await conn.close()
        return None

    async def take_turn(self, name: str, hold_for: float) -> None:
        """Wait for the cluster-wide turn ``name``, then keep it ``hold_for`` seconds (in the background).

        For Discord's IDENTIFY limit: a process that IDENTIFYs holds its bucket's turn for the 5-second
        window, so no process of the bot (on any machine) IDENTIFYs in that bucket meanwhile. An advisory
        lock on a connection of its own: a process that dies frees its turn with its session.
        """
        conn = await self._session_of_its_own(f"wait for the {name} turn")
        try:
            await conn.execute("SET lock_timeout = 0")  # wait as long as the turns ahead take
            await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"emotion_machine.turn.{name}")
        except BaseException as exc:
            conn.terminate()
            if isinstance(exc, DB_ERRORS):
                raise translate_error(exc, self.path, f"wait for the {name} turn") from exc
            raise
        task = asyncio.get_running_loop().create_task(self._end_turn(conn, hold_for))
        self._turns.add(task)
        task.add_done_callback(self._turns.discard)

    @staticmethod
    async def _end_turn(conn: asyncpg.Connection, hold_for: float) -> None:
        try:
            await asyncio.sleep(hold_for)
        finally:
            with contextlib.suppress(*DB_ERRORS):
                await conn.close(timeout=5)  # the session ends: its advisory lock goes with it

    async def lease_requests(self, name: str, rate: float, burst: float, want: int) -> int:
        """Take up to ``want`` tokens from the bot-wide bucket ``name`` (``rate`` per second, ``burst`` at most).

        One try, at most ``LEASE_TIMEOUT`` seconds: a lease retried after a lost reply could be charged twice,
        and a slow database must not hold every channel's reactions (the pacer paces alone meanwhile).
        """
        try:
            async with self._connection(timeout=LEASE_TIMEOUT) as conn:
                return await conn.fetchval("SELECT emotion_machine_lease($1, $2, $3, $4)", name, float(rate),
                                           float(burst), int(want), timeout=LEASE_TIMEOUT)
        except DB_ERRORS as exc:
            raise translate_error(exc, self.path, "lease from the REST budget") from exc

    async def refresh_caches(self) -> None:
        """Reload the in-memory caches (opt-outs, guild settings) from the database."""
        async with self._lock:
            self._changed = False  # before the read: a change announced during it makes the next check reload
            try:
                await self._with_connection("load the caches", lambda conn: self._reload_caches(Transaction(conn)))
            except BaseException:
                self._changed = True
                raise

    async def refresh_if_changed(self) -> bool:
        """Reload the caches if another process announced a change since the last load."""
        self._require_open()
        if (self._listener is None or self._listener.is_closed()) and not self.read_only:
            await self._listen()
        if not self._changed:
            return False
        await self.refresh_caches()
        return True

    # ----------------------------------------------------------------- I/O

    def _pool(self) -> asyncpg.Pool:
        if self._db is None:
            raise closed_error(self.path)
        return self._db

    async def _with_connection(self, action: str, use: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``use(conn)`` on a pooled connection; retried once on a fresh one if the connection broke."""
        for attempt in (1, 2):
            try:
                async with self._connection() as conn:
                    return await use(conn)
            except DB_ERRORS as exc:
                if attempt == 1 and _broken(exc) and self._db is not None:
                    log.warning("Database connection lost while trying to %s (%s); retrying once", action, exc)
                    continue
                raise translate_error(exc, self.path, action) from exc
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def _connection(self, timeout: float = 0.0) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; one that broke is terminated, so the pool opens a new one instead of reusing it."""
        pool = self._pool()
        try:
            conn = await pool.acquire(timeout=timeout or ACQUIRE_TIMEOUT)
        except DB_ERRORS as exc:
            exc.emotion_connecting = True  # type: ignore[union-attr]  # nothing ran: see _broken, translate_error
            raise
        try:
            yield conn
        except BaseException as exc:
            if _broken(exc):
                conn.terminate()
            raise
        finally:
            await pool.release(conn)

    async def _transaction_locked(self, action: str, body: Callable[[Any], Awaitable[T]]) -> T:
        """BEGIN; body; COMMIT - the caller holds ``self._lock``. Retried once only if BEGIN itself failed."""
        self._require_writable(action)
        for attempt in (1, 2):
            began = False
            try:
                async with self._connection() as conn:
                    transaction = conn.transaction()
                    await transaction.start()
                    began = True
                    try:
                        result = await body(Transaction(conn))
                    except BaseException:
                        with contextlib.suppress(*DB_ERRORS):
                            await transaction.rollback()
                        raise
                    await transaction.commit()
                    return result
            except DB_ERRORS as exc:
                if attempt == 1 and not began and _broken(exc) and self._db is not None:
                    log.warning("Database connection lost before trying to %s (%s); retrying once", action, exc)
                    continue
                raise translate_error(exc, self.path, action) from exc
        raise AssertionError("unreachable")

    async def _read(self, action: str, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        text, args = bind(sql, params)

        async def fetch(conn: asyncpg.Connection) -> list[tuple]:
            return [tuple(row) for row in await conn.fetch(text, *args)]

        return await self._with_connection(action, fetch)

    async def _read_locked(self, action: str, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        return await self._read(action, sql, params)  # reads never wait for the lock here

    async def _close_handle(self) -> None:
        for task in list(self._turns):
            task.cancel()  # ends the turn now: this process IDENTIFYs no more
        await asyncio.gather(*self._turns, return_exceptions=True)
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(*DB_ERRORS):
                await listener.close(timeout=5)
        try:
            await asyncio.wait_for(self._db.close(), 10)
        except (*DB_ERRORS, asyncio.TimeoutError) as exc:
            log.warning("Error while closing %s: %s", self.path, exc)
            self._db.terminate()


class PostgresStore(StoreParts, PostgresConnection):
    """PostgreSQL-backed store; create with :meth:`PostgresStore.open`. Implements :class:`bot.store.StoreProtocol`."""

    def __init__(self, pool: asyncpg.Pool, url: str, *, labels: Sequence[str] | None, flush_interval: float,
                 batch_size: int, max_buffer: int, defaults: GuildSettings | None, read_only: bool, origin: str,
                 lock_timeout_ms: int) -> None:
        """Private: use :meth:`open`."""
        super().__init__(pool, url, read_only=read_only, origin=origin, lock_timeout_ms=lock_timeout_ms)
        self._init_parts(labels=labels, flush_interval=flush_interval, batch_size=batch_size,
                         max_buffer=max_buffer, defaults=defaults)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        labels: Sequence[str] | None = None,
        flush_interval: float = 0.5,
        batch_size: int = 500,
        busy_timeout_ms: int = 5_000,
        max_buffer: int = 100_000,
        defaults: GuildSettings | None = None,
        read_only: bool = False,
        pool_size: int = POOL_SIZE,
    ) -> PostgresStore:
        """Connect to ``url`` (creating and migrating the schema if needed); the options are :meth:`Store.open`'s.

        ``busy_timeout_ms`` becomes the sessions' ``lock_timeout``; ``pool_size`` bounds the connections.
        """
        check_options(labels, flush_interval, batch_size, max_buffer)
        if not is_postgres_url(url):
            raise ValueError(f"not a PostgreSQL URL: {display_url(str(url))!r}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size!r}")
        origin = secrets.token_hex(8)
        pool = await cls._connect_pool(url, pool_size=pool_size, origin=origin, lock_timeout_ms=busy_timeout_ms)
        store = cls(pool, url, labels=labels, flush_interval=flush_interval, batch_size=batch_size,
                    max_buffer=max_buffer, defaults=defaults, read_only=read_only, origin=origin,
                    lock_timeout_ms=busy_timeout_ms)
        try:
            await store._setup()
        except BaseException:
            store._closed = True
            with contextlib.suppress(Exception):
                await store._close_handle()
            raise
        return store
