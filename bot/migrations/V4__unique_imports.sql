-- Emotion Machine schema v4: importing the same file twice must not count its examples twice.
-- Keep the oldest copy of each imported (text, label) pair, then let the database refuse repeats.
DELETE FROM corrections
WHERE source = 'import' AND message_id IS NULL
  AND id NOT IN (
      SELECT min(id) FROM corrections
      WHERE source = 'import' AND message_id IS NULL
      GROUP BY text, label
  );
CREATE UNIQUE INDEX corrections_import_once ON corrections(text, label)
    WHERE source = 'import' AND message_id IS NULL;
