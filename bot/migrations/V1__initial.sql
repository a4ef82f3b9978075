-- Emotion Machine schema v1: everything the bot remembers.
-- Message text is only kept for corrections (training data), never for predictions.

CREATE TABLE predictions (
    message_id    INTEGER PRIMARY KEY,          -- one prediction per message (upserted)
    guild_id      INTEGER,                      -- NULL in DMs
    channel_id    INTEGER NOT NULL,
    author_id     INTEGER NOT NULL,
    label         TEXT    NOT NULL,
    probability   REAL    NOT NULL,
    model_version TEXT,
    created_at    REAL    NOT NULL              -- unix seconds (UTC)
);

CREATE TABLE corrections (
    id              INTEGER PRIMARY KEY,
    guild_id        INTEGER,
    channel_id      INTEGER,
    message_id      INTEGER,                    -- NULL for imported examples
    author_id       INTEGER,                    -- the message's author
    corrector_id    INTEGER,                    -- who corrected; NULL for imports
    predicted_label TEXT,
    label           TEXT    NOT NULL CHECK (label <> ''),
    text            TEXT    NOT NULL,
    model_version   TEXT,
    source          TEXT    NOT NULL DEFAULT 'discord'
                    CHECK (source IN ('discord', 'import', 'shell')),
    created_at      REAL    NOT NULL,
    UNIQUE (message_id, corrector_id)           -- a user's later correction replaces the earlier
);
CREATE INDEX corrections_author ON corrections(author_id);
CREATE INDEX corrections_corrector ON corrections(corrector_id);
CREATE INDEX corrections_created ON corrections(created_at);

CREATE TABLE model_versions (
    version    TEXT    PRIMARY KEY,
    path       TEXT    NOT NULL,
    parent     TEXT,
    base       TEXT,
    metrics    TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(metrics)),
    examples   INTEGER NOT NULL DEFAULT 0,
    created_at REAL    NOT NULL,
    is_current INTEGER NOT NULL DEFAULT 0 CHECK (is_current IN (0, 1))
);
-- At most one current version, enforced by the database itself.
CREATE UNIQUE INDEX model_versions_one_current ON model_versions(is_current) WHERE is_current = 1;

CREATE TABLE guild_settings (
    guild_id     INTEGER PRIMARY KEY,
    enabled      INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    threshold    REAL    NOT NULL DEFAULT 0.5 CHECK (threshold BETWEEN 0 AND 1),
    show_neutral INTEGER NOT NULL DEFAULT 0 CHECK (show_neutral IN (0, 1)),
    reactions    INTEGER NOT NULL DEFAULT 1 CHECK (reactions IN (0, 1)),
    updated_at   REAL
);

-- Allow/deny lists; a channel may appear in both (deny wins).
CREATE TABLE guild_channels (
    guild_id   INTEGER NOT NULL REFERENCES guild_settings(guild_id) ON DELETE CASCADE,
    mode       TEXT    NOT NULL CHECK (mode IN ('allow', 'deny')),
    channel_id INTEGER NOT NULL,
    PRIMARY KEY (guild_id, mode, channel_id)
) WITHOUT ROWID;

CREATE TABLE opted_out_users (
    user_id    INTEGER PRIMARY KEY,
    created_at REAL    NOT NULL
);
