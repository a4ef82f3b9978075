"""A real, throwaway PostgreSQL server for the tests and benchmarks: initdb in a temporary folder, loopback only.

Debian's ``postgresql`` package puts ``initdb`` and ``pg_ctl`` in ``/usr/lib/postgresql/<version>/bin``. PostgreSQL
refuses to run as root, so as root the server runs as the ``postgres`` user (or ``nobody``). Durability settings are
the defaults (fsync on): the tests kill the bot, not the server, but nothing here should be a weaker PostgreSQL
than a user runs.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: CI sets this: there a missing PostgreSQL fails the run instead of skipping its tests.
REQUIRE = "REQUIRE_POSTGRES_TESTS"


def find_bin(name: str) -> str | None:
    """``initdb`` / ``pg_ctl`` on PATH, else the newest Debian install."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return candidates[-1] if candidates else None


def missing_reason() -> str | None:
    """Why no server can be started here (None: it can)."""
    if not (find_bin("initdb") and find_bin("pg_ctl")):
        return "PostgreSQL is not installed (apt-get install postgresql): the PostgreSQL tests are skipped"
    return None


def version() -> str:
    """``PostgreSQL 15.x`` of the binaries :func:`server` uses."""
    import re

    out = subprocess.run([find_bin("pg_ctl") or "pg_ctl", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"\d+(\.\d+)+", out)
    return f"PostgreSQL {found.group()}" if found else "PostgreSQL"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> list[str]:
    """The prefix that drops root (PostgreSQL will not run as root)."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return ["runuser", "-u", user, "--"]
    raise RuntimeError("running as root and there is no postgres or nobody user to run PostgreSQL as")


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"


@contextlib.contextmanager
def server() -> Iterator[Server]:
    """Start a server in a temporary folder for the duration of the block, then stop it and delete the folder."""
    reason = missing_reason()
    if reason:
        raise RuntimeError(reason)
    prefix = _run_as()
    folder = Path(tempfile.mkdtemp(prefix="emotion-pg-"))
    data, sockets = folder / "data", folder / "sock"
    sockets.mkdir()
    if prefix:
        owner = pwd.getpwnam(prefix[2])
        folder.chmod(0o755)
        for path in (folder, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    user = "emotion"
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
    try:
        subprocess.run([*prefix, find_bin("initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8",
                        "--no-instructions"], check=True, capture_output=True, env=env)
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets} " \
                  "-c max_connections=200 -c shared_buffers=32MB"
        subprocess.run([*prefix, find_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"),
                        "-w", "-t", "60", "start"], check=True, capture_output=True, env=env)
        try:
            yield Server("127.0.0.1", port, user)
        finally:
            subprocess.run([*prefix, find_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, env=env)
    except subprocess.CalledProcessError as exc:
        log = (folder / "log").read_text(errors="replace")[-2000:] if (folder / "log").exists() else ""
        raise RuntimeError(f"could not start PostgreSQL: {exc.stderr.decode(errors='replace')[-2000:]}{log}") from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def create_database(srv: Server, name: str) -> str:
    """A new empty database on ``srv``; its URL."""
    import asyncpg

    conn = await asyncpg.connect(srv.url())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return srv.url(name)


def new_database(srv: Server, name: str) -> str:
    """:func:`create_database` for synchronous callers (fixtures), on its own loop in a thread."""
    import asyncio
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, create_database(srv, name)).result()
