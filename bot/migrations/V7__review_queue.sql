-- Emotion Machine schema v7: /review, off by default (a per-server switch).
-- With it on, the messages the model was least sure of wait here for a moderator's label: the only
-- place a message's text is kept without a correction, so rows live at most 24 hours (bot/store/review.py).
ALTER TABLE guild_settings ADD COLUMN review INTEGER NOT NULL DEFAULT 0 CHECK (review IN (0, 1));

CREATE TABLE review_queue (
    message_id    INTEGER PRIMARY KEY,
    guild_id      INTEGER NOT NULL,
    channel_id    INTEGER NOT NULL,
    author_id     INTEGER NOT NULL,
    text          TEXT    NOT NULL,
    label         TEXT    NOT NULL,
    confidence    REAL    NOT NULL CHECK (confidence BETWEEN 0 AND 1),  -- the top probability
    model_version TEXT,
    created_at    REAL    NOT NULL
);
CREATE INDEX review_queue_guild ON review_queue(guild_id, confidence, created_at);  -- least sure first
CREATE INDEX review_queue_author ON review_queue(author_id);                        -- forget-me, optout
CREATE INDEX review_queue_created ON review_queue(created_at);                      -- expiry
