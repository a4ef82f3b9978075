"""Persistence for Emotion Machine: every SQL statement of the project lives in this package.

Callers import from here (``from bot.store import Store, Correction``) and use only
what :class:`StoreProtocol` lists, so another backend (PostgreSQL) only has to
implement that. One module per kind of data:

* ``records``: the dataclasses (PredictionRow, Correction, GuildSettings) and their validation;
* ``errors``: StoreError, UnknownLabel, the translation of sqlite3 errors;
* ``connection``: the shared connection, its lock, transactions; ``schema``: migrations;
* ``predictions`` (buffered, batched), ``counts`` (/mood), ``corrections`` (durable),
  ``privacy`` (opt-outs, forget-me), ``guilds`` (settings);
* ``base``: what every backend gives the parts; ``parts``: the parts composed once;
* ``interface``: :class:`StoreProtocol`; ``sqlite``: :class:`Store` (the embedded default) and
  ``postgres``: :class:`PostgresStore` (asyncpg), each the parts over its connection;
  :func:`open_store` picks one from the target (a path, or a ``postgresql://`` URL).

Model versions are not stored here: ``model.registry`` (folders on disk) owns them.
"""

from .counts import emotion_counts_query
from .errors import StoreError, UnknownLabel
from .interface import StoreProtocol
from .predictions import run_retention
from .records import SOURCES, Correction, GuildSettings, PredictionRow
from .schema import SCHEMA_VERSION, migrations, split_sql
from .sqlite import Store
from .urls import display_url, is_postgres_url


async def open_store(target, **options) -> StoreProtocol:
    """The store at ``target``: a ``postgresql://`` URL opens :class:`PostgresStore`, anything else a SQLite file.

    ``options`` are :meth:`Store.open`'s; ``pool_size`` applies to PostgreSQL only (ignored for SQLite).
    """
    if is_postgres_url(target):
        from .postgres import PostgresStore  # asyncpg only where it is used

        return await PostgresStore.open(target, **options)
    options.pop("pool_size", None)
    return await Store.open(target, **options)

__all__ = [
    "SCHEMA_VERSION",
    "SOURCES",
    "Correction",
    "GuildSettings",
    "PredictionRow",
    "Store",
    "StoreError",
    "StoreProtocol",
    "UnknownLabel",
    "display_url",
    "emotion_counts_query",
    "is_postgres_url",
    "migrations",
    "open_store",
    "run_retention",
    "split_sql",
]
