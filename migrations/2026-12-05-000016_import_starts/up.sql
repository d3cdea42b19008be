-- How many times a worker has (re)started an import since its last checkpoint. A job
-- that keeps stopping at the same row (a storage error that does not go away, a worker
-- that dies on it) is failed after a few starts instead of being taken up again every
-- two minutes for ever.
ALTER TABLE contact_imports ADD COLUMN starts integer NOT NULL DEFAULT 0;
