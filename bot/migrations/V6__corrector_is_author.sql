-- Emotion Machine schema v6: whether the person who corrected a message wrote it.
-- A writer's label says what they meant, a reader's how it came across; both are kept and the
-- training vote tells them apart (docs/learning.md). NULL where it is not known (imports, shell).
ALTER TABLE corrections ADD COLUMN by_author INTEGER CHECK (by_author IN (0, 1));
UPDATE corrections SET by_author = (author_id = corrector_id)
WHERE author_id IS NOT NULL AND corrector_id IS NOT NULL;
