-- Emotion Machine schema v5: model versions live only in model/registry.py (folders and
-- their metadata on disk); the copy in this table could disagree with it, so it goes.
DROP INDEX IF EXISTS model_versions_one_current;
DROP TABLE IF EXISTS model_versions;
