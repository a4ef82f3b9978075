"""Which backend a target names, and how to show it: kept apart so that choosing needs no asyncpg."""

from __future__ import annotations

import urllib.parse

SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(target: object) -> bool:
    """True for ``postgresql://...`` (or ``postgres://``): the PostgreSQL backend; anything else is a SQLite path."""
    return isinstance(target, str) and target.startswith(SCHEMES)


def display_url(url: str) -> str:
    """``url`` without its password (and query), for messages and logs; a SQLite path as it is."""
    if not is_postgres_url(url):
        return url
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
