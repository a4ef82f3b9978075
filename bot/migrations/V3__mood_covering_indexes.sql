-- Covering indexes for /mood of one channel and /mood-me (one author).
--
-- V2's (channel_id, created_at) and (author_id, created_at) indexes made SQLite read the
-- table for every row: a busy channel over 90 days took ~220 ms on 1M predictions. Keyed
-- like predictions_guild_day, these answer the per-day counts from the index alone
-- (~38 ms and ~17 ms in benchmarks/mood.py). They also serve forget-me (author_id = ?),
-- so the V2 ones go: the number of indexes, and so the insert cost, stays the same.
CREATE INDEX predictions_channel_day
    ON predictions(channel_id, CAST(created_at / 86400 AS INTEGER), label, created_at, guild_id);
CREATE INDEX predictions_author_day
    ON predictions(author_id, CAST(created_at / 86400 AS INTEGER), label, created_at, guild_id);
DROP INDEX predictions_channel_time;
DROP INDEX predictions_author_time;
