-- Indexes for the mood/summary queries and for retention.
--
-- The guild index is keyed on the UTC day number so that "counts per day and
-- label" reads it in order (no sort) and never touches the table. Queries must
-- spell the expression exactly as here: CAST(created_at / 86400 AS INTEGER).
CREATE INDEX predictions_guild_day
    ON predictions(guild_id, CAST(created_at / 86400 AS INTEGER), label, created_at);
CREATE INDEX predictions_channel_time ON predictions(channel_id, created_at);
CREATE INDEX predictions_author_time ON predictions(author_id, created_at);
CREATE INDEX predictions_created ON predictions(created_at);
