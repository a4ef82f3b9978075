"""Persistence for Emotion Machine: every SQL statement of the project lives in this package.

Callers import from here (``from bot.store import Store, Correction``) and use only
what :class:`StoreProtocol` lists, so another backend (PostgreSQL) only has to
implement that. One module per kind of data:

* ``records``: the dataclasses (PredictionRow, Correction, GuildSettings) and their validation;
* ``errors``: StoreError, UnknownLabel, the translation of sqlite3 errors;
* ``connection``: the shared connection, its lock, transactions; ``schema``: migrations;
* ``predictions`` (buffered, batched), ``counts`` (/mood), ``corrections`` (durable),
  ``privacy`` (opt-outs, forget-me), ``guilds`` (settings);
* ``interface``: :class:`StoreProtocol`; ``sqlite``: :class:`Store`, composing the parts.

Model versions are not stored here: ``model.registry`` (folders on disk) owns them.
"""

from .counts import emotion_counts_query
from .errors import StoreError, UnknownLabel
from .interface import StoreProtocol
from .predictions import run_retention
from .records import SOURCES, Correction, GuildSettings, PredictionRow
from .schema import SCHEMA_VERSION, migrations, split_sql
from .sqlite import Store

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
    "emotion_counts_query",
    "migrations",
    "run_retention",
    "split_sql",
]
