-- Emotion Machine schema v8: every server learns on its own (per-server models).
-- share: the server lets its corrections improve the shared base model (off by default).
-- guild_departures: servers the bot left, kept for a grace period, then forgotten (bot/store/guilds.py).
ALTER TABLE guild_settings ADD COLUMN share INTEGER NOT NULL DEFAULT 0 CHECK (share IN (0, 1));

CREATE TABLE guild_departures (
    guild_id INTEGER PRIMARY KEY,
    left_at  REAL    NOT NULL
);
CREATE INDEX corrections_guild ON corrections(guild_id);
